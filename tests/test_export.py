"""Tests of the SavedModel export of a classifier (keras_mwat.export)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from keras_mwat import export as export_module
from keras_mwat.export import export_classifier

INPUT_SHAPE = (28, 28, 1)
SAVED_MODEL_CLI = Path(sys.executable).parent / "saved_model_cli"


def _images(n, seed=0):
    return np.random.default_rng(seed).uniform(size=(n, *INPUT_SHAPE)).astype("float32")


def _start_cli(*args):
    """Starts the venv's saved_model_cli in the background (it takes seconds to import TF)."""
    if not SAVED_MODEL_CLI.exists():
        return None
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.Popen([str(SAVED_MODEL_CLI), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _finish_cli(process):
    if process is None:
        pytest.skip(f"saved_model_cli not found next to {sys.executable}")
    stdout, stderr = process.communicate(timeout=180)
    return process.returncode, stdout, stderr


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """An MWAT model (classifier + weight network), its export and two CLI runs on it.

    The ``saved_model_cli`` processes start here and run while the in-process tests do.
    """
    keras.utils.set_random_seed(0)
    model = km.MWATModel(km.zoo.small_cnn(input_shape=INPUT_SHAPE, width=4), seed=0)
    path = tmp_path_factory.mktemp("export") / "clf"
    returned = export_classifier(model, path)
    cli_x = _images(2, seed=11)
    show = _start_cli("show", "--dir", str(path), "--all")
    # TF 2.21's saved_model_cli evaluates only Python literals in --input_exprs (no np.*).
    run = _start_cli("run", "--dir", str(path), "--tag_set", "serve",
                     "--signature_def", "serving_default",
                     "--input_exprs", f"image={cli_x.tolist()!r}")
    yield SimpleNamespace(model=model, path=path, returned=returned, cli_x=cli_x,
                          show=show, run=run)
    for process in (show, run):
        if process is not None and process.poll() is None:
            process.kill()
            process.communicate()


def test_returns_path_as_string(exported):
    path, returned = exported.path, exported.returned
    assert isinstance(returned, str) and returned == str(path)
    assert (path / "saved_model.pb").is_file()
    # No staging directory is left next to the export.
    assert sorted(p.name for p in path.parent.iterdir()) == ["clf"]


@pytest.mark.parametrize("batch", [3, 5])
def test_signature_matches_classifier_with_dynamic_batch(exported, batch):
    model, path = exported.model, exported.path
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    x = _images(batch, seed=batch)
    out = serve(image=tf.constant(x))
    assert set(out) == {"logits", "probabilities"}
    logits = out["logits"].numpy()
    probabilities = out["probabilities"].numpy()
    assert logits.dtype == np.float32 and probabilities.dtype == np.float32
    expected = model.classifier.predict(x, verbose=0)
    assert logits.shape == probabilities.shape == (batch, 10)
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probabilities, tf.nn.softmax(logits).numpy(), atol=1e-6)


def test_signature_spec(exported):
    path = exported.path
    serve = tf.saved_model.load(str(path)).signatures["serving_default"]
    _, inputs = serve.structured_input_signature
    assert list(inputs) == ["image"]
    assert inputs["image"].shape.as_list() == [None, *INPUT_SHAPE]
    assert inputs["image"].dtype == tf.float32


def test_only_the_classifier_variables_are_exported(exported):
    model, path = exported.model, exported.path
    loaded = tf.saved_model.load(str(path))
    classifier_shapes = sorted(tuple(v.shape) for v in model.classifier.variables)
    assert len(model.weight_net.variables) > 0
    assert len(loaded.variables) == len(model.classifier.variables)
    assert sorted(tuple(v.shape) for v in loaded.variables) == classifier_shapes
    checkpoint_keys = [name for name, _ in tf.train.list_variables(
        str(path / "variables" / "variables"))]
    assert not any("weight_net" in key for key in checkpoint_keys)
    assert not any("optimizer" in key for key in checkpoint_keys)


def test_plain_keras_model(tmp_path):
    classifier = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Flatten(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(3),
    ])
    path = export_classifier(classifier, tmp_path / "mlp", input_name="pixels")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    x = np.random.default_rng(1).uniform(size=(4, 8, 8, 1)).astype("float32")
    out = serve(pixels=tf.constant(x))
    np.testing.assert_allclose(out["logits"].numpy(), classifier.predict(x, verbose=0),
                               atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-6)


