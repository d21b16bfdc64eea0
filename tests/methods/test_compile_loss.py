"""compile(loss=...): Keras Loss objects work, the rest is refused up front; val_loss is the
method's own objective (uniform weights)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_mwat as km
from keras_mwat.methods.base import per_sample_loss
from tests.methods.helpers import clone, deterministic_attack, make_cnn, weights_of

SCCE = keras.losses.SparseCategoricalCrossentropy


def test_keras_loss_gives_per_sample_cross_entropy():
    fn = per_sample_loss(SCCE(from_logits=True), 10)
    values = fn(tf.constant([3, 1]), tf.zeros((2, 10)))
    np.testing.assert_allclose(values.numpy(), [math.log(10)] * 2, rtol=1e-6)
    logits = tf.constant(np.random.default_rng(0).normal(size=(5, 10)), tf.float32)
    y = tf.constant([0, 1, 2, 3, 9])
    np.testing.assert_allclose(fn(y, logits).numpy(), km.losses.cross_entropy(y, logits).numpy(),
                               rtol=1e-6)


@pytest.mark.parametrize("loss, error, match", [
    ("sparse_categorical_crossentropy", ValueError,
     r"cannot be a string.*SparseCategoricalCrossentropy\(from_logits=True\)"),
    (SCCE(), ValueError, r"from_logits=False.*SparseCategoricalCrossentropy\(from_logits=True\)"),
    (lambda y, logits: tf.reduce_mean(km.losses.cross_entropy(y, logits)), ValueError,
     r"one loss per sample, shape \(n,\), but returned shape \(\)"),
    (keras.losses.CategoricalCrossentropy(from_logits=True), ValueError,
     r"failed on integer labels of shape \(2,\)"),
    (3, TypeError, r"must be a callable .* got 3"),
])
def test_unusable_losses_are_refused_in_compile(loss, error, match):
    model = km.PGDATModel(make_cnn(), attack=deterministic_attack(), seed=0)
    with pytest.raises(error, match=match):
        model.compile(optimizer="sgd", loss=loss)


def test_keras_loss_trains_like_the_default(tiny_data):
    base = make_cnn()
    x, y = tiny_data.x_train[:32], tiny_data.y_train[:32]
    results = []
    for loss in (None, SCCE(from_logits=True)):
        model = km.PGDATModel(clone(base), attack=deterministic_attack(), seed=0)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=loss)
        model.train_on_batch(x, y)
        results.append(weights_of(model.classifier))
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _val_loss(model, x, y):
    model.compile(optimizer="sgd")
    return model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)


def test_val_loss_is_the_methods_own_objective(tiny_data):
    x, y = tiny_data.x_val[:32], tiny_data.y_val[:32]
    base = make_cnn()
    attack = km.attacks.PGD(eps=0.3, step_size=0.1, num_steps=3, seed=0)
    clean_ce = float(np.mean(km.losses.cross_entropy(y, base(x)).numpy()))
    pgd_at = _val_loss(km.PGDATModel(clone(base), attack=attack, seed=0), x, y)
    # TRADES with beta = 0: its objective is the clean cross-entropy alone.
    trades_0 = _val_loss(km.TRADESModel(clone(base), attack=attack, beta=0.0, seed=0), x, y)
    np.testing.assert_allclose(trades_0["loss"], clean_ce, rtol=1e-5)
    trades = _val_loss(km.TRADESModel(clone(base), attack=attack, beta=6.0, seed=0), x, y)
    assert trades["loss"] > clean_ce + 1e-4  # plus beta times a KL of the KL attack (> 0)
    assert trades["loss"] != pytest.approx(pgd_at["loss"])
    # The extra KL attack does not touch the evaluation's seed: robust accuracy unchanged.
    assert trades["robust_accuracy"] == pgd_at["robust_accuracy"]
    # A reweighting method on the CE objective: uniform weights, PGD-AT's number.
    wmmr = _val_loss(km.WMMRModel(clone(base), attack=attack, alpha=3.0, seed=0), x, y)
    assert wmmr["loss"] == pgd_at["loss"]
    assert pgd_at["loss"] > clean_ce
