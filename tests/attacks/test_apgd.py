"""Tests of APGD (APGD-CE, APGD-DLR, APGD-T) and CW-PGD: oracles, strength, invariants."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mwat import attacks
from keras_mwat.attacks import APGD, CWPGD, PGD, apgd
from keras_mwat.attacks.apgd import checkpoint_schedule


def multiclass_linear(seed=0, num_classes=4, d=6):
    """A linear logits model ``W x + b`` on flat inputs, with its weights."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, num_classes)).astype("float32")
    b = rng.normal(scale=0.1, size=num_classes).astype("float32")
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(num_classes)])
    model.layers[0].set_weights([w, b])
    return model, w, b


def worst_case_margin(w, b, x, y, eps, norm):
    """Closed-form min over the eps-ball of ``z_y - max_{j != y} z_j`` (no box)."""
    margins = []
    for j in range(w.shape[1]):
        diff = w[:, y].T - w[:, j][None, :]  # (n, d): gradient of z_y - z_j
        dual = np.abs(diff).sum(1) if norm == "linf" else np.linalg.norm(diff, axis=1)
        value = np.einsum("nd,nd->n", x, diff) + b[y] - b[j] - eps * dual
        margins.append(np.where(y == j, np.inf, value))
    return np.min(margins, axis=0)


def predictions(model, x):
    return np.argmax(model(tf.constant(x), training=False).numpy(), axis=1)


# ----------------------------------------------------------------------- known answers


def test_checkpoint_schedule_matches_autoattack():
    assert checkpoint_schedule(100) == (22, 3, 6)
    first, decrease, minimum = checkpoint_schedule(100)
    checks, interval, at = [], first, 0
    while at + interval <= 100:
        at += interval
        checks.append(at)
        interval = max(interval - decrease, minimum)
    assert checks == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoint_schedule(10) == (2, 1, 1)


# ------------------------------------------------------------------ closed-form oracle


def linear_case(norm, seed=1):
    model, w, b = multiclass_linear()
    x = np.random.default_rng(seed).uniform(-1, 1, size=(400, 6)).astype("float32")
    y = predictions(model, x)  # every point starts correctly classified
    eps = 0.15 if norm == "linf" else 0.3
    worst = worst_case_margin(w, b, x, y, eps, norm)
    clear = np.abs(worst) > 0.05  # leave out points within numerical reach of the boundary
    assert (worst[clear] < 0).sum() > 20 and (worst[clear] > 0).sum() > 20
    return model, x, y, eps, worst, clear


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_t_fools_exactly_the_linearly_breakable_points(norm):
    """Linear model: a point can be fooled iff its closed-form worst margin is < 0.

    APGD-T over all K - 1 targets minimises each pairwise margin ``z_y - z_t``, which is
    linear, so it must find every breakable point.
    """
    model, x, y, eps, worst, clear = linear_case(norm)
    attack = APGD(eps=eps, norm=norm, num_steps=50, loss="dlr", targeted=True,
                  num_target_classes=3, value_range=None, seed=0)
    fooled = predictions(model, attack(model, x, y).numpy()) != y
    np.testing.assert_array_equal(fooled[clear], (worst < 0)[clear])


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_untargeted_apgd_finds_most_linearly_breakable_points(norm, loss):
    """Untargeted losses are not the pairwise margin, so only high recall is guaranteed."""
    model, x, y, eps, worst, clear = linear_case(norm)
    attack = APGD(eps=eps, norm=norm, num_steps=50, loss=loss, value_range=None, seed=0)
    fooled = predictions(model, attack(model, x, y).numpy()) != y
    breakable = worst < 0
    assert not np.any(fooled & ~breakable & clear)
    assert fooled[clear & breakable].mean() >= 0.9


def test_apgd_ce_reaches_the_binary_linear_maximiser():
    """Two classes, CE: the maximiser is the vertex eps * sign(w_1 - w_0) for every point."""
    model, w, _ = multiclass_linear(seed=3, num_classes=2)
    x = np.random.default_rng(3).uniform(-1, 1, size=(20, 6)).astype("float32")
    y = np.zeros(20, "int64")
    x_adv = APGD(eps=0.1, num_steps=20, value_range=None, seed=0)(model, x, y).numpy()
    expected = x + 0.1 * np.sign(w[:, 1] - w[:, 0])
    # Points fooled early stop at their first misclassified iterate; the others must be at
    # the vertex (the best point of the run).
    still_correct = predictions(model, x_adv) == 0
    np.testing.assert_allclose(x_adv[still_correct], expected[still_correct], atol=1e-5)
    assert still_correct.sum() >= 1


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_cwpgd_fools_exactly_the_linearly_breakable_points(norm):
    model, w, b = multiclass_linear(seed=5)
    x = np.random.default_rng(5).uniform(-1, 1, size=(300, 6)).astype("float32")
    y = predictions(model, x)
    eps = 0.15 if norm == "linf" else 0.3
    worst = worst_case_margin(w, b, x, y, eps, norm)
    clear = np.abs(worst) > 0.05
    attack = CWPGD(eps=eps, step_size=eps / 8, num_steps=40, norm=norm, num_restarts=3,
                   value_range=None, seed=0)
    fooled = predictions(model, attack(model, x, y).numpy()) != y
    np.testing.assert_array_equal(fooled[clear], (worst < 0)[clear])


