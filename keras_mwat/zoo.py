"""Reference classifiers that output logits, including the paper's four architectures.

``fc1``, ``tiny_cnn``, ``cifar_small_cnn`` and ``wide_resnet`` are the models of Holtz,
Weng and Mishne (2022); ``small_cnn``, ``mlp`` and ``small_resnet`` are small models for
quick experiments. Every builder returns a built functional ``keras.Model`` whose last layer, named
``"logits"``, is a linear ``Dense(num_classes)``: no softmax, as the library's losses and
attacks expect. The models serialise with ``model.to_json()`` / ``model.save()``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import keras
import numpy as np

from keras_mwat.validation import check_int

__all__ = [
    "torch_init",
    "small_cnn",
    "mlp",
    "small_resnet",
    "fc1",
    "tiny_cnn",
    "cifar_small_cnn",
    "wide_resnet",
]


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


# The paper's architectures (Holtz, Weng and Mishne 2022, appendix tables 4-5).


def _batch_norm(name: str) -> keras.layers.BatchNormalization:
    """PyTorch's batch-norm defaults (momentum 0.1, i.e. Keras 0.9; eps 1e-5), as the
    reference implementations of the paper's CIFAR models use."""
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=name)


def _check_min_size(input_shape: tuple[int, ...], minimum: int, reason: str) -> None:
    if input_shape[0] < minimum or input_shape[1] < minimum:
        raise ValueError(
            f"`input_shape` must be at least {minimum}x{minimum} for {reason}, got "
            f"input_shape={input_shape!r}."
        )


def fc1(
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    name: str = "fc1",
) -> keras.Model:
    """The paper's FC1: ``Flatten -> Dense(1024, relu) -> Dense(num_classes)``.

    The one-hidden-layer network of the paper's MNIST and Fashion-MNIST experiments. For
    the default shapes it has 814,090 parameters (784 * 1024 + 1024 + 1024 * 10 + 10).

    Args:
        input_shape: Shape of one sample (any rank; it is flattened).
        num_classes: Number of classes (>= 2).
        name: Model name.

    Returns:
        A built functional ``keras.Model`` mapping inputs to logits of shape
        (n, num_classes).

    Example:
        >>> import keras_mwat as km
        >>> model = km.zoo.fc1(input_shape=(28, 28, 1), num_classes=10)
        >>> model.count_params()
        814090
    """
    input_shape = _check_input_shape(input_shape)
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    name = _check_name(name)

    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="inputs")
    h = layers.Flatten(name="flatten")(inputs)
    h = layers.Dense(1024, activation="relu", name="dense")(h)
    outputs = layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, outputs, name=name)


def tiny_cnn(
    input_shape: Sequence[int] = (28, 28, 1),
    num_classes: int = 10,
    name: str = "tiny_cnn",
) -> keras.Model:
    """The paper's tiny-CNN, the MNIST model of Wong and Kolter (2018).

    ``Conv2D(16, 4x4, stride 2, relu) -> Conv2D(32, 4x4, stride 2, relu) -> Flatten ->
    Dense(100, relu) -> Dense(num_classes)``. Each convolution pads the input by one pixel
    on every side (``ZeroPadding2D(1)`` then ``"valid"``, PyTorch's ``padding=1``), so a
    28x28 image becomes 14x14 then 7x7 and 1,568 features enter ``Dense(100)``. For the
    default shapes it has 166,406 parameters.

    Args:
        input_shape: ``(height, width, channels)`` of one image, at least 4x4.
        num_classes: Number of classes (>= 2).
        name: Model name.

    Returns:
        A built functional ``keras.Model`` mapping images to logits of shape
        (n, num_classes).

    Example:
        >>> import keras_mwat as km
        >>> model = km.zoo.tiny_cnn(input_shape=(28, 28, 1), num_classes=10)
        >>> model.count_params()
        166406
    """
    input_shape = _check_input_shape(input_shape, rank=3)
    _check_min_size(input_shape, 4, "two 4x4 stride-2 convolutions")
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    name = _check_name(name)

    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="inputs")
    h = inputs
    for i, filters in enumerate((16, 32), start=1):
        h = layers.ZeroPadding2D(1, name=f"pad{i}")(h)
        h = layers.Conv2D(filters, 4, strides=2, activation="relu", name=f"conv{i}")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(100, activation="relu", name="dense")(h)
    outputs = layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, outputs, name=name)


