"""The command starts fast and quietly; ``import keras_mwat`` registers its Keras classes
and leaves the optional dependencies unloaded."""

import os
import subprocess
import sys
import time

import pytest

ENV = {k: v for k, v in os.environ.items()
       if k not in ("TF_CPP_MIN_LOG_LEVEL", "KERAS_MWAT_LAZY_IMPORT")}


def _python(code: str, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=timeout)


def test_help_does_not_load_tensorflow():
    start = time.perf_counter()
    result = _python("import sys, keras_mwat_cli\n"
                     "try:\n    keras_mwat_cli.main(['train', '--help'])\n"
                     "except SystemExit as e:\n    assert e.code == 0, e.code\n"
                     "print('TF', 'tensorflow' in sys.modules)\n")
    seconds = time.perf_counter() - start
    assert result.returncode == 0, result.stderr
    assert "usage: keras-mwat train" in result.stdout
    assert "--method {done,gairat,mail," in result.stdout  # the registry's names, no TF needed
    assert result.stdout.rstrip().endswith("TF False")
    assert result.stderr == ""
    assert seconds < 10  # a TensorFlow import alone takes about 5-8 s here; --help ~0.2 s


def test_usage_error_is_one_line_without_tensorflow():
    result = _python("import sys, keras_mwat_cli\n"
                     "try:\n    keras_mwat_cli.main(['compare', '--methods', 'pgd_at,fgsm'])\n"
                     "except SystemExit as e:\n    print('rc', e.code, 'TF', "
                     "'tensorflow' in sys.modules)\n")
    assert result.stdout.strip() == "rc 2 TF False"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown method 'fgsm'" in lines[0], result.stderr


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    """``keras-mwat train`` (MWAT, tiny) in a fresh process; returns (result, model path)."""
    folder = tmp_path_factory.mktemp("cli")
    result = _python("import keras_mwat_cli\nkeras_mwat_cli.main(['train', '--epochs', '1', "
                     "'--subset', '64', '--test-subset', '16', '--eval-attacks', 'pgd', "
                     "'--eval-steps', '2', '--verbose', '0', '--out', 'runs'])\n",
                     cwd=folder)
    models = list(folder.glob("runs/*/model.keras"))
    return result, models[0] if models else None


@pytest.mark.integration
def test_a_command_prints_no_tensorflow_start_up_lines(train_run):
    result, _ = train_run
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # no oneDNN, CUDA, absl, retracing lines
    assert "robust accuracy" in result.stdout


@pytest.mark.integration
def test_import_registers_classes_and_leaves_optional_dependencies_unloaded(train_run):
    saved_model = train_run[1]
    assert saved_model is not None, train_run[0].stderr
    # Keras itself imports matplotlib (and scikit-learn) when installed: count only what
    # `import keras_mwat` adds to `import keras`.
    result = _python(
        "import sys, keras\n"
        "before = set(sys.modules)\n"
        "import keras_mwat\n"
        "optional = ('keras_tuner', 'tensorflow_datasets', 'mlxtend', 'tensorboard', "
        "'matplotlib', 'importlib_resources')\n"
        "print(sorted(m for m in set(sys.modules) - before if m.split('.')[0] in optional))\n"
        f"model = keras.saving.load_model({str(saved_model)!r})\n"
        "print(type(model).__name__)\n"
        "keras_mwat.tuning\n"
        "print('keras_tuner' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "MWATModel", "True"]


def test_lazy_package_resolves_names_on_first_use():
    import keras_mwat
    from keras_mwat import registry

    assert set(registry.method_names()) == set(keras_mwat.METHODS)
    assert registry.method_class("plain") is keras_mwat.StandardModel
    with pytest.raises(ValueError, match="unknown method 'fgsm'"):
        registry.method_class("fgsm")
    with pytest.raises(AttributeError, match="no attribute 'MWATModle'"):
        keras_mwat.MWATModle  # noqa: B018
    assert {"MWATModel", "attacks", "tuning"} <= set(dir(keras_mwat))
