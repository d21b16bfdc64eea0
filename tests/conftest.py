"""Shared test setup: quiet TensorFlow logs and seed every test."""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import keras  # noqa: E402
import pytest  # noqa: E402

import keras_mwat as km  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    keras.utils.set_random_seed(0)
    yield


@pytest.fixture(scope="session")
def tiny_data():
    data = km.data.load_embedded().subset(train=96, validation=32, test=32, seed=0)
    return data


@pytest.fixture(scope="session")
def clean_cnn():
    """A small CNN trained (without attacks) on the embedded data, and its test split.

    At eps = 0.1 (L-infinity) it is partly robust, so attacks of different strength give
    different robust accuracies.
    """
    data = km.data.load_embedded()
    keras.utils.set_random_seed(0)
    model = km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10, width=8)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(*data.train, epochs=2, batch_size=64, verbose=0)
    return model, data.test
