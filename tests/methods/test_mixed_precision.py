"""Mixed precision (``mixed_float16``): every method trains; margins, weights and the
weight network stay float32; both optimizers scale their losses."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from tests.methods import distribute_script as setup
from tests.methods.helpers import deterministic_attack, meta_set, recorded_step

CONFIGS = ["mwat_batch", "mwat_split", "mwat_reverse", "mwat_trades", "mwn", "pgd_at", "trades", "mart",
           "mail", "gairat", "wmmr"]


@pytest.fixture
def mixed_precision():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    yield
    keras.mixed_precision.set_global_policy(previous)


@pytest.fixture(scope="module")
def data():
    x, y, x_meta, y_meta = setup.make_data()
    return x, y, setup.configurations(x_meta, y_meta)


def _max_change(before, after):
    return max(float(np.abs(np.asarray(a, float) - np.asarray(b, float)).max())
               for a, b in zip(before, after))


@pytest.mark.parametrize("name", CONFIGS)
def test_every_method_trains_in_mixed_precision(mixed_precision, data, name):
    x, y, table = data
    model_class, options = table[name]
    model = setup.build(model_class, options)
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.classifier.compute_dtype == "float16"
    assert all(v.dtype == "float32" for v in model.classifier.trainable_variables)
    before = model.classifier.get_weights()
    learned = hasattr(model, "weight_net")
    if learned:
        assert isinstance(model.meta_optimizer, keras.optimizers.LossScaleOptimizer)
        assert model.weight_net.compute_dtype == "float32"
        net_before = model.weight_net.get_weights()

    logs = model.fit(x, y, batch_size=setup.GLOBAL_BATCH, epochs=1, shuffle=False,
                     verbose=0).history
    assert np.isfinite(logs["loss"][-1]) and logs["loss"][-1] > 0
    after = model.classifier.get_weights()
    assert all(np.all(np.isfinite(w)) for w in after)
    assert _max_change(before, after) > 1e-4
    if learned:
        net_after = model.weight_net.get_weights()
        assert all(np.all(np.isfinite(w)) for w in net_after)
        assert _max_change(net_before, net_after) > 1e-4  # meta steps were not all skipped
        assert np.isfinite(logs["meta_loss"][-1]) and logs["meta_loss"][-1] > 0

    inspected = model.inspect_weights(x[:16], y[:16])
    for key in ("margin", "weight"):
        assert inspected[key].dtype == np.float32, key
        assert np.all(np.isfinite(inspected[key])), key


def _hypergradient(policy, x, y, mode):
    """MWAT's hypergradient (unscaled) on one batch under ``policy``."""
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    classifier = km.zoo.small_cnn(width=4)
    # "both": two meta-loss terms, each scaled (the harder case for loss scaling).
    model = km.MWATModel(meta_data=meta_set(), classifier=classifier, attack=deterministic_attack(), seed=0,
                         meta_objective="both", hypergradient_mode=mode)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    step = recorded_step(model, x, y)
    features = model.weight_features(step)
    assert features.dtype == tf.float32
    assert model.weight_net(features).dtype == tf.float32
    meta_loss, gradients = model.hypergradient(step, features)
    assert meta_loss.dtype == tf.float32
    scale = float(model.meta_optimizer.scale_loss(tf.constant(1.0)))
    return np.concatenate([g.numpy().ravel() for g in gradients]) / scale


@pytest.mark.parametrize("mode", ["reverse", "low_memory"])
def test_weight_network_gradient_in_mixed_precision(mixed_precision, tiny_data, mode):
    """Finite, non-zero and close to the float32 hypergradient (without scaling the meta
    loss, float16 underflow makes it ~35% off; with it, ~9%)."""
    x = tf.constant(tiny_data.x_train[:32])
    y = tf.constant(tiny_data.y_train[:32].astype("int32"))
    mixed = _hypergradient("mixed_float16", x, y, mode)
    reference = _hypergradient("float32", x, y, mode)
    assert np.all(np.isfinite(mixed)) and np.abs(mixed).max() > 0
    cosine = mixed @ reference / (np.linalg.norm(mixed) * np.linalg.norm(reference))
    assert cosine > 0.99
    assert np.abs(mixed - reference).max() < 0.2 * np.abs(reference).max()


def test_automatic_loss_scaling_is_not_saved_in_the_config(mixed_precision):
    model = km.MWATModel(km.zoo.mlp(input_shape=(4,), num_classes=3, hidden_units=(8,)),
                         attack=km.attacks.FGSM(eps=0.1))
    assert isinstance(model.meta_optimizer, keras.optimizers.LossScaleOptimizer)
    model.compile(optimizer="sgd")  # the meta optimizer is in the compile config
    config = model.get_compile_config()["meta_optimizer"]
    assert config["class_name"] == "SGD"  # the paper's plain step, unwrapped
