"""WeightNetwork: shapes, range, serialisation."""

import keras
import numpy as np
import pytest

from keras_mwat import WeightNetwork


def test_default_architecture_and_output_range():
    net = WeightNetwork()
    out = net(np.random.default_rng(0).normal(size=(7, 20)).astype("float32")).numpy()
    assert out.shape == (7,)
    assert np.all((out > 0) & (out < 1))
    assert [layer.units for layer in net.hidden_layers] == [100]
    assert net.output_layer.activation.__name__ == "sigmoid"


def test_round_trip_through_config_and_weights(tmp_path):
    net = WeightNetwork(hidden_units=(8, 4))
    x = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    expected = net(x).numpy()
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    clone.build((None, 3))
    clone.set_weights(net.get_weights())
    np.testing.assert_allclose(clone(x).numpy(), expected, rtol=1e-6)
    path = tmp_path / "w.keras"
    net.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-6)


def test_bad_hidden_units():
    with pytest.raises(ValueError, match="hidden_units"):
        WeightNetwork(hidden_units=(0,))
