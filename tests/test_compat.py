"""keras_mwat._compat: the one home of private internals, the backend check, the bounds."""

import pathlib
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from packaging.requirements import Requirement

import keras_mwat as km
from keras_mwat import _compat

PACKAGE = pathlib.Path(km.__file__).parent
PYPROJECT = PACKAGE.parent / "pyproject.toml"
#: Spellings of the Keras / TF / TFDS internals that only _compat.py may use.
PRIVATE = re.compile(r"keras\.src|_maybe_symbolic_build|_flatten_layers|tensorflow_datasets\.core"
                     r"|generator\.state\s*=|\.state = state")


def test_non_tensorflow_backend_is_refused_with_a_clear_error(monkeypatch):
    _compat.require_tensorflow_backend()  # the test environment runs TensorFlow
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ImportError, match=r"runs on 'jax'.*KERAS_BACKEND=tensorflow"):
        _compat.require_tensorflow_backend()
    with pytest.raises(ImportError, match="TensorFlow backend"):
        km.PGDATModel(km.zoo.tiny_cnn())


def test_private_internals_appear_only_in_compat():
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py")) if path.name != "_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if PRIVATE.search(line)
    ]
    assert offenders == []
    assert PRIVATE.search((PACKAGE / "_compat.py").read_text())  # the pattern does match


def test_installed_versions_satisfy_the_declared_bounds():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    bounds = {Requirement(d).name: Requirement(d).specifier for d in dependencies}
    for name, version in (("keras", keras.__version__), ("tensorflow", tf.__version__)):
        assert any(spec.operator == "<" for spec in bounds[name]), name  # an upper bound
        assert bounds[name].contains(version), (name, version, str(bounds[name]))
    assert _compat.CHECKED_VERSIONS["keras"] == keras.__version__
    assert _compat.CHECKED_VERSIONS["tensorflow"] == tf.__version__


def test_flatten_layers_and_functional_class_see_nested_layers():
    inner = keras.Sequential([keras.layers.Dense(3, name="inner_dense")], name="inner")
    inputs = keras.Input((4,))
    outer = keras.Model(inputs, keras.layers.Dense(2, name="head")(inner(inputs)))
    names = {layer.name for layer in _compat.flatten_layers(outer)}
    assert {"inner", "inner_dense", "head", outer.name} <= names
    assert isinstance(outer, _compat.functional_model_class())
    assert not isinstance(inner.layers[0], _compat.functional_model_class())


def test_saved_seed_generator_draws_from_and_advances_its_variable():
    generator, state = _compat.saved_seed_generator(5, "probe")
    assert generator.state is state
    before = state.numpy().copy()
    first = keras.random.uniform((3,), seed=generator).numpy()
    assert not np.array_equal(state.numpy(), before)  # the variable is the live state
    state.assign(before)
    np.testing.assert_array_equal(keras.random.uniform((3,), seed=generator).numpy(), first)