def test_mixed_precision_outputs_are_float32(tmp_path):
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        classifier = km.zoo.mlp(input_shape=(8, 8, 1), hidden_units=(16,), num_classes=3)
    finally:
        keras.config.set_dtype_policy(previous)
    path = export_classifier(classifier, tmp_path / "mixed")
    serve = tf.saved_model.load(path).signatures["serving_default"]
    x = np.random.default_rng(2).uniform(size=(4, 8, 8, 1)).astype("float32")
    out = serve(image=tf.constant(x))
    assert out["logits"].dtype == tf.float32
    assert out["probabilities"].dtype == tf.float32
    expected = np.asarray(classifier(x, training=False), dtype="float32")
    np.testing.assert_allclose(out["logits"].numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(axis=1), 1.0, atol=1e-5)


def _tiny_classifier():
    return km.zoo.mlp(input_shape=(4, 4, 1), hidden_units=(4,), num_classes=2)


def test_refuses_to_overwrite_a_non_empty_directory(tmp_path):
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("work")
    with pytest.raises(FileExistsError, match="busy"):
        export_classifier(_tiny_classifier(), target)
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    assert (target / "keep.txt").read_text() == "work"


def test_refuses_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("work")
    with pytest.raises(FileExistsError, match="file"):
        export_classifier(_tiny_classifier(), target, overwrite=True)
    assert target.read_text() == "work"


def test_empty_directory_is_used(tmp_path):
    target = tmp_path / "empty"
    target.mkdir()
    export_classifier(_tiny_classifier(), target)
    assert (target / "saved_model.pb").is_file()
    assert not [p for p in target.iterdir() if p.name.startswith(".")]


def test_overwrite_replaces_the_contents(tmp_path):
    target = tmp_path / "old"
    export_classifier(_tiny_classifier(), target)
    (target / "stale.txt").write_text("old")
    other = _tiny_classifier()
    export_classifier(other, target, overwrite=True)
    assert not (target / "stale.txt").exists()
    assert not [p for p in target.iterdir() if p.name.startswith(".")]
    serve = tf.saved_model.load(str(target)).signatures["serving_default"]
    x = np.random.default_rng(3).uniform(size=(2, 4, 4, 1)).astype("float32")
    np.testing.assert_allclose(serve(image=tf.constant(x))["logits"].numpy(),
                               other.predict(x, verbose=0), atol=1e-5)


def test_failed_overwrite_keeps_the_old_contents(tmp_path, monkeypatch):
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("work")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_module, "_write_archive", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_classifier(_tiny_classifier(), target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]
    with pytest.raises(RuntimeError, match="disk full"):
        export_classifier(_tiny_classifier(), tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


@pytest.mark.parametrize("bad", [None, "model", np.zeros(3), lambda x: x])
def test_bad_model_type(tmp_path, bad):
    with pytest.raises(TypeError, match="`model`"):
        export_classifier(bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("name", ["", "has space", "a=b", "_private"])
def test_bad_input_name(tmp_path, name):
    with pytest.raises(ValueError, match="input_name"):
        export_classifier(_tiny_classifier(), tmp_path / "bad", input_name=name)


def test_bad_argument_types(tmp_path):
    with pytest.raises(TypeError, match="input_name"):
        export_classifier(_tiny_classifier(), tmp_path / "bad", input_name=3)
    with pytest.raises(TypeError, match="overwrite"):
        export_classifier(_tiny_classifier(), tmp_path / "bad", overwrite="yes")
    with pytest.raises(TypeError, match="path"):
        export_classifier(_tiny_classifier(), 5)


# Last: the saved_model_cli processes started by the fixture have run meanwhile.
def test_saved_model_cli_show(exported):
    returncode, stdout, stderr = _finish_cli(exported.show)
    assert returncode == 0, stderr[-2000:]
    assert "signature_def['serving_default']" in stdout
    assert "inputs['image']" in stdout
    assert "outputs['logits']" in stdout
    assert "outputs['probabilities']" in stdout
    assert "(-1, 28, 28, 1)" in stdout


def test_saved_model_cli_run(exported):
    returncode, stdout, stderr = _finish_cli(exported.run)
    assert returncode == 0, stderr[-2000:]
    logits_key = "Result for output key logits:"
    probabilities_key = "Result for output key probabilities:"
    assert logits_key in stdout and probabilities_key in stdout
    text = stdout[stdout.index(logits_key) + len(logits_key):stdout.index(probabilities_key)]
    printed = np.array(text.replace("[", " ").replace("]", " ").split(), dtype=float)
    expected = exported.model.classifier.predict(exported.cli_x, verbose=0)
    np.testing.assert_allclose(printed.reshape(expected.shape), expected, atol=1e-4)
