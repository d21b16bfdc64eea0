"""Tests of FAB and FAB-T: exact projections, minimal-norm oracles, feasibility, seeds, API."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.optimize import linprog

from keras_mwat import attacks
from keras_mwat.attacks import FAB, fab, hyperplane_projection


def affine(seed=0, num_classes=4, d=12):
    """A ``keras.layers.Dense`` logits model ``x W + b`` on flat inputs, with its weights."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(d, num_classes)).astype("float32")
    b = rng.normal(scale=0.1, size=num_classes).astype("float32")
    model = keras.Sequential([keras.Input((d,)), keras.layers.Dense(num_classes)])
    model.layers[0].set_weights([w, b])
    return model, w, b


def minimal_norm(w, b, x, y, norm):
    """Closed-form smallest perturbation to the decision boundary of an affine classifier
    (no box): ``min_{j != y} margin_j / ||w_y - w_j||_*``."""
    distances = []
    for j in range(w.shape[1]):
        diff = w[:, y].T - w[:, j][None, :]
        dual = np.abs(diff).sum(1) if norm == "linf" else np.linalg.norm(diff, axis=1)
        margin = np.einsum("nd,nd->n", x, diff) + b[y] - b[j]
        distances.append(np.where(y == j, np.inf, margin / np.where(y == j, 1.0, dual)))
    return np.min(distances, axis=0)


def size(delta, norm):
    delta = np.asarray(delta, np.float64).reshape(len(delta), -1)
    return np.abs(delta).max(1) if norm == "linf" else np.linalg.norm(delta, axis=1)


def predictions(model, x):
    return np.argmax(model(tf.constant(x), training=False).numpy(), axis=1)


def affine_case(num_classes, seed=1, n=120, d=12):
    model, w, b = affine(seed=seed, num_classes=num_classes, d=d)
    x = np.random.default_rng(seed).uniform(-1, 1, size=(n, d)).astype("float32")
    y = predictions(model, x)
    return model, w, b, x, y


# ------------------------------------------------------------------------ projections


def l2_projection_by_bisection(point, w, c, low, high):
    """``delta = clip(lam * w, low - point, high - point)`` with ``<w, delta> = c``, ``lam``
    by bisection: the KKT solution of the box-constrained L2 projection."""
    lower, upper = low - point, high - point

    def value(lam):
        return w @ np.clip(lam * w, lower, upper)

    lo, hi = (0.0, 1.0) if c >= 0 else (-1.0, 0.0)
    while abs(value(hi if c >= 0 else lo)) < abs(c):
        if c >= 0:
            hi *= 2
        else:
            lo *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if value(mid) < c:
            lo = mid
        else:
            hi = mid
    return np.clip((lo + hi) / 2 * w, lower, upper)


def projection_case(seed, n=25, d=9):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, size=(n, d))
    w = rng.normal(size=(n, d)) * (rng.uniform(size=(n, d)) > 0.2)  # some zero weights
    # Right-hand sides inside the reachable range, of both signs.
    reach_up = np.where(w > 0, w * (1 - points), w * -points).sum(1)
    reach_down = np.where(w > 0, w * -points, w * (1 - points)).sum(1)
    share = rng.uniform(0.05, 0.95, size=n)
    c = np.where(rng.uniform(size=n) < 0.5, share * reach_up, share * reach_down)
    return points, w, c


def test_linf_projection_solves_the_linear_program():
    points, w, c = projection_case(0)
    delta = hyperplane_projection(
        tf.constant(points), tf.constant(w), tf.constant(c), "linf", (0.0, 1.0)
    ).numpy()
    np.testing.assert_allclose((w * delta).sum(1), c, atol=1e-9)
    assert (points + delta).min() >= -1e-12 and (points + delta).max() <= 1 + 1e-12
    d = w.shape[1]
    for i in range(len(points)):
        # Variables (delta, t): minimise t s.t. |delta_j| <= t, <w, delta> = c, box.
        cost = np.r_[np.zeros(d), 1.0]
        bounds_ub = np.block([[np.eye(d), -np.ones((d, 1))], [-np.eye(d), -np.ones((d, 1))]])
        result = linprog(
            cost, A_ub=bounds_ub, b_ub=np.zeros(2 * d), A_eq=np.r_[w[i], 0.0][None],
            b_eq=[c[i]], bounds=[(-p, 1 - p) for p in points[i]] + [(0, None)],
        )
        assert result.status == 0
        assert np.abs(delta[i]).max() == pytest.approx(result.fun, rel=1e-7, abs=1e-10)


