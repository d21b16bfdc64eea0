"""Which classifiers compute the same in training and inference (one shared clean forward)."""

import keras
import numpy as np
import pytest

import keras_mwat as km
from keras_mwat.training_mode import output_depends_on_training


def _sequential(*layers):
    model = keras.Sequential([keras.Input((6,)), *layers])
    return model


class _Noisy(keras.layers.Layer):
    def call(self, inputs, training=False):
        return inputs + 1.0 if training else inputs


@pytest.mark.parametrize(
    "model, depends",
    [
        (km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10, width=4), False),
        (km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10, width=4,
                          batch_norm=True), True),
        (km.zoo.small_resnet(), True),
        (_sequential(keras.layers.Dense(4), keras.layers.Dense(3)), False),
        (_sequential(keras.layers.Dense(4), keras.layers.Dropout(0.5),
                     keras.layers.Dense(3)), True),
        (_sequential(keras.layers.GaussianNoise(0.1), keras.layers.Dense(3)), True),
        (_sequential(_Noisy(), keras.layers.Dense(3)), True),
        # nested: a training-dependent layer inside an inner model is found
        (_sequential(_sequential(keras.layers.Dense(4), keras.layers.Dropout(0.2)),
                     keras.layers.Dense(3)), True),
        (_sequential(_sequential(keras.layers.Dense(4)), keras.layers.Dense(3)), False),
    ],
)
def test_training_dependence_is_detected(model, depends):
    assert output_depends_on_training(model) is depends
    if not depends:  # what the answer promises
        x = np.random.default_rng(0).uniform(size=(5, *model.input_shape[1:])).astype("float32")
        np.testing.assert_array_equal(model(x, training=True), model(x, training=False))
