"""Tests of the Square Attack: closed-form oracles, invariants, query budget, validation."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mwat import attacks, losses
from keras_mwat.attacks import primitives
from keras_mwat.attacks.square import (
    Square,
    meta_pseudo_gaussian,
    pseudo_gaussian,
    square,
    window_fraction,
)

# --------------------------------------------------------------------------- helpers


def linear_images(weights, bias, shape=(6, 6, 1)):
    """Logits ``W x + b`` of flattened images, as a Keras model; ``weights`` is (d, K)."""
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(weights.shape[1])]
    )
    model.layers[-1].set_weights([weights.astype("float32"), bias.astype("float32")])
    return model


def margins(model, x, y):
    """``z_y - max_{j != y} z_j`` (positive iff correctly classified)."""
    logits = model.predict(x, verbose=0).astype("float64")
    true = logits[np.arange(len(y)), y]
    logits[np.arange(len(y)), y] = -np.inf
    return true - logits.max(axis=1)


def worst_linf_margins(weights, bias, x, y, eps):
    """Closed form: ``min_j (w_y - w_j).x + b_y - b_j - eps * ||w_y - w_j||_1`` (no box)."""
    flat = x.reshape(len(x), -1).astype("float64")
    logits = flat @ weights + bias
    best = np.full(len(x), np.inf)
    for j in range(weights.shape[1]):
        diff = weights[:, y].T - weights[:, j]  # (n, d)
        value = logits[np.arange(len(x)), y] - logits[:, j] - eps * np.abs(diff).sum(axis=1)
        best = np.where(y == j, best, np.minimum(best, value))
    return best


def small_cnn(shape=(8, 8, 1), num_classes=3):
    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(num_classes),
        ]
    )


def inference(model):
    return lambda z: model(z, training=False)


def reference_rectangle(rows, cols):
    """The paper's pseudo-Gaussian bump, built as in its reference code (nested squares)."""
    delta = np.zeros([rows, cols])
    centre_r, centre_c = rows // 2 + 1, cols // 2 + 1
    corner = [centre_r - 1, centre_c - 1]
    for counter in range(max(centre_r, centre_c)):
        delta[
            max(corner[0], 0) : min(corner[0] + 2 * counter + 1, rows),
            max(corner[1], 0) : min(corner[1] + 2 * counter + 1, cols),
        ] += 1.0 / (counter + 1) ** 2
        corner[0] -= 1
        corner[1] -= 1
    return delta / np.sqrt(np.sum(delta**2))


# ---------------------------------------------------------------------- the pieces


@pytest.mark.parametrize(("rows", "cols"), [(1, 4), (2, 5), (3, 3), (3, 7), (6, 3), (14, 28)])
def test_pseudo_gaussian_matches_the_reference_construction(rows, cols):
    np.testing.assert_allclose(
        pseudo_gaussian(rows, cols).numpy(), reference_rectangle(rows, cols), atol=1e-6
    )


