"""Tests of the reference classifiers (keras_mwat.zoo)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

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
    "fc1": lambda **kw: zoo.fc1(input_shape=(6, 6, 1), **kw),
    "tiny_cnn": lambda **kw: zoo.tiny_cnn(input_shape=(12, 12, 1), **kw),
    "cifar_small_cnn": lambda **kw: zoo.cifar_small_cnn(input_shape=(8, 8, 3), **kw),
    "wide_resnet": lambda **kw: zoo.wide_resnet(
        input_shape=(16, 16, 3), depth=10, widen_factor=1, **kw
    ),
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
        (lambda: zoo.fc1(input_shape=(), num_classes=3), ValueError, "input_shape"),
        (lambda: zoo.fc1(num_classes=1), ValueError, "num_classes=1"),
        (lambda: zoo.fc1(name=""), ValueError, "name"),
        (lambda: zoo.tiny_cnn(input_shape=(28, 28)), ValueError, "input_shape"),
        (lambda: zoo.tiny_cnn(input_shape=(3, 28, 1)), ValueError, "at least 4x4"),
        (lambda: zoo.tiny_cnn(num_classes=2.5), TypeError, "num_classes"),
        (lambda: zoo.cifar_small_cnn(input_shape=(7, 32, 3)), ValueError, "at least 8x8"),
        (lambda: zoo.cifar_small_cnn(num_classes=0), ValueError, "num_classes=0"),
        (lambda: zoo.wide_resnet(input_shape=(32, 32)), ValueError, "input_shape"),
        (lambda: zoo.wide_resnet(depth=4), ValueError, "depth=4"),
        (lambda: zoo.wide_resnet(depth=11), ValueError, "depth=11"),
        (lambda: zoo.wide_resnet(depth=32), ValueError, r"depth=32\..*means depth=34"),
        (lambda: zoo.wide_resnet(depth=0), ValueError, "depth"),
        (lambda: zoo.wide_resnet(depth="34"), TypeError, "depth"),
        (lambda: zoo.wide_resnet(widen_factor=0), ValueError, "widen_factor=0"),
        (lambda: zoo.wide_resnet(depth=10, name=""), ValueError, "name"),
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


# The paper's architectures.


def _trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def _conv(k, c_in, c_out, bias=True):
    return k * k * c_in * c_out + (c_out if bias else 0)


def _dense(n_in, n_out):
    return n_in * n_out + n_out


def _wrn_trainable(depth, k, num_classes, in_channels=3):
    """Hand count of a pre-activation WRN's trainable parameters (BN: gamma and beta)."""
    n = (depth - 4) // 6
    total = _conv(3, in_channels, 16, bias=False)
    c_in = 16
    for width in (16 * k, 32 * k, 64 * k):
        for block in range(n):
            c = c_in if block == 0 else width
            total += 2 * c + _conv(3, c, width, False) + 2 * width + _conv(3, width, width, False)
            if c != width:
                total += _conv(1, c, width, bias=False)
        c_in = width
    return total + 2 * 64 * k + _dense(64 * k, num_classes)


def _batch_norm_channels(model):
    return sum(
        layer.gamma.shape[0]
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


def test_fc1_and_tiny_cnn_parameter_counts():
    fc1 = zoo.fc1()
    assert fc1.name == "fc1" and fc1.input_shape == (None, 28, 28, 1)
    assert fc1.count_params() == 784 * 1024 + 1024 + 1024 * 10 + 10 == 814_090
    assert fc1.count_params() == _dense(784, 1024) + _dense(1024, 10)

    tiny = zoo.tiny_cnn()
    assert tiny.name == "tiny_cnn" and tiny.output_shape == (None, 10)
    assert tiny.count_params() == 166_406
    assert tiny.count_params() == (
        _conv(4, 1, 16) + _conv(4, 16, 32) + _dense(7 * 7 * 32, 100) + _dense(100, 10)
    )
    assert tiny.get_layer("conv1").output.shape[1:] == (14, 14, 16)
    assert tiny.get_layer("conv2").output.shape[1:] == (7, 7, 32)
    assert tiny.get_layer("flatten").output.shape[1:] == (1568,)
    assert zoo.tiny_cnn((28, 28, 1), num_classes=26).count_params() == 166_406 + 16 * 101


def test_tiny_cnn_pads_one_pixel_on_every_side():
    # A kernel that reads only its top-left tap: with PyTorch's padding=1 output (i, j) of
    # the first convolution sees input pixel (2i - 1, 2j - 1), and zero padding at i = 0.
    model = zoo.tiny_cnn((8, 8, 1))
    for i in (1, 2):
        pad = model.get_layer(f"pad{i}")
        assert pad.padding == ((1, 1), (1, 1))
        assert model.get_layer(f"conv{i}").padding == "valid"
    conv1 = model.get_layer("conv1")
    kernel = np.zeros((4, 4, 1, 16), "float32")
    kernel[0, 0, 0, :] = 1.0
    conv1.set_weights([kernel, np.zeros(16, "float32")])
    x = np.random.default_rng(0).uniform(0.5, 1.0, size=(2, 8, 8, 1)).astype("float32")
    features = keras.Model(model.input, conv1.output)
    out = np.asarray(features(x))[..., 0]
    assert out.shape == (2, 4, 4)
    np.testing.assert_array_equal(out[:, 0, :], 0.0)
    np.testing.assert_array_equal(out[:, :, 0], 0.0)
    np.testing.assert_allclose(out[:, 1:, 1:], x[:, 1:-1:2, 1:-1:2, 0], rtol=1e-6)


def test_cifar_small_cnn_architecture_and_parameter_count():
    model = zoo.cifar_small_cnn()
    assert model.name == "cifar_small_cnn" and model.input_shape == (None, 32, 32, 3)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 196, 196]
    assert all(c.padding == "same" and c.kernel_size == (3, 3) for c in convs)
    assert model.get_layer("flatten").output.shape[1:] == (4 * 4 * 196,)
    conv_params = sum(
        _conv(3, c_in, c_out)
        for c_in, c_out in [(3, 64), (64, 64), (64, 128), (128, 128), (128, 196), (196, 196)]
    )
    bn_channels = 2 * (64 + 128 + 196)
    trainable = conv_params + 2 * bn_channels + _dense(3136, 256) + _dense(256, 10)
    assert _batch_norm_channels(model) == bn_channels
    assert _trainable_count(model) == trainable == 1_639_282
    assert model.count_params() == trainable + 2 * bn_channels == 1_640_834
    bns = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(bn.momentum == 0.9 and bn.epsilon == 1e-5 for bn in bns)


