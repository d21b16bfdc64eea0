"""The weight network: a small MLP mapping a sample's margin features to a weight."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from keras_mwat.validation import check_int


@keras.saving.register_keras_serializable(package="keras_mwat")
class WeightNetwork(keras.Model):
    """MLP from margin features to a per-sample importance weight in (0, 1).

    The default architecture is ``Dense(100, relu) -> Dense(1, sigmoid)``, as in
    Meta-Weight-Net. Its input size is set by the first call (or by ``build``); the owning
    training model builds it for the margin features it uses. It always computes in float32,
    also under a mixed-precision policy.

    Args:
        hidden_units: Sizes of the hidden layers.
        activation: Activation of the hidden layers.
        output_activation: Activation of the output unit; "sigmoid" keeps weights in (0, 1).
        **kwargs: Passed to ``keras.Model`` (e.g. ``name``).

    Example:
    ```python
    net = keras_mwat.WeightNetwork(hidden_units=(64,))
    weights = net(tf.zeros((8, 20)))   # shape (8,)
    ```
    """

    def __init__(
        self,
        hidden_units: Sequence[int] = (100,),
        activation: str = "relu",
        output_activation: str = "sigmoid",
        **kwargs,
    ):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.hidden_units = tuple(
            check_int(units, "hidden_units", minimum=1) for units in hidden_units
        )
        self.activation = activation
        self.output_activation = output_activation
        self.hidden_layers = [
            keras.layers.Dense(units, activation=activation, dtype=self.dtype_policy,
                               name=f"hidden_{i}")
            for i, units in enumerate(self.hidden_units)
        ]
        self.output_layer = keras.layers.Dense(
            1, activation=output_activation, dtype=self.dtype_policy, name="weight"
        )

    def build(self, input_shape):
        if self.output_layer.built:
            return
        shape = tuple(input_shape)
        for layer in self.hidden_layers:
            layer.build(shape)
            shape = shape[:-1] + (layer.units,)
        self.output_layer.build(shape)
        self.built = True

    def call(self, features):
        hidden = tf.cast(features, self.compute_dtype)
        for layer in self.hidden_layers:
            hidden = layer(hidden)
        return tf.squeeze(self.output_layer(hidden), axis=-1)

    def get_config(self):
        config = super().get_config()
        config.update(
            hidden_units=list(self.hidden_units),
            activation=self.activation,
            output_activation=self.output_activation,
        )
        return config