@pytest.mark.parametrize("side", [2, 3, 5, 8, 11])
def test_meta_pseudo_gaussian_is_two_opposite_halves_of_unit_norm(side):
    eta = meta_pseudo_gaussian(side, side).numpy()
    expected = np.concatenate(
        [reference_rectangle(side // 2, side), -reference_rectangle(side - side // 2, side)]
    )
    np.testing.assert_allclose(eta, expected / np.linalg.norm(expected), atol=1e-6)
    assert np.linalg.norm(eta) == pytest.approx(1.0, abs=1e-6)


def test_window_fraction_follows_the_rescaled_schedule():
    def p(i, n):
        return float(window_fraction(0.8, i, n))

    # 10 000 queries: the paper's breakpoints.
    assert [p(i, 10000) for i in (0, 10, 11, 50, 51, 200, 201)] == pytest.approx(
        [0.8, 0.8, 0.4, 0.4, 0.2, 0.2, 0.1]
    )
    assert p(9999, 10000) == pytest.approx(0.8 / 512)
    # Rescaled: with 1000 queries iteration i counts as 10 * i.
    assert [p(i, 1000) for i in (1, 2, 5, 6, 801)] == pytest.approx(
        [0.8, 0.4, 0.4, 0.2, 0.8 / 512]
    )


def test_starts_are_vertical_stripes_and_a_grid_of_bumps():
    """The first query after the clean one is the paper's start."""
    x = np.full((3, 28, 28, 1), 0.5, "float32")
    y = np.zeros(3, "int64")
    model = linear_images(np.zeros((784, 2)), np.array([1.0, 0.0]), shape=(28, 28, 1))
    queried = []

    def model_fn(z):
        queried.append(z.numpy())
        return model(z, training=False)

    square(model_fn, x, y, eps=0.1, num_queries=1, seed=0)
    stripes = queried[1] - x
    np.testing.assert_allclose(np.abs(stripes), 0.1, atol=1e-6)
    np.testing.assert_array_equal(stripes, np.broadcast_to(stripes[:, :1], stripes.shape))
    assert len(np.unique(np.sign(stripes[:, 0, :, 0]))) == 2

    queried.clear()
    square(model_fn, x, y, eps=2.0, norm="l2", num_queries=1, seed=0)
    bumps = (queried[1] - x)[..., 0]
    np.testing.assert_allclose(np.linalg.norm(bumps.reshape(3, -1), axis=1), 2.0, rtol=1e-5)
    # 28 = 1 + 5 * 5 + 2: a 5 x 5 grid of 5 x 5 bumps from row and column 1.
    inside = np.zeros((28, 28), bool)
    inside[1:26, 1:26] = True
    assert np.all(bumps[:, ~inside] == 0)
    eta = meta_pseudo_gaussian(5, 5).numpy()
    scale = 2.0 / 5.0  # 25 unit-norm bumps rescaled to norm eps
    for sample in bumps:
        for r in range(5):
            for c in range(5):
                block = sample[1 + 5 * r : 6 + 5 * r, 1 + 5 * c : 6 + 5 * c] / scale
                assert any(
                    np.allclose(block, sign * pattern, atol=1e-5)
                    for sign in (-1, 1)
                    for pattern in (eta, eta.T)
                )


# ------------------------------------------------------------------ closed-form oracle


def test_linf_binary_linear_model_reaches_the_closed_form_worst_case():
    """Binary linear logits: the random search ends at x - eps * sign(w_y - w_other)."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(36, 2))
    bias = np.zeros(2)
    model = linear_images(weights, bias)
    x = rng.uniform(0.2, 0.8, size=(48, 6, 6, 1)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    # A radius that flips about half of the points.
    eps = float(np.median(margins(model, x, y) / np.abs(weights[:, 0] - weights[:, 1]).sum()))
    worst = worst_linf_margins(weights, bias, x, y, eps)
    keep = np.abs(worst) > 0.05
    x, y, worst = x[keep], y[keep], worst[keep]
    assert (worst < 0).sum() >= 3 and (worst > 0).sum() >= 3  # both cases present

    x_adv = Square(eps=eps, num_queries=600, value_range=None, seed=0)(model, x, y).numpy()
    got = margins(model, x_adv, y)
    np.testing.assert_array_equal(got <= 0, worst < 0)  # fooled exactly where possible
    robust = worst > 0  # searched to the end: the analytic minimum and its maximiser
    np.testing.assert_allclose(got[robust], worst[robust], rtol=1e-4, atol=1e-4)
    direction = np.sign(weights[:, y] - weights[:, 1 - y]).T.reshape(x.shape)
    np.testing.assert_allclose(x_adv[robust], (x - eps * direction)[robust], atol=1e-6)


def test_linf_multiclass_linear_model_fools_where_the_closed_form_does():
    rng = np.random.default_rng(1)
    weights = rng.normal(size=(36, 4))
    bias = rng.normal(size=4) * 0.1
    model = linear_images(weights, bias)
    x = rng.uniform(0.2, 0.8, size=(64, 6, 6, 1)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    eps = 0.02
    worst = worst_linf_margins(weights, bias, x, y, eps)
    keep = np.abs(worst) > 0.1
    x, y, worst = x[keep], y[keep], worst[keep]
    assert (worst < 0).sum() >= 3 and (worst > 0).sum() >= 3

    x_adv = Square(eps=eps, num_queries=600, value_range=None, seed=1)(model, x, y).numpy()
    got = margins(model, x_adv, y)
    np.testing.assert_array_equal(got <= 0, worst < 0)
    assert np.all(got >= worst - 1e-4)  # never beyond the analytic worst case
    # The margin is a minimum of linear functions (concave), so a coordinate-wise search can
    # stop at a vertex that is only locally worst: require most of the way there.
    robust = worst > 0
    clean = margins(model, x, y)
    gained = (clean - got)[robust] / (clean - worst)[robust]
    assert gained.min() > 0.8 and np.mean(gained > 1 - 1e-4) > 0.8


def test_l2_linear_model_approaches_the_closed_form_worst_case():
    """L2 worst case of a binary linear model: ``margin - eps * ||w_y - w_other||_2``.

    Square's L2 updates are spatially smooth bumps, so the model's weights are a smooth
    image; the search then fools every point the worst case flips by a wide margin.
    """
    rng = np.random.default_rng(2)
    grid = np.pi * np.arange(8) / 7
    smooth = np.outer(np.cos(grid), np.sin(1.5 * grid)).ravel()
    weights = np.stack([np.zeros(64), smooth], axis=1)
    model = linear_images(weights, np.zeros(2), shape=(8, 8, 1))
    x = rng.uniform(0.3, 0.7, size=(40, 8, 8, 1)).astype("float32")
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    clean = margins(model, x, y)
    dual = np.linalg.norm(smooth)
    eps = float(np.median(clean / dual))  # the worst case flips about half of the points
    worst = clean - eps * dual
    x_adv = Square(eps=eps, norm="l2", num_queries=300, value_range=None, seed=0)(model, x, y)
    got = margins(model, x_adv.numpy(), y)
    assert np.all(got >= worst - 1e-5)  # never beyond the worst case
    assert np.all(worst[got <= 0] < 0)
    slack = worst / (clean - worst)  # -1: flipped by as much as the attack can move it
    assert np.sum(slack < -0.45) >= 10 and np.all(got[slack < -0.45] <= 0)
    gained = (clean - got)[worst > 0] / (clean - worst)[worst > 0]
    assert gained.mean() > 0.6


# ------------------------------------------------------------------------- invariants


@pytest.mark.parametrize(
    ("norm", "shape"),
    [("linf", (8, 8, 3)), ("l2", (8, 8, 3)), ("linf", (8, 8)), ("linf", (20,)), ("l2", (20,))],
    ids=["images-linf", "images-l2", "grayscale-linf", "vectors-linf", "vectors-l2"],
)
def test_output_inside_ball_and_range(norm, shape):
    rng = np.random.default_rng(3)
    x = rng.choice([0.0, 0.001, 0.5, 0.999, 1.0], size=(12, *shape)).astype("float32")
    model = keras.Sequential(
        [keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(8, "tanh"),
         keras.layers.Dense(3)]
    )
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    eps = 0.1 if norm == "linf" else 0.8
    x_adv = Square(eps=eps, norm=norm, num_queries=60, num_restarts=2, seed=1)(model, x, y)
    assert x_adv.shape == x.shape and x_adv.dtype == tf.float32
    x_adv = x_adv.numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    assert size.max() <= eps * (1 + 1e-5) + 1e-7
    assert size.max() > 0.5 * eps  # the attack moved
    assert margins(model, x_adv, y).mean() < margins(model, x, y).mean()


def test_other_value_range_float64_and_strength():
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, size=(6, 8, 8, 1))
    model = small_cnn()
    model_fn = lambda z: model(tf.cast(z, tf.float32))  # noqa: E731
    attack = Square(eps=0.3, num_queries=8, value_range=(-1.0, 1.0), seed=0)
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    x_adv = attack.perturb(model_fn, tf.constant(x), tf.constant(y))
    assert x_adv.dtype == tf.float64
    assert np.abs(x_adv.numpy()).max() <= 1.0
    assert np.abs(x_adv.numpy() - x).max() <= 0.3 + 1e-12
    half = attack.scaled(tf.constant(0.5)).perturb(model_fn, tf.constant(x), tf.constant(y))
    assert np.abs(half.numpy() - x).max() <= 0.15 + 1e-7  # a float32 strength


def test_misclassified_points_are_left_alone_and_cost_one_query():
    rng = np.random.default_rng(5)
    x = rng.uniform(size=(10, 8, 8, 1)).astype("float32")
    model = small_cnn()
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    wrong = np.arange(10) < 4
    y[wrong] = (y[wrong] + 1) % 3
    fn = tf.function(lambda a, b: square(inference(model), a, b, eps=0.05, num_queries=30,
                                         seed=0, return_queries=True))
    x_adv, queries = fn(x, y)
    np.testing.assert_array_equal(x_adv.numpy()[wrong], x[wrong])
    np.testing.assert_array_equal(queries.numpy()[wrong], 1)
    assert np.all(queries.numpy()[~wrong] >= 2)


def test_query_budget_and_early_exit():
    """Queries per sample never exceed 1 + restarts * num_queries; fooled samples stop and
    the loop ends once the whole batch is fooled."""
    rng = np.random.default_rng(6)
    x = rng.uniform(0.3, 0.7, size=(8, 6, 6, 1)).astype("float32")
    y = np.zeros(8, "int64")
    calls = tf.Variable(0)

    def counting(model):
        def model_fn(z):
            calls.assign_add(1)
            return model(z, training=False)

        return model_fn

    def run(model, num_queries, num_restarts=1):
        calls.assign(0)
        fn = tf.function(
            lambda a, b: square(counting(model), a, b, eps=0.1, num_queries=num_queries,
                                num_restarts=num_restarts, seed=0, return_queries=True)
        )
        _, queries = fn(tf.constant(x), tf.constant(y))
        return int(calls.numpy()), queries.numpy()

    # Nothing can fool a constant model: the full budget, for every sample.
    constant = linear_images(np.zeros((36, 2)), np.array([1.0, 0.0]))
    num_calls, queries = run(constant, 25, num_restarts=2)
    assert num_calls == 1 + 2 * 25
    np.testing.assert_array_equal(queries, 1 + 2 * 25)
    # A model flipped by any perturbation of the first pixel: fooled at the start.
    steep = np.zeros((36, 2))
    steep[0] = [1000.0, -1000.0]
    fragile = linear_images(steep, np.array([-1000.0 * 0.5, 1000.0 * 0.5]))
    x[:, 0, 0, 0] = 0.5 + 1e-3  # class 0 by a hair
    num_calls, queries = run(fragile, 500, num_restarts=3)
    assert num_calls < 500  # early exit, long before the budget
    assert queries.max() < 500 and queries.min() >= 2


def test_restarts_never_raise_the_margin():
    rng = np.random.default_rng(7)
    x = rng.uniform(size=(24, 8, 8, 1)).astype("float32")
    model = small_cnn()
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    one = Square(eps=0.04, num_queries=20, seed=3)(model, x, y).numpy()
    three = Square(eps=0.04, num_queries=20, num_restarts=3, seed=3)(model, x, y).numpy()
    assert np.all(margins(model, three, y) <= margins(model, one, y) + 1e-6)
    assert np.sum(margins(model, three, y) <= 0) >= np.sum(margins(model, one, y) <= 0)


def test_loss_fn_replaces_the_margin_as_acceptance_criterion():
    """On a model nothing fools, a loss rewarding pixel (0, 0) drives it to x + eps, while
    the margin loss (constant here) never beats the clean point, which is returned."""
    x = np.full((4, 6, 6, 1), 0.5, "float32")
    y = np.zeros(4, "int64")
    model = linear_images(np.zeros((36, 2)), np.array([1.0, 0.0]))
    queried = {}

    def model_fn(z):
        queried["z"] = z
        return model(z, training=False)

    def first_pixel(labels, logits):
        return queried["z"][:, 0, 0, 0]

    def run(loss_fn):
        fn = tf.function(lambda a, b: square(model_fn, a, b, eps=0.1, num_queries=100,
                                             loss_fn=loss_fn, seed=0))
        return fn(x, y).numpy()

    np.testing.assert_allclose(run(first_pixel)[:, 0, 0, 0], 0.6, atol=1e-6)
    np.testing.assert_array_equal(run(None), x)


def test_loss_fn_sees_whole_batches():
    """Objectives may close over batch-aligned tensors (TRADES's clean logits), so with a
    ``loss_fn`` the model is queried on the whole batch, fooled samples included."""
    rng = np.random.default_rng(11)
    x = rng.uniform(size=(8, 8, 8, 1)).astype("float32")
    model = small_cnn()
    logits_clean = model(x)
    y = np.argmax(logits_clean.numpy(), axis=1)
    wrong = np.arange(8) % 2 == 0
    y[wrong] = (y[wrong] + 1) % 3

    def kl_to_clean(labels, logits):  # fails on a subset of the batch
        return losses.kl(logits_clean, logits)

    fn = tf.function(lambda a, b: square(inference(model), a, b, eps=0.1, num_queries=20,
                                         num_restarts=2, loss_fn=kl_to_clean, seed=0,
                                         return_queries=True))
    x_adv, queries = fn(x, y)
    np.testing.assert_array_equal(x_adv.numpy()[wrong], x[wrong])
    np.testing.assert_array_equal(queries.numpy()[wrong], 1)
    assert np.all(queries.numpy()[~wrong] > 1)
    kl = losses.kl(logits_clean, model(x_adv)).numpy()
    assert np.all(kl[~wrong] > 0)


# ---------------------------------------------------------------- seeds and graphs


def test_same_seed_same_output_and_graph_matches_eager():
    rng = np.random.default_rng(8)
    x = rng.uniform(size=(8, 8, 8, 1)).astype("float32")
    model = small_cnn()
    y = np.argmax(model.predict(x, verbose=0), axis=1)
    first = Square(eps=0.05, num_queries=10, seed=3)(model, x, y).numpy()
    np.testing.assert_array_equal(Square(eps=0.05, num_queries=10, seed=3)(model, x, y), first)
    for norm in ("linf", "l2"):
        kwargs = dict(eps=0.05 if norm == "linf" else 0.5, norm=norm, num_queries=8)
        graph = tf.function(lambda a, b, s, kw=kwargs: square(inference(model), a, b, seed=s, **kw))
        same = graph(x, y, tf.constant([5, 0]))
        np.testing.assert_array_equal(graph(x, y, tf.constant([5, 0])).numpy(), same.numpy())
        assert not np.allclose(graph(x, y, tf.constant([6, 0])).numpy(), same.numpy())
        # An int seed is the pair [seed, 0]; eager execution gives the graph's result.
        eager = square(inference(model), x, y, seed=5, **kwargs).numpy()
        np.testing.assert_allclose(eager, same.numpy(), atol=1e-6)


def test_stateless_seed_from_every_seed_source():
    np.testing.assert_array_equal(primitives.stateless_seed(7), [7, 0])
    pair = tf.constant([3, 4], tf.int64)
    assert primitives.stateless_seed(pair).dtype == tf.int32
    np.testing.assert_array_equal(primitives.stateless_seed(pair), [3, 4])
    first = primitives.stateless_seed(keras.random.SeedGenerator(1)).numpy()
    gen = keras.random.SeedGenerator(1)
    np.testing.assert_array_equal(primitives.stateless_seed(gen), first)
    assert not np.array_equal(primitives.stateless_seed(gen), first)  # advanced
    assert primitives.stateless_seed(None).shape == (2,)


def test_seed_generator_advances_between_calls():
    x = tf.constant(np.random.default_rng(9).uniform(size=(4, 8, 8, 1)).astype("float32"))
    model = small_cnn()
    y = tf.constant(np.argmax(model.predict(x, verbose=0), axis=1))
    attack = Square(eps=0.05, num_queries=5)
    fn = tf.function(lambda a, b: attack.perturb(inference(model), a, b))
    assert not np.allclose(fn(x, y).numpy(), fn(x, y).numpy())


def test_query_loop_is_not_unrolled():
    model = small_cnn()
    spec = (tf.TensorSpec([None, 8, 8, 1], tf.float32), tf.TensorSpec([None], tf.int64))

    def graph_size(num_queries, norm):
        fn = tf.function(
            lambda a, b: square(inference(model), a, b, eps=0.1, norm=norm,
                                num_queries=num_queries, seed=0)
        )
        return len(fn.get_concrete_function(*spec).graph.get_operations())

    for norm in ("linf", "l2"):
        assert graph_size(3, norm) == graph_size(5000, norm)


def test_stronger_than_random_noise_on_a_trained_model(clean_cnn):
    model, (x, y) = clean_cnn
    x, y = x[:64], y[:64]
    assert np.mean(np.argmax(model.predict(x, verbose=0), axis=1) == y) > 0.8
    eps = 0.15
    noise = np.sign(np.random.default_rng(10).uniform(-1, 1, size=x.shape))
    x_noise = np.clip(x + eps * noise, 0.0, 1.0)
    noise_accuracy = np.mean(np.argmax(model.predict(x_noise, verbose=0), axis=1) == y)
    x_adv = Square(eps=eps, num_queries=150, seed=0)(model, x, y).numpy()
    square_accuracy = np.mean(np.argmax(model.predict(x_adv, verbose=0), axis=1) == y)
    assert square_accuracy < noise_accuracy - 0.3


# ------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"eps": -0.1}, "eps"),
        ({"norm": "l1"}, "norm"),
        ({"num_queries": 0}, "num_queries"),
        ({"p_init": 0.0}, "p_init"),
        ({"p_init": 1.5}, "p_init"),
        ({"num_restarts": 0}, "num_restarts"),
        ({"value_range": (1.0, 0.0)}, "value_range"),
        ({"seed": -1}, "seed"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        Square(**kwargs)


def test_bad_types_inputs_and_kappa():
    with pytest.raises(TypeError, match="`num_queries`"):
        Square(num_queries=2.5)
    with pytest.raises(TypeError, match="`p_init`"):
        Square(p_init="0.8")
    model = small_cnn()
    with pytest.raises(ValueError, match="`x` of shape"):
        square(inference(model), tf.zeros((2, 8, 8, 1, 1)), [0, 1], eps=0.1, num_queries=2)
    with pytest.raises(ValueError, match="records no trace"):
        Square().perturb_with_trace(inference(model), tf.zeros((2, 8, 8, 1)), [0, 1])
    with pytest.raises(ValueError, match="`y` has label 3"):
        Square()(model, np.zeros((2, 8, 8, 1), "float32"), [0, 3])


def test_config_round_trip():
    attack = Square(eps=0.5, norm="l2", num_queries=100, p_init=0.3, num_restarts=2,
                    value_range=None, seed=4)
    config = attack.get_config()
    assert set(config) == {
        "eps", "norm", "num_queries", "p_init", "num_restarts", "value_range", "seed"
    }
    for name, value in config.items():
        assert getattr(attack, name) == value
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(attack)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is Square and restored.get_config() == config
    assert attacks.get({"class_name": "Square", "config": config}).get_config() == config
