"""Small reference classifiers that output logits.

Every builder returns a built functional ``keras.Model`` whose last layer, named
``"logits"``, is a linear ``Dense(num_classes)``: no softmax, as the library's losses and
attacks expect. The models serialise with ``model.to_json()`` / ``model.save()``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras
import numpy as np

from keras_mwat.validation import check_int

__all__ = ["small_cnn", "mlp", "small_resnet"]


def _check_input_shape(input_shape, rank: int | None = None) -> tuple[int, ...]:
    """Returns ``input_shape`` as a tuple of positive ints (no batch axis)."""
    if isinstance(input_shape, str) or not isinstance(input_shape, Sequence):
        raise TypeError(
            "`input_shape` must be a tuple of positive ints without the batch axis, "
            f"got input_shape={input_shape!r}."
        )
    dims = tuple(input_shape)
    if not dims or any(
        isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1 for d in dims
    ):
        raise ValueError(
            "`input_shape` must be a non-empty tuple of positive ints without the batch "
            f"axis, got input_shape={input_shape!r}."
        )
    if rank is not None and len(dims) != rank:
        raise ValueError(
            f"`input_shape` must be (height, width, channels) for this model, got "
            f"input_shape={input_shape!r}. Add a channel axis for grayscale images, e.g. "
            "(28, 28, 1)."
        )
    return tuple(int(d) for d in dims)


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"`{name}` must be a bool, got {name}={value!r}.")
    return bool(value)


def _check_name(name) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"`name` must be a non-empty string, got name={name!r}.")
    return name


def small_cnn(
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    batch_norm: bool = False,
    width: int = 32,
    name: str = "small_cnn",
) -> keras.Model:
    """A two-block convolutional classifier for small images (MNIST-sized).

    ``Conv2D(width, 3, relu) -> [BatchNorm] -> MaxPool -> Conv2D(2*width, 3, relu) ->
    [BatchNorm] -> MaxPool -> Flatten -> Dense(128, relu) -> Dense(num_classes)``. The
    convolutions use ``"same"`` padding, so inputs from 4x4 upwards work (e.g. scikit-learn's
    8x8 digits).

    Args:
        input_shape: ``(height, width, channels)`` of one image.
        num_classes: Number of classes (>= 2).
        batch_norm: Insert a ``BatchNormalization`` after each convolution.
        width: Filters of the first convolution (the second has twice as many).
        name: Model name.

    Returns:
        A built functional ``keras.Model`` mapping images to logits of shape
        (n, num_classes).

    Example:
        >>> import keras_mwat as km
        >>> model = km.zoo.small_cnn(input_shape=(28, 28, 1), num_classes=10)
        >>> model.output_shape
        (None, 10)
        >>> model.layers[-1].name
        'logits'
    """
    input_shape = _check_input_shape(input_shape, rank=3)
    if input_shape[0] < 4 or input_shape[1] < 4:
        raise ValueError(
            f"`input_shape` must be at least 4x4 for two 2x2 poolings, got "
            f"input_shape={input_shape!r}."
        )
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    batch_norm = _check_bool(batch_norm, "batch_norm")
    width = check_int(width, "width", minimum=1)
    name = _check_name(name)

    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="inputs")
    h = inputs
    for i, filters in enumerate((width, 2 * width), start=1):
        h = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv{i}")(h)
        if batch_norm:
            h = layers.BatchNormalization(name=f"bn{i}")(h)
        h = layers.MaxPooling2D(2, name=f"pool{i}")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(128, activation="relu", name="dense")(h)
    outputs = layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, outputs, name=name)


def mlp(
    input_shape: Sequence[int],
    num_classes: int = 10,
    hidden_units: Sequence[int] = (256, 256),
    batch_norm: bool = False,
    name: str = "mlp",
) -> keras.Model:
    """A fully connected classifier: ``Flatten -> [Dense(relu) -> [BatchNorm]]* -> logits``.

    Args:
        input_shape: Shape of one sample (any rank; it is flattened).
        num_classes: Number of classes (>= 2).
        hidden_units: Width of each hidden layer; ``()`` gives a linear (softmax regression)
            model.
        batch_norm: Insert a ``BatchNormalization`` after each hidden layer.
        name: Model name.

    Returns:
        A built functional ``keras.Model`` mapping inputs to logits of shape
        (n, num_classes).

    Example:
        >>> import keras_mwat as km
        >>> model = km.zoo.mlp(input_shape=(8, 8), num_classes=10, hidden_units=(64,))
        >>> model.output_shape
        (None, 10)
    """
    input_shape = _check_input_shape(input_shape)
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    if isinstance(hidden_units, str) or not isinstance(hidden_units, Sequence):
        raise TypeError(
            f"`hidden_units` must be a sequence of positive ints, got hidden_units={hidden_units!r}."
        )
    try:
        hidden_units = tuple(check_int(u, "hidden_units", minimum=1) for u in hidden_units)
    except (TypeError, ValueError) as error:
        raise type(error)(
            f"`hidden_units` must be a sequence of positive ints, got hidden_units={hidden_units!r}."
        ) from None
    batch_norm = _check_bool(batch_norm, "batch_norm")
    name = _check_name(name)

    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="inputs")
    h = layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden_units, start=1):
        h = layers.Dense(units, activation="relu", name=f"dense{i}")(h)
        if batch_norm:
            h = layers.BatchNormalization(name=f"bn{i}")(h)
    outputs = layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, outputs, name=name)


def _conv_bn(h, filters: int, kernel_size: int, strides: int, name: str, relu: bool = True):
    h = keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
    )(h)
    h = keras.layers.BatchNormalization(name=f"{name}_bn")(h)
    if relu:
        h = keras.layers.ReLU(name=f"{name}_relu")(h)
    return h


def small_resnet(
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    width: int = 16,
    blocks_per_stage: int = 1,
    name: str = "small_resnet",
) -> keras.Model:
    """A small three-stage residual network (post-activation ResNet) for benchmarks.

    A 3x3 conv-BN-ReLU stem, then three stages of ``blocks_per_stage`` basic blocks with
    ``width``, ``2*width`` and ``4*width`` filters (the second and third stages start with
    stride 2). A block is ``conv3x3-BN-ReLU-conv3x3-BN`` plus a shortcut (identity, or a
    1x1 conv-BN projection where the shape changes), followed by a ReLU. Global average
    pooling and a linear ``Dense(num_classes)`` give the logits. With
    ``blocks_per_stage=3`` this is the classic ResNet-20 layout.

    Args:
        input_shape: ``(height, width, channels)`` of one image.
        num_classes: Number of classes (>= 2).
        width: Filters of the first stage.
        blocks_per_stage: Residual blocks in each stage (>= 1).
        name: Model name.

    Returns:
        A built functional ``keras.Model`` mapping images to logits of shape
        (n, num_classes).

    Example:
        >>> import keras_mwat as km
        >>> model = km.zoo.small_resnet(input_shape=(32, 32, 3), num_classes=10, width=8)
        >>> model.output_shape
        (None, 10)
    """
    input_shape = _check_input_shape(input_shape, rank=3)
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    width = check_int(width, "width", minimum=1)
    blocks_per_stage = check_int(blocks_per_stage, "blocks_per_stage", minimum=1)
    name = _check_name(name)

    inputs = keras.Input(shape=input_shape, name="inputs")
    h = _conv_bn(inputs, width, 3, 1, name="stem")
    for stage, filters in enumerate((width, 2 * width, 4 * width), start=1):
        for block in range(1, blocks_per_stage + 1):
            prefix = f"stage{stage}_block{block}"
            strides = 2 if stage > 1 and block == 1 else 1
            shortcut = h
            if strides != 1 or h.shape[-1] != filters:
                shortcut = _conv_bn(h, filters, 1, strides, name=f"{prefix}_proj", relu=False)
            h = _conv_bn(h, filters, 3, strides, name=f"{prefix}_a")
            h = _conv_bn(h, filters, 3, 1, name=f"{prefix}_b", relu=False)
            h = keras.layers.Add(name=f"{prefix}_add")([h, shortcut])
            h = keras.layers.ReLU(name=f"{prefix}_out")(h)
    h = keras.layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = keras.layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, outputs, name=name)
