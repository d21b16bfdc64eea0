"""Finite-difference check of the bilevel hypergradient (float64)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mwat import WeightNetwork, losses, margins, weighting
from keras_mwat.methods import bilevel


@pytest.fixture
def float64():
    previous, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(previous)
    keras.config.set_dtype_policy(policy)


def make_classifier(batch_norm: bool):
    layers = [keras.Input((5,)), keras.layers.Dense(6, activation="tanh")]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    layers.append(keras.layers.Dense(3))
    return keras.Sequential(layers)


def meta_loss_and_hypergradient(classifier, weight_net, x, y, x_meta, y_meta, inner_lr):
    theta = [tf.convert_to_tensor(v) for v in classifier.trainable_variables]
    non_trainable = [tf.convert_to_tensor(v) for v in classifier.non_trainable_variables]
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(theta)
        logits, _ = classifier.stateless_call(theta, non_trainable, x, training=True)
        per_sample = losses.cross_entropy(y, logits)
    features = tf.stop_gradient(margins.multiclass_margin(y, logits))

    def loss_targets():
        coefficients = weighting.loss_coefficients(weight_net(features), "mean")
        return [per_sample], [coefficients]

    def meta_loss_fn(theta_prime):
        meta_logits, _ = classifier.stateless_call(theta_prime, non_trainable, x_meta,
                                                   training=True)
        return tf.reduce_mean(losses.cross_entropy(y_meta, meta_logits))

    return bilevel.virtual_step(tape, theta, loss_targets, inner_lr, meta_loss_fn,
                                weight_net.trainable_variables)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_hypergradient_matches_finite_differences(float64, batch_norm):
    keras.utils.set_random_seed(3)
    classifier = make_classifier(batch_norm)
    weight_net = WeightNetwork(hidden_units=(4,), activation="tanh", dtype="float64")
    weight_net.build((None, 6))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5))
    y = rng.integers(0, 3, 16)
    x_meta = rng.normal(size=(12, 5))
    y_meta = rng.integers(0, 3, 12)
    inner_lr = 0.5

    meta_loss, hypergradients = meta_loss_and_hypergradient(
        classifier, weight_net, x, y, x_meta, y_meta, inner_lr)
    assert meta_loss.dtype == tf.float64
    flat = np.concatenate([g.numpy().ravel() for g in hypergradients])
    assert np.all(np.isfinite(flat)) and np.abs(flat).max() > 0

    # Check the entries with the largest hypergradients in every variable.
    checked = 0
    h = 1e-6
    for variable, gradient in zip(weight_net.trainable_variables, hypergradients):
        gradient = gradient.numpy()
        for index in np.argsort(-np.abs(gradient.ravel()))[:3]:
            original = variable.numpy()
            values = []
            for sign in (1.0, -1.0):
                perturbed = original.copy().ravel()
                perturbed[index] += sign * h
                variable.assign(perturbed.reshape(original.shape))
                values.append(float(meta_loss_and_hypergradient(
                    classifier, weight_net, x, y, x_meta, y_meta, inner_lr)[0]))
            variable.assign(original)
            finite_difference = (values[0] - values[1]) / (2 * h)
            analytic = gradient.ravel()[index]
            relative = abs(finite_difference - analytic) / max(abs(analytic), 1e-8)
            assert relative <= 1e-4, (variable.path, index, analytic, finite_difference)
            checked += 1
    assert checked >= 6


def test_zero_inner_lr_gives_zero_hypergradient(float64):
    """With α = 0 the virtual classifier does not depend on the weights."""
    keras.utils.set_random_seed(4)
    classifier = make_classifier(False)
    weight_net = WeightNetwork(hidden_units=(4,), dtype="float64")
    weight_net.build((None, 6))
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    _, hypergradients = meta_loss_and_hypergradient(classifier, weight_net, x, y, x, y, 0.0)
    for gradient in hypergradients:
        assert gradient is None or np.abs(gradient.numpy()).max() == 0.0