# ------------------------------------------------------------------ strength, feasibility


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.5)])
def test_apgd_at_least_as_strong_as_pgd_of_the_same_budget(clean_cnn, norm, eps):
    model, (x, y) = clean_cnn
    x, y = x[:200], y[:200]
    pgd_attack = PGD(eps=eps, step_size=2.5 * eps / 100, num_steps=100, norm=norm, seed=0)
    apgd_attack = APGD(eps=eps, num_steps=100, norm=norm, seed=0)
    pgd_robust = predictions(model, pgd_attack(model, x, y).numpy()) == y
    apgd_robust = predictions(model, apgd_attack(model, x, y).numpy()) == y
    assert 0.1 < pgd_robust.mean() < 0.95  # a setting where attacks can differ
    assert apgd_robust.mean() <= pgd_robust.mean()


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_apgd_stays_in_the_ball_and_the_box(clean_cnn, norm, targeted):
    model, (x, y) = clean_cnn
    x, y = x[:32], y[:32]
    eps = 0.1 if norm == "linf" else 1.0
    attack = APGD(eps=eps, norm=norm, num_steps=10, loss="dlr" if targeted else "ce",
                  targeted=targeted, num_target_classes=2, num_restarts=2, seed=0)
    x_adv = attack(model, x, y).numpy()
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-5) + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype


def test_apgd_is_deterministic_for_an_int_seed(clean_cnn):
    model, (x, y) = clean_cnn
    x, y = x[:16], y[:16]
    first = APGD(eps=0.1, num_steps=10, seed=3)(model, x, y).numpy()
    again = APGD(eps=0.1, num_steps=10, seed=3)(model, x, y).numpy()
    other = APGD(eps=0.1, num_steps=10, seed=4)(model, x, y).numpy()
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_apgd_leaves_misclassified_points_alone():
    model, _, _ = multiclass_linear(seed=7)
    x = np.random.default_rng(7).uniform(-1, 1, size=(10, 6)).astype("float32")
    wrong = (predictions(model, x) + 1) % 4
    x_adv = apgd(lambda z: model(z, training=False), x, wrong, eps=0.1, num_steps=5,
                 value_range=None, seed=0).numpy()
    np.testing.assert_array_equal(x_adv, x)


def test_apgd_graph_and_eager_agree(clean_cnn):
    model, (x, y) = clean_cnn
    x, y = tf.constant(x[:8]), tf.constant(y[:8])
    kwargs = dict(eps=0.1, num_steps=8, loss="dlr", targeted=True, num_target_classes=2,
                  seed=1)
    eager = apgd(lambda z: model(z, training=False), x, y, **kwargs)
    graph = tf.function(lambda a, b: apgd(lambda z: model(z, training=False), a, b, **kwargs))(
        x, y
    )
    np.testing.assert_allclose(eager.numpy(), graph.numpy(), atol=1e-6)


# ---------------------------------------------------------------------- API, validation


def test_apgd_and_cwpgd_serialise():
    for attack in (
        APGD(eps=0.2, norm="l2", num_steps=30, loss="dlr", targeted=True, seed=1),
        CWPGD(eps=0.1, step_size=0.02, num_steps=7, num_restarts=2, seed=2),
    ):
        config = keras.saving.serialize_keras_object(attack)
        restored = attacks.get(json.loads(json.dumps(config)))
        assert type(restored) is type(attack)
        assert restored.get_config() == attack.get_config()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"eps": -0.1}, "eps"),
        ({"loss": "hinge"}, "loss"),
        ({"rho": 1.5}, "rho"),
        ({"num_steps": 0}, "num_steps"),
        ({"num_target_classes": 0}, "num_target_classes"),
        ({"targeted": "yes"}, "targeted"),
    ],
)
def test_apgd_rejects_bad_arguments(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        APGD(**kwargs)


def test_apgd_dlr_needs_enough_classes():
    model, _, _ = multiclass_linear(num_classes=2)
    x = np.zeros((2, 6), "float32")
    with pytest.raises(ValueError, match="dlr"):
        APGD(eps=0.1, loss="dlr", value_range=None)(model, x, np.zeros(2, "int64"))


def test_apgd_rejects_kappa():
    model, _, _ = multiclass_linear()
    with pytest.raises(ValueError, match="records no trace"):
        APGD(eps=0.1).perturb_with_trace(model, tf.zeros((2, 6)), tf.zeros(2, tf.int64))
