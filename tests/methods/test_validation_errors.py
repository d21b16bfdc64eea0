"""Bad input at the model boundary raises a clear error naming the argument and value."""

import keras
import numpy as np
import pytest

import keras_mwat as km
from tests.methods.helpers import deterministic_attack, make_cnn, meta_set


@pytest.fixture
def model():
    model = km.MWATModel(meta_data=meta_set(), classifier=make_cnn(), attack=deterministic_attack(1), seed=0)
    model.compile(optimizer="sgd")
    return model


def test_labels_out_of_range(model, tiny_data):
    y = tiny_data.y_train[:32].copy()
    y[3] = 10
    with pytest.raises(ValueError, match=r"`y` has label 10"):
        model.fit(tiny_data.x_train[:32], y, verbose=0)


def test_labels_of_wrong_shape(model, tiny_data):
    with pytest.raises(ValueError, match="`y`"):
        model.fit(tiny_data.x_train[:32], tiny_data.y_train[:32].reshape(4, 8), verbose=0)


def test_nan_inputs(model, tiny_data):
    x = tiny_data.x_train[:32].copy()
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="`x` contains 1 NaN"):
        model.fit(x, tiny_data.y_train[:32], verbose=0)


def test_inputs_outside_value_range(model, tiny_data):
    with pytest.raises(ValueError, match=r"outside the declared value_range=\(0, 1\)"):
        model.fit(tiny_data.x_train[:32] * 255.0, tiny_data.y_train[:32], verbose=0)


def test_inputs_outside_value_range_in_a_dataset(model, tiny_data):
    import tensorflow as tf
    ds = tf.data.Dataset.from_tensor_slices((tiny_data.x_train[:32] * 255.0,
                                             tiny_data.y_train[:32])).batch(8)
    with pytest.raises(ValueError, match="first dataset batch"):
        model.fit(ds, verbose=0)


def test_wrong_input_shape(model):
    with pytest.raises(ValueError, match="sample shape"):
        model.fit(np.zeros((4, 32, 32, 3), "float32"), np.zeros(4, "int64"), verbose=0)


def test_classifier_with_softmax_is_rejected():
    classifier = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="softmax"):
        km.PGDATModel(classifier, attack=deterministic_attack())


def test_classifier_outputting_probabilities_is_rejected():
    inputs = keras.Input((4,))
    outputs = keras.layers.Softmax()(keras.layers.Dense(3)(inputs))
    with pytest.raises(ValueError, match="probabilities"):
        km.PGDATModel(keras.Model(inputs, outputs), attack=deterministic_attack())


def test_unbuilt_classifier_is_rejected():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    with pytest.raises(ValueError, match="not built"):
        km.MWATModel(Net())


@pytest.mark.parametrize("kwargs, match", [
    ({"margin": "hinge"}, "margin"),
    ({"meta_source": "holdout"}, "meta_source"),
    ({"meta_objective": "kl"}, "meta_objective"),
    ({"weight_normalization": "max"}, "weight_normalization"),
    ({"meta_update_every": 0}, "meta_update_every"),
    ({"inner_lr": -1.0}, "inner_lr"),
    ({"reweight_start_epoch": -1}, "reweight_start_epoch"),
    ({"meta_source": "batch", "meta_data": "meta"}, "meta_data"),
    ({"meta_attack_model": "theta"}, "meta_attack_model"),
    ({"meta_data": ([[0.0]], [0])}, "meta_data x"),
])
def test_bad_options(kwargs, match):
    if kwargs.get("meta_data") == "meta":
        kwargs = {**kwargs, "meta_data": meta_set()}
    with pytest.raises((ValueError, TypeError), match=match):
        km.MWATModel(make_cnn(), attack=deterministic_attack(), **kwargs)
