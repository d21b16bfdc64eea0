"""Tests of the reference classifiers (keras_mwat.zoo)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_mwat import zoo
from keras_mwat.validation import check_classifier, check_logits

BUILDERS = {
    "small_cnn": lambda **kw: zoo.small_cnn(input_shape=(28, 28, 1), width=8, **kw),
    "small_cnn_bn": lambda **kw: zoo.small_cnn(
        input_shape=(28, 28, 1), width=8, batch_norm=True, **kw
    ),
    "mlp": lambda **kw: zoo.mlp(input_shape=(28, 28, 1), hidden_units=(32, 16), **kw),
    "mlp_bn": lambda **kw: zoo.mlp(
        input_shape=(28, 28, 1), hidden_units=(32,), batch_norm=True, **kw
    ),
    "small_resnet": lambda **kw: zoo.small_resnet(input_shape=(16, 16, 3), width=4, **kw),
}


def _inputs(model, n=6, seed=0):
    shape = model.input_shape[1:]
    return np.random.default_rng(seed).uniform(size=(n, *shape)).astype("float32")


@pytest.mark.parametrize("key", sorted(BUILDERS))
def test_outputs_are_logits_of_the_right_shape(key):
    keras.utils.set_random_seed(0)
    model = BUILDERS[key](num_classes=7)
    assert model.built and model.output_shape == (None, 7)
    assert model.layers[-1].name == "logits"
    assert model.layers[-1].activation is keras.activations.linear
    out = np.asarray(model(_inputs(model), training=False))
    assert out.shape == (6, 7) and np.isfinite(out).all()
    assert not np.allclose(out.sum(axis=1), 1.0, atol=1e-3)
    assert out.min() < 0.0
    check_logits(out)
    assert check_classifier(model)[1] == 7


def test_default_architectures():
    cnn = zoo.small_cnn()
    assert cnn.name == "small_cnn" and cnn.input_shape == (None, 28, 28, 1)
    convs = [layer for layer in cnn.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 64]
    dense = [layer for layer in cnn.layers if isinstance(layer, keras.layers.Dense)]
    assert [d.units for d in dense] == [128, 10]
    net = zoo.mlp((8, 8))
    assert [d.units for d in net.layers if isinstance(d, keras.layers.Dense)] == [256, 256, 10]
    assert zoo.mlp((4,), hidden_units=()).count_params() == 4 * 10 + 10
    resnet = zoo.small_resnet(blocks_per_stage=2)
    assert resnet.input_shape == (None, 32, 32, 3) and resnet.output_shape == (None, 10)
    adds = [layer for layer in resnet.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 6
    widths = {layer.filters for layer in resnet.layers if isinstance(layer, keras.layers.Conv2D)}
    assert widths == {16, 32, 64}
    assert zoo.small_cnn((8, 8, 1)).output_shape == (None, 10)  # small inputs work


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (lambda bn: zoo.small_cnn(width=4, batch_norm=bn), 2),
        (lambda bn: zoo.mlp((10,), hidden_units=(8, 8, 8), batch_norm=bn), 3),
    ],
)
def test_batch_norm_adds_batch_normalization_layers(builder, expected):
    def count(model):
        return sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)

    assert count(builder(False)) == 0
    assert count(builder(True)) == expected


@pytest.mark.parametrize("key", sorted(BUILDERS))
def test_json_round_trip_gives_the_same_outputs(key):
    model = BUILDERS[key](num_classes=5, name=f"model_{key}")
    x = _inputs(model, seed=1)
    restored = keras.models.model_from_json(model.to_json())
    assert restored.name == f"model_{key}"
    restored.set_weights(model.get_weights())
    np.testing.assert_allclose(
        np.asarray(restored(x, training=False)),
        np.asarray(model(x, training=False)),
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: zoo.small_cnn(input_shape=(28, 28)), ValueError, "input_shape"),
        (lambda: zoo.small_cnn(input_shape=(28, 0, 1)), ValueError, "input_shape"),
        (lambda: zoo.small_cnn(input_shape=(28, None, 1)), ValueError, "input_shape"),
        (lambda: zoo.small_cnn(input_shape=(2, 2, 1)), ValueError, "input_shape"),
        (lambda: zoo.small_cnn(input_shape=28), TypeError, "input_shape"),
        (lambda: zoo.small_cnn(input_shape="28"), TypeError, "input_shape"),
        (lambda: zoo.small_cnn(num_classes=1), ValueError, "num_classes=1"),
        (lambda: zoo.small_cnn(num_classes=2.5), TypeError, "num_classes"),
        (lambda: zoo.small_cnn(width=0), ValueError, "width=0"),
        (lambda: zoo.small_cnn(batch_norm="yes"), TypeError, "batch_norm"),
        (lambda: zoo.small_cnn(name=""), ValueError, "name"),
        (lambda: zoo.mlp(input_shape=(), num_classes=3), ValueError, "input_shape"),
        (lambda: zoo.mlp(input_shape=(4,), num_classes=0), ValueError, "num_classes=0"),
        (lambda: zoo.mlp(input_shape=(4,), hidden_units=(8, 0)), ValueError, "hidden_units"),
        (lambda: zoo.mlp(input_shape=(4,), hidden_units=8), TypeError, "hidden_units"),
        (lambda: zoo.mlp(input_shape=(4,), batch_norm=1), TypeError, "batch_norm"),
        (lambda: zoo.small_resnet(input_shape=(32, 32)), ValueError, "input_shape"),
        (lambda: zoo.small_resnet(num_classes=1), ValueError, "num_classes=1"),
        (lambda: zoo.small_resnet(blocks_per_stage=0), ValueError, "blocks_per_stage=0"),
        (lambda: zoo.small_resnet(width=-1), ValueError, "width=-1"),
    ],
)
def test_bad_arguments_raise(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_trains_on_a_batch():
    keras.utils.set_random_seed(0)
    model = zoo.small_cnn(input_shape=(8, 8, 1), num_classes=3, width=4, batch_norm=True)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    x = _inputs(model, n=12)
    y = np.arange(12) % 3
    history = model.fit(x, y, epochs=5, batch_size=12, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