@pytest.mark.parametrize(("widen_factor", "num_classes"), [(1, 10), (2, 7)])
def test_small_wide_resnet_matches_the_hand_count(widen_factor, num_classes):
    model = zoo.wide_resnet((32, 32, 3), num_classes, depth=16, widen_factor=widen_factor)
    assert model.name == f"wrn_16_{widen_factor}"
    trainable = _wrn_trainable(16, widen_factor, num_classes)
    assert _trainable_count(model) == trainable
    assert model.count_params() == trainable + 2 * _batch_norm_channels(model)
    adds = [layer for layer in model.layers if isinstance(layer, keras.layers.Add)]
    assert len(adds) == 3 * 2
    shortcuts = [layer for layer in model.layers if layer.name.endswith("_shortcut")]
    # With k = 1 the first group keeps 16 channels, so its first block is an identity.
    assert len(shortcuts) == (2 if widen_factor == 1 else 3)
    assert [model.get_layer(f"group{g}_block2_add").output.shape[1:3] for g in (1, 2, 3)] == [
        (32, 32),
        (16, 16),
        (8, 8),
    ]
    # Pre-activation: a projection shortcut reads the block's BN-ReLU output, an identity
    # shortcut the block's raw input.
    shortcut = model.get_layer("group2_block1_shortcut")
    assert shortcut.input is model.get_layer("group2_block1_relu1").output
    add_inputs = model.get_layer("group3_block2_add").input
    assert add_inputs[1] is model.get_layer("group3_block1_add").output
    for g in (2, 3):  # PyTorch's symmetric padding=1 before the strided 3x3 convolutions
        assert model.get_layer(f"group{g}_block1_conv1_pad").padding == ((1, 1), (1, 1))


def test_wide_resnet_forward_and_gradients_reach_every_weight():
    keras.utils.set_random_seed(0)
    model = zoo.wide_resnet((16, 16, 3), num_classes=4, depth=10, widen_factor=2)
    x = _inputs(model, n=4)
    y = np.array([0, 1, 2, 3])
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    grads = tape.gradient(loss, model.trainable_variables)
    assert logits.shape == (4, 4)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_wide_resnet_34_10_default():
    model = zoo.wide_resnet()  # the only full-size build in the suite
    assert model.name == "wrn_34_10" and model.output_shape == (None, 10)
    assert _trainable_count(model) == _wrn_trainable(34, 10, 10) == 46_160_474
    assert model.count_params() == 46_182_906
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 15
    widths = {layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)}
    assert widths == {16, 160, 320, 640}
    # The counts the docstring states for other depths, by the same (tested) hand formula.
    assert _wrn_trainable(28, 10, 10) == 36_479_194


def test_tiny_cnn_keras_file_round_trip(tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo.tiny_cnn(num_classes=5, name="tiny")
    path = tmp_path / "tiny.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.name == "tiny" and restored.count_params() == model.count_params()
    x = _inputs(model, n=3, seed=2)
    np.testing.assert_allclose(
        np.asarray(restored(x, training=False)), np.asarray(model(x, training=False)), rtol=1e-6
    )


def test_torch_init_draws_pytorchs_default_bounds():
    model = zoo.torch_init(zoo.tiny_cnn(), seed=0)
    for layer in model.layers:
        if not hasattr(layer, "kernel"):
            continue
        bound = 1.0 / np.sqrt(np.prod(layer.kernel.shape[:-1]))
        for values in (layer.kernel.numpy(), layer.bias.numpy()):
            assert np.abs(values).max() <= bound
            # Uniform on the interval: the largest draws come close to the bound.
            assert np.abs(values).max() > 0.8 * bound
        assert np.abs(layer.bias.numpy()).max() > 0  # Keras would leave zeros
    again = zoo.torch_init(zoo.tiny_cnn(), seed=0)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_torch_init_keeps_explicit_initialisers():
    model = zoo.wide_resnet(depth=10, widen_factor=1)
    convs = [v.numpy().copy() for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D) for v in layer.weights]
    zoo.torch_init(model, seed=1)
    after = [v.numpy() for layer in model.layers
             if isinstance(layer, keras.layers.Conv2D) for v in layer.weights]
    for a, b in zip(convs, after):
        np.testing.assert_array_equal(a, b)
