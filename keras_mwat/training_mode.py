"""Whether a classifier's outputs depend on Keras's ``training`` flag.

A training step needs clean logits twice when its method also trains on the clean inputs
(TRADES, MART, MAIL-TRADES): in inference mode for the attack's objective and in training
mode, recorded for the gradient. When no layer behaves differently in training (no
BatchNormalization, Dropout, noise or augmentation layer), the two are equal and one
forward pass serves both. The test is conservative: any layer whose ``call`` takes a
``training`` argument counts as training-dependent, except the containers (Sequential and
functional models, whose layers are inspected instead) and unquantised ``Dense`` and
``EinsumDense`` layers (their ``training`` argument only matters for float8 training).
"""

from __future__ import annotations

import inspect

import keras

from keras_mwat import _compat

_Functional = _compat.functional_model_class()  # the class of keras.Model(inputs, outputs)


def _takes_training(layer) -> bool:
    try:
        return "training" in inspect.signature(layer.call).parameters
    except (TypeError, ValueError):  # no introspectable signature: assume it does
        return True


def _is_training_independent(layer) -> bool:
    if isinstance(layer, keras.Sequential) or (_Functional and isinstance(layer, _Functional)):
        return True  # a container: its layers are checked one by one
    if not _takes_training(layer):
        return True
    if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
        return getattr(layer.dtype_policy, "quantization_mode", None) is None
    return False


def output_depends_on_training(model: keras.layers.Layer) -> bool:
    """True unless every layer of ``model`` computes the same in training and inference.

    Args:
        model: A Keras layer or model (nested models are searched).

    Returns:
        False only when ``model(x, training=True)`` provably equals
        ``model(x, training=False)`` by the rule of this module; True otherwise, including
        for custom layers that take a ``training`` argument.

    Example:

    ```python
    output_depends_on_training(keras_mwat.zoo.small_cnn())     # False
    output_depends_on_training(keras_mwat.zoo.small_resnet())  # True (BatchNormalization)
    ```
    """
    layers = _compat.flatten_layers(model)
    return not all(_is_training_independent(layer) for layer in layers)