def test_l2_projection_is_the_kkt_point():
    points, w, c = projection_case(1)
    delta = hyperplane_projection(
        tf.constant(points), tf.constant(w), tf.constant(c), "l2", (0.0, 1.0)
    ).numpy()
    for i in range(len(points)):
        expected = l2_projection_by_bisection(points[i], w[i], c[i], 0.0, 1.0)
        np.testing.assert_allclose(delta[i], expected, atol=1e-8)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_projection_without_box_is_closed_form_and_infeasible_goes_to_the_vertex(norm):
    w = tf.constant([[1.0, -2.0, 0.0]], tf.float64)
    c = tf.constant([-0.6], tf.float64)
    point = tf.constant([[0.5, 0.5, 0.5]], tf.float64)
    delta = hyperplane_projection(point, w, c, norm).numpy()
    if norm == "linf":
        np.testing.assert_allclose(delta, [[-0.2, 0.2, 0.0]])  # c / ||w||_1 along sign(c w)
    else:
        np.testing.assert_allclose(delta, [[-0.12, 0.24, 0.0]])  # c w / ||w||_2^2
    # <w, delta> = -10 cannot be reached in [0, 1]^3: the furthest box point is returned.
    far = hyperplane_projection(point, w, tf.constant([-10.0], tf.float64), norm, (0.0, 1.0))
    np.testing.assert_allclose(far.numpy(), [[-0.5, 0.5, 0.0]])
    # A point on the hyperplane does not move.
    np.testing.assert_array_equal(
        hyperplane_projection(point, w, tf.zeros([1], tf.float64), norm, (0.0, 1.0)), 0.0
    )


