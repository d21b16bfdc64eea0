"""Finite-difference check of the bilevel hypergradient (float64), every evaluation mode."""

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


def meta_loss_and_hypergradient(classifier, weight_net, x, y, x_meta, y_meta, inner_lr,
                                mode="reverse", split_terms=True):
    """The bilevel meta loss (mean CE on the meta batch plus 0.5 x mean CE on the training
    batch, at the look-ahead values) and its hypergradient, by ``mode``."""
    theta = [tf.convert_to_tensor(v) for v in classifier.trainable_variables]
    non_trainable = [tf.convert_to_tensor(v) for v in classifier.non_trainable_variables]

    def losses_at(values):
        logits, _ = classifier.stateless_call(values, non_trainable, x, training=True)
        return [losses.cross_entropy(y, logits)]

    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(theta)
        per_sample = losses_at(theta)[0]
    logits, _ = classifier.stateless_call(theta, non_trainable, x, training=True)
    features = tf.stop_gradient(margins.multiclass_margin(y, logits))

    def loss_targets():
        coefficients = weighting.loss_coefficients(weight_net(features), "mean")
        return [per_sample], [coefficients]

    def term(inputs, labels, factor):
        def loss(theta_prime):
            meta_logits, _ = classifier.stateless_call(theta_prime, non_trainable, inputs,
                                                       training=True)
            return factor * tf.reduce_mean(losses.cross_entropy(labels, meta_logits))
        return loss

    terms = [term(x_meta, y_meta, 1.0), term(x, y, 0.5)]
    meta_loss_fn = terms if split_terms else (lambda values: terms[0](values) + terms[1](values))
    return bilevel.virtual_step(tape, theta, loss_targets, inner_lr, meta_loss_fn,
                                weight_net.trainable_variables, mode=mode,
                                losses_at=losses_at if mode == "forward" else None)


def make_problem(batch_norm, seed=3):
    keras.utils.set_random_seed(seed)
    classifier = make_classifier(batch_norm)
    weight_net = WeightNetwork(hidden_units=(4,), activation="tanh", dtype="float64")
    weight_net.build((None, 3))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 5))
    y = rng.integers(0, 3, 16)
    x_meta = rng.normal(size=(12, 5))
    y_meta = rng.integers(0, 3, 12)
    return classifier, weight_net, (x, y, x_meta, y_meta)


@pytest.mark.parametrize("mode", bilevel.HYPERGRADIENT_MODES)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_hypergradient_matches_finite_differences(float64, batch_norm, mode):
    classifier, weight_net, (x, y, x_meta, y_meta) = make_problem(batch_norm)
    inner_lr = 0.5

    meta_loss, hypergradients = meta_loss_and_hypergradient(
        classifier, weight_net, x, y, x_meta, y_meta, inner_lr, mode=mode)
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


@pytest.mark.parametrize("batch_norm", [False, True])
def test_evaluation_orders_agree(float64, batch_norm):
    """One reverse pass of the summed meta loss (the pre-split evaluation), the terms
    differentiated one after the other, the low-memory double backward and forward mode
    give the same hypergradient."""
    classifier, weight_net, (x, y, x_meta, y_meta) = make_problem(batch_norm, seed=5)
    results = [meta_loss_and_hypergradient(classifier, weight_net, x, y, x_meta, y_meta, 0.3,
                                           mode=mode, split_terms=split)
               for mode, split in (("reverse", False), ("reverse", True), ("low_memory", True),
                                   ("forward", True))]
    reference_loss, reference = results[0]
    scale = max(np.abs(g.numpy()).max() for g in reference)
    for meta_loss, gradients in results[1:]:
        np.testing.assert_allclose(float(meta_loss), float(reference_loss), rtol=1e-12)
        for a, b in zip(gradients, reference):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-12 * scale)


@pytest.mark.parametrize("mode", ["reverse", "low_memory"])
def test_graph_mode_matches_eager(float64, mode):
    """Inside a tf.function (as in training) the sequenced terms give the eager value."""
    classifier, weight_net, (x, y, x_meta, y_meta) = make_problem(True, seed=6)
    eager = meta_loss_and_hypergradient(classifier, weight_net, x, y, x_meta, y_meta, 0.3,
                                        mode=mode)
    graph = tf.function(lambda: meta_loss_and_hypergradient(
        classifier, weight_net, x, y, x_meta, y_meta, 0.3, mode=mode))()
    np.testing.assert_allclose(float(graph[0]), float(eager[0]), rtol=1e-12)
    for a, b in zip(graph[1], eager[1]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-14)


def test_zero_inner_lr_gives_zero_hypergradient(float64):
    """With α = 0 the virtual classifier does not depend on the weights."""
    keras.utils.set_random_seed(4)
    classifier = make_classifier(False)
    weight_net = WeightNetwork(hidden_units=(4,), dtype="float64")
    weight_net.build((None, 3))
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(8, 5)), rng.integers(0, 3, 8)
    _, hypergradients = meta_loss_and_hypergradient(classifier, weight_net, x, y, x, y, 0.0)
    for gradient in hypergradients:
        assert gradient is None or np.abs(gradient.numpy()).max() == 0.0


@pytest.mark.parametrize("options", [
    {}, {"base": "trades"}, {"meta_source": "split", "meta_objective": "both"}])
def test_model_hypergradient_modes_agree(options):
    """MWATModel.hypergradient: "reverse", "low_memory" and "forward" agree."""
    from keras_mwat import MWATModel
    from tests.methods.helpers import deterministic_attack, make_cnn, recorded_step

    rng = np.random.default_rng(2)
    x = tf.constant(rng.uniform(0, 1, (24, 28, 28, 1)).astype("float32"))
    y = tf.constant(rng.integers(0, 10, 24).astype("int32"))
    if "meta_source" not in options:  # the paper's held-out meta set, attacked at θ̃
        options = {**options, "meta_batch_size": 8, "meta_data": (
            rng.uniform(0, 1, (12, 28, 28, 1)).astype("float32"), rng.integers(0, 10, 12))}
    results = []
    for mode in ("reverse", "low_memory", "forward"):
        model = MWATModel(make_cnn(batch_norm=True), attack=deterministic_attack(), seed=0,
                          hypergradient_mode=mode, **options)
        model.compile(optimizer=keras.optimizers.SGD(0.1))
        step = recorded_step(model, x, y)
        meta_loss, gradients = model.hypergradient(step, model.weight_features(step))
        results.append((float(meta_loss), np.concatenate([g.numpy().ravel()
                                                           for g in gradients])))
    (loss_a, flat_a), *others = results
    assert np.abs(flat_a).max() > 0
    for loss_b, flat_b in others:
        assert loss_a == pytest.approx(loss_b, rel=1e-6)
        np.testing.assert_allclose(flat_b, flat_a, rtol=0, atol=1e-4 * np.abs(flat_a).max())


def test_unknown_hypergradient_mode_is_refused(float64):
    from keras_mwat import MWATModel
    from tests.methods.helpers import deterministic_attack, make_cnn

    with pytest.raises(ValueError, match="hypergradient_mode.*sideways"):
        MWATModel(make_cnn(), attack=deterministic_attack(), seed=0,
                  hypergradient_mode="sideways")
    classifier, weight_net, (x, y, x_meta, y_meta) = make_problem(False)
    with pytest.raises(ValueError, match="mode.*sideways"):
        meta_loss_and_hypergradient(classifier, weight_net, x, y, x_meta, y_meta, 0.3,
                                    mode="sideways")
