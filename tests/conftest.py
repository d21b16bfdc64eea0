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