def cifar_small_cnn(
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    name: str = "cifar_small_cnn",
) -> keras.Model:
    """The paper's small-CNN for CIFAR: three double-convolution blocks and two dense layers.

    Three blocks of ``[Conv2D(c, 3x3, same) -> BatchNorm -> ReLU -> Conv2D(c, 3x3, same) ->
    BatchNorm -> ReLU -> MaxPool 2x2]`` with ``c`` = 64, 128, 196, then ``Flatten ->
    Dense(256, relu) -> Dense(num_classes)``. The convolutions keep their biases and the
    batch normalisations use PyTorch's defaults (momentum 0.1, i.e. Keras ``momentum=0.9``,
    epsilon 1e-5), as the reference PyTorch implementation (GAIRAT's ``SmallCNN``) does.
    For the default shapes (3,136 features into ``Dense(256)``) it has 1,639,282 trainable
    parameters, plus 1,552 batch-norm moving statistics: ``count_params()`` gives
    1,640,834.

    Args:
        input_shape: ``(height, width, channels)`` of one image, at least 8x8.
        num_classes: Number of classes (>= 2).
        name: Model name.

    Returns:
        A built functional ``keras.Model`` mapping images to logits of shape
        (n, num_classes).

    Example:
        >>> import keras_mwat as km
        >>> model = km.zoo.cifar_small_cnn(input_shape=(32, 32, 3), num_classes=10)
        >>> model.output_shape
        (None, 10)
    """
    input_shape = _check_input_shape(input_shape, rank=3)
    _check_min_size(input_shape, 8, "three 2x2 poolings")
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    name = _check_name(name)

    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="inputs")
    h = inputs
    for block, filters in enumerate((64, 128, 196), start=1):
        for conv in (1, 2):
            prefix = f"block{block}_conv{conv}"
            h = layers.Conv2D(filters, 3, padding="same", name=prefix)(h)
            h = _batch_norm(f"{prefix}_bn")(h)
            h = layers.ReLU(name=f"{prefix}_relu")(h)
        h = layers.MaxPooling2D(2, name=f"block{block}_pool")(h)
    h = layers.Flatten(name="flatten")(h)
    h = layers.Dense(256, activation="relu", name="dense")(h)
    outputs = layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, outputs, name=name)


def _wrn_conv(h, filters: int, kernel_size: int, strides: int, name: str):
    """A bias-free convolution with He-normal (fan-out) initialisation, padded as PyTorch's
    ``padding=kernel_size // 2`` (an explicit symmetric pad when strided)."""
    padding = "same"
    if strides > 1 and kernel_size > 1:
        h = keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad")(h)
        padding = "valid"
    elif kernel_size == 1:
        padding = "valid"
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=keras.initializers.VarianceScaling(
            scale=2.0, mode="fan_out", distribution="untruncated_normal"
        ),
        name=name,
    )(h)