# ------------------------------------------------------------- minimal-norm oracles


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("num_classes", [2, 5])
@pytest.mark.parametrize("value_range", [None, (-10.0, 10.0)])
def test_fab_finds_the_minimal_perturbation_of_an_affine_classifier(norm, num_classes,
                                                                     value_range):
    model, w, b, x, y = affine_case(num_classes)
    smallest = minimal_norm(w, b, x, y, norm)
    x_adv, norms = fab(lambda z: model(z, training=False), x, y, eps=100.0, norm=norm,
                       value_range=value_range, return_norms=True)
    x_adv = x_adv.numpy()
    assert np.all(predictions(model, x_adv) != y)
    found = size(x_adv - x, norm)
    np.testing.assert_allclose(norms.numpy(), found, rtol=1e-5)
    ratio = found / smallest
    assert ratio.min() >= 1 - 1e-4  # nothing beats the closed form ...
    assert ratio.max() <= 1.01  # ... and FAB is within 1% of it


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_in_an_active_box_matches_the_exact_projection(norm):
    """Two classes, box [0, 1]: the smallest adversarial perturbation is the box-constrained
    projection onto the decision hyperplane (checked against the LP / KKT solutions above).

    Clipping the extrapolated steps to the box shortens their overshoot on the clipped
    coordinates, so FAB settles a little further from the optimum than without a box (about
    0.85% here, against 0.5%); 2% is the bound.
    """
    model, w, b = affine(seed=2, num_classes=2, d=8)
    x = np.random.default_rng(2).uniform(0, 1, size=(60, 8)).astype("float32")
    y = predictions(model, x)
    normal = (w[:, 1] - w[:, 0])[None, :] * np.where(y == 0, 1.0, -1.0)[:, None]
    offset = (b[1] - b[0]) * np.where(y == 0, 1.0, -1.0)
    c = -np.einsum("nd,nd->n", x, normal) - offset  # <normal, delta> = c reaches the boundary
    exact = hyperplane_projection(tf.constant(x, tf.float64), tf.constant(normal),
                                  tf.constant(c), norm, (0.0, 1.0)).numpy()
    reachable = np.abs(((x + exact) @ (w[:, 1] - w[:, 0])) + b[1] - b[0]) < 1e-6
    assert reachable.sum() >= 20
    x_adv, norms = fab(lambda z: model(z, training=False), x, y, eps=100.0, norm=norm,
                       return_norms=True)
    ratio = norms.numpy()[reachable] / size(exact, norm)[reachable]
    assert ratio.min() >= 1 - 1e-4 and ratio.max() <= 1.02
    assert x_adv.numpy().min() >= 0.0 and x_adv.numpy().max() <= 1.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_fab_fools_exactly_the_points_within_eps(norm, targeted):
    """With ``eps`` between the points' minimal norms, exactly those whose minimum is
    (clearly) below ``eps`` are fooled; the others come back unchanged."""
    model, w, b, x, y = affine_case(5, seed=3)
    smallest = minimal_norm(w, b, x, y, norm)
    eps = float(np.median(smallest))
    clear = np.abs(smallest / eps - 1) > 0.02
    attack = FAB(eps=eps, norm=norm, targeted=targeted, num_target_classes=4,
                 value_range=None, seed=0)
    x_adv = attack(model, x, y).numpy()
    fooled = predictions(model, x_adv) != y
    np.testing.assert_array_equal(fooled[clear], (smallest < eps)[clear])
    np.testing.assert_array_equal(x_adv[~fooled], x[~fooled])
    assert size(x_adv - x, norm).max() <= eps * (1 + 1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_below_the_minimum_fools_nothing(norm):
    model, w, b, x, y = affine_case(3, seed=4)
    eps = 0.95 * float(minimal_norm(w, b, x, y, norm).min())
    x_adv = FAB(eps=eps, norm=norm, num_restarts=3, value_range=None, seed=0)(model, x, y)
    np.testing.assert_array_equal(predictions(model, x_adv.numpy()), y)
    assert size(x_adv.numpy() - x, norm).max() <= eps * (1 + 1e-6)


# ---------------------------------------------------------------- feasibility, seeds


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("targeted", [False, True])
def test_fab_stays_in_the_ball_and_the_box_and_only_returns_adversarial_points(
    clean_cnn, norm, targeted
):
    model, (x, y) = clean_cnn
    x, y = x[:24], y[:24]
    eps = 0.1 if norm == "linf" else 1.0
    attack = FAB(eps=eps, norm=norm, num_steps=10, num_restarts=2, targeted=targeted,
                 num_target_classes=2, seed=0)
    x_adv = attack(model, x, y).numpy()
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert size(x_adv - x, norm).max() <= eps * (1 + 1e-5) + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    moved = np.any(x_adv != x, axis=(1, 2, 3))
    assert moved.sum() >= 1  # the attack does something at this radius ...
    assert np.all(predictions(model, x_adv[moved]) != y[moved])  # ... and only successes


def test_fab_is_reproducible_for_an_int_seed_and_restarts_only_add_successes(clean_cnn):
    model, (x, y) = clean_cnn
    x, y = x[:32], y[:32]
    # Two steps per run: too few to converge, so the random restarts (at distance eps / 2)
    # find points the first run (from x) did not, and where they land depends on the seed.
    kwargs = dict(eps=2.0, norm="l2", num_steps=2, targeted=True, num_target_classes=1)
    first = FAB(num_restarts=3, seed=3, **kwargs)(model, x, y).numpy()
    again = FAB(num_restarts=3, seed=3, **kwargs)(model, x, y).numpy()
    np.testing.assert_array_equal(again, first)
    other = FAB(num_restarts=3, seed=4, **kwargs)(model, x, y).numpy()
    assert not np.array_equal(first, other)
    single = FAB(num_restarts=1, seed=3, **kwargs)(model, x, y).numpy()
    fooled_single = predictions(model, single) != y
    fooled_three = predictions(model, first) != y
    assert np.all(fooled_three[fooled_single])  # the first run is the same, then only more
    assert fooled_three.sum() > fooled_single.sum()
    np.testing.assert_array_equal(first[fooled_single], single[fooled_single])


def test_fab_graph_and_eager_agree(clean_cnn):
    model, (x, y) = clean_cnn
    x, y = tf.constant(x[:8]), tf.constant(y[:8])
    kwargs = dict(eps=0.1, num_steps=6, num_restarts=2, targeted=True, num_target_classes=2,
                  seed=1)
    eager = fab(lambda z: model(z, training=False), x, y, **kwargs)
    graph = tf.function(lambda a, b: fab(lambda z: model(z, training=False), a, b, **kwargs))(
        x, y
    )
    np.testing.assert_allclose(eager.numpy(), graph.numpy(), atol=1e-6)


def test_fab_leaves_misclassified_points_alone_and_eps_zero_changes_nothing():
    model, _, _, x, y = affine_case(4, seed=7, n=10)
    wrong = (y + 1) % 4
    out = fab(lambda z: model(z, training=False), x, wrong, eps=0.5, value_range=None)
    np.testing.assert_array_equal(out.numpy(), x)
    np.testing.assert_array_equal(FAB(eps=0.0, value_range=None)(model, x, y).numpy(), x)


# ---------------------------------------------------------------------- API, validation


def test_fab_serialises_and_is_registered():
    attack = FAB(eps=0.2, norm="l2", num_steps=30, num_restarts=2, targeted=True,
                 num_target_classes=5, alpha_max=0.05, eta=1.1, beta=0.8, seed=1)
    config = keras.saving.serialize_keras_object(attack)
    restored = attacks.get(json.loads(json.dumps(config)))
    assert type(restored) is FAB
    assert restored.get_config() == attack.get_config()
    assert "FAB" in attacks.__all__


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"eps": -1.0}, "eps"),
        ({"norm": "l1"}, "norm"),
        ({"num_steps": 0}, "num_steps"),
        ({"num_restarts": 0}, "num_restarts"),
        ({"targeted": "yes"}, "targeted"),
        ({"num_target_classes": 0}, "num_target_classes"),
        ({"alpha_max": 1.5}, "alpha_max"),
        ({"eta": 0.9}, "eta"),
        ({"beta": 0.0}, "beta"),
        ({"beta": 1.5}, "beta"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        FAB(**kwargs)


def test_fab_rejects_a_loss_and_kappa():
    model, _, _, x, y = affine_case(3, n=4)
    with pytest.raises(ValueError, match="loss_fn"):
        FAB().perturb(model, tf.constant(x), tf.constant(y), loss_fn=lambda a, b: b[:, 0])
    with pytest.raises(ValueError, match="records no trace"):
        FAB().perturb_with_trace(model, tf.constant(x), tf.constant(y))