def wide_resnet(
    input_shape: Sequence[int] = (32, 32, 3),
    num_classes: int = 10,
    depth: int = 34,
    widen_factor: int = 10,
    name: str | None = None,
) -> keras.Model:
    """A pre-activation wide residual network, WRN-``depth``-``widen_factor``.

    The WRN of Zagoruyko and Komodakis (2016) as used by TRADES, MART and GAIRAT: a 3x3
    convolution with 16 filters, then three groups
    of ``(depth - 4) / 6`` basic blocks with ``16 * widen_factor``, ``32 * widen_factor``
    and ``64 * widen_factor`` filters (the second and third groups start with stride 2),
    then ``BatchNorm -> ReLU -> global average pooling -> Dense(num_classes)``. A block is
    ``BN-ReLU-conv3x3-BN-ReLU-conv3x3`` plus a shortcut: the identity, or, where the
    shape changes, a 1x1 convolution of the block's pre-activated input. Convolutions are
    bias-free with He-normal (fan-out) initialisation; batch normalisation uses PyTorch's
    defaults (Keras ``momentum=0.9``, epsilon 1e-5).

    The paper trains GAIRAT's "WRN-32-10", whose code counts depth as ``6 * n + 2``
    (Madry et al.'s convention): its five blocks per group make it this function's
    ``depth=34``, the default; ``depth=32`` is not a valid depth here.

    Parameter counts for CIFAR-10 (32x32x3 inputs, 10 classes), as trainable parameters
    (the number PyTorch reports) / ``count_params()`` (which adds the batch-norm moving
    statistics): WRN-34-10 (the default, GAIRAT's WRN-32-10) 46,160,474 / 46,182,906;
    WRN-28-10 36,479,194 / 36,497,146; WRN-10-1 77,850 / 78,330.

    Args:
        input_shape: ``(height, width, channels)`` of one image.
        num_classes: Number of classes (>= 2).
        depth: Network depth; ``depth - 4`` must be a positive multiple of 6 (10, 16, 22,
            28, 34, ...).
        widen_factor: Width multiplier ``k`` of the three groups (>= 1).
        name: Model name; ``None`` gives ``"wrn_{depth}_{widen_factor}"``.

    Returns:
        A built functional ``keras.Model`` mapping images to logits of shape
        (n, num_classes).

    Example:
        >>> import keras_mwat as km
        >>> model = km.zoo.wide_resnet((32, 32, 3), num_classes=10, depth=10, widen_factor=1)
        >>> model.name, model.output_shape
        ('wrn_10_1', (None, 10))
    """
    input_shape = _check_input_shape(input_shape, rank=3)
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    depth = check_int(depth, "depth", minimum=1)
    if depth < 10 or (depth - 4) % 6:
        hint = ""
        if depth >= 8 and (depth - 2) % 6 == 0:
            hint = (
                f" Code that counts depth as 6 * n + 2 (GAIRAT's WRN-32-10, Madry et al.) "
                f"means depth={depth + 2} here."
            )
        raise ValueError(
            "`depth` must be 6 * n + 4 for a positive integer n (blocks per group), e.g. "
            f"10, 16, 22, 28 or 34, got depth={depth!r}.{hint}"
        )
    widen_factor = check_int(widen_factor, "widen_factor", minimum=1)
    name = _check_name(f"wrn_{depth}_{widen_factor}" if name is None else name)
    blocks_per_group = (depth - 4) // 6

    layers = keras.layers
    inputs = keras.Input(shape=input_shape, name="inputs")
    h = _wrn_conv(inputs, 16, 3, 1, name="stem_conv")
    widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
    for group, filters in enumerate(widths, start=1):
        for block in range(1, blocks_per_group + 1):
            prefix = f"group{group}_block{block}"
            strides = 2 if group > 1 and block == 1 else 1
            pre = _batch_norm(f"{prefix}_bn1")(h)
            pre = layers.ReLU(name=f"{prefix}_relu1")(pre)
            if strides == 1 and h.shape[-1] == filters:
                shortcut = h
            else:
                shortcut = _wrn_conv(pre, filters, 1, strides, name=f"{prefix}_shortcut")
            r = _wrn_conv(pre, filters, 3, strides, name=f"{prefix}_conv1")
            r = _batch_norm(f"{prefix}_bn2")(r)
            r = layers.ReLU(name=f"{prefix}_relu2")(r)
            r = _wrn_conv(r, filters, 3, 1, name=f"{prefix}_conv2")
            h = layers.Add(name=f"{prefix}_add")([r, shortcut])
    h = _batch_norm("final_bn")(h)
    h = layers.ReLU(name="final_relu")(h)
    h = layers.GlobalAveragePooling2D(name="pool")(h)
    outputs = layers.Dense(num_classes, name="logits")(h)
    return keras.Model(inputs, outputs, name=name)


def torch_init(model: keras.Model, seed: int = 0) -> keras.Model:
    """Re-initialises ``model`` in place as PyTorch initialises its layers by default.

    PyTorch's ``nn.Linear`` and ``nn.Conv2d`` draw kernel and bias from
    ``U(−1/√fan_in, 1/√fan_in)`` (``kaiming_uniform_(a=√5)``), where Keras draws kernels
    from Glorot-uniform and sets biases to zero. The paper's code is not public, and papers
    of this field use PyTorch: its small models (FC1, tiny-CNN, small-CNN) would have had
    this initialisation [GAP]. It matters: with the paper's SGD (lr 0.1, momentum 0.9),
    PGD-AT of ``tiny_cnn`` from Keras's initialisation stayed at chance on MNIST-like data,
    from this one it learned (docs/protocol.md). Only ``Dense`` and ``Conv`` layers whose
    kernel initialiser is Keras's default (Glorot-uniform) are changed: a model that sets
    its own (``wide_resnet``: He-normal, as its reference code) keeps it; BatchNorm is the
    same in both frameworks.

    Args:
        model: A built Keras model.
        seed: Seed of the draws.

    Returns:
        ``model`` itself, re-initialised.

    Example:
    ```python
    clf = keras_mwat.zoo.torch_init(keras_mwat.zoo.tiny_cnn(), seed=0)
    ```
    """
    seed = check_int(seed, "seed", minimum=0)
    rng = np.random.default_rng(seed)
    layers = [layer for layer in _all_layers(model)
              if isinstance(layer, keras.layers.Dense | keras.layers.Conv1D |
                            keras.layers.Conv2D | keras.layers.Conv3D)
              and isinstance(layer.kernel_initializer, keras.initializers.GlorotUniform)]
    for layer in layers:
        kernel = layer.kernel
        bound = 1.0 / np.sqrt(int(np.prod(kernel.shape[:-1])))  # fan_in
        kernel.assign(rng.uniform(-bound, bound, kernel.shape).astype(kernel.dtype))
        if layer.use_bias:
            layer.bias.assign(rng.uniform(-bound, bound, layer.bias.shape)
                              .astype(layer.bias.dtype))
    return model


def _all_layers(model) -> list:
    """Every layer of ``model``, nested models' layers included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_all_layers(layer))
        else:
            found.append(layer)
    return found
