"""Tests of the attack primitives: directions, projections, clipping and random starts."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_mwat.attacks import primitives
from keras_mwat.attacks.primitives import (
    ascent_direction,
    clip_to_range,
    normal_start,
    project,
    random_start,
)

MODES = ["eager", "graph", "xla"]


def run_in(mode, fn, *args):
    """Runs ``fn(*args)`` eagerly, in a tf.function, or compiled with XLA."""
    if mode == "eager":
        return fn(*args)
    return tf.function(fn, jit_compile=(mode == "xla"))(*args)


def l2_norms(value):
    value = np.asarray(value, dtype=np.float64)
    return np.sqrt((value.reshape(len(value), -1) ** 2).sum(axis=1))


@pytest.mark.parametrize("mode", MODES)
def test_ascent_direction_linf_is_sign(mode):
    grad = tf.constant(np.random.default_rng(0).normal(size=(4, 3, 3, 2)), tf.float32)
    got = run_in(mode, lambda g: ascent_direction(g, "linf"), grad)
    np.testing.assert_array_equal(got.numpy(), np.sign(grad.numpy()))


@pytest.mark.parametrize("mode", MODES)
def test_ascent_direction_l2_has_unit_norm_per_sample(mode):
    rng = np.random.default_rng(1)
    grad = rng.normal(size=(5, 4, 3)).astype("float32") * np.array([1e-3, 1, 10, 1e3, 1])[
        :, None, None
    ].astype("float32")
    got = run_in(mode, lambda g: ascent_direction(g, "l2"), tf.constant(grad)).numpy()
    np.testing.assert_allclose(l2_norms(got), 1.0, rtol=1e-5)
    # Same direction as the gradient, sample by sample.
    for g, d in zip(grad, got, strict=True):
        np.testing.assert_allclose(d, g / np.linalg.norm(g), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_ascent_direction_of_zero_gradient_is_zero(norm):
    grad = np.zeros((3, 5), "float32")
    grad[1] = 2.0
    got = ascent_direction(tf.constant(grad), norm).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got[[0, 2]], 0.0)
    assert np.abs(got[1]).sum() > 0


def test_ascent_direction_keeps_dtype():
    grad = tf.constant([[3.0, -4.0]], tf.float16)
    out = ascent_direction(grad, "l2")
    assert out.dtype == tf.float16
    np.testing.assert_allclose(out.numpy().astype("float32"), [[0.6, -0.8]], atol=1e-3)


@pytest.mark.parametrize("mode", MODES)
def test_project_linf_clips_every_coordinate(mode):
    delta = tf.constant([[0.5, -0.05, -2.0], [0.0, 0.1, 0.099]])
    got = run_in(mode, lambda d: project(d, 0.1, "linf"), delta).numpy()
    np.testing.assert_allclose(got, [[0.1, -0.05, -0.1], [0.0, 0.1, 0.099]], rtol=1e-6)


@pytest.mark.parametrize("mode", MODES)
def test_project_l2_rescales_only_samples_outside_the_ball(mode):
    rng = np.random.default_rng(2)
    delta = rng.normal(size=(6, 2, 5)).astype("float32")
    delta[:3] *= 0.01 / l2_norms(delta[:3])[:, None, None]  # inside (norm 0.01)
    delta[3:] *= 3.0 / l2_norms(delta[3:])[:, None, None]  # outside (norm 3)
    got = run_in(mode, lambda d: project(d, 0.5, "l2"), tf.constant(delta)).numpy()
    np.testing.assert_allclose(got[:3], delta[:3], rtol=1e-6)
    np.testing.assert_allclose(l2_norms(got[3:]), 0.5, rtol=1e-5)
    np.testing.assert_allclose(got[3:], delta[3:] * (0.5 / 3.0), rtol=1e-4, atol=1e-7)


def test_project_zero_delta_and_zero_eps():
    zero = tf.zeros((2, 3))
    for norm in ("linf", "l2"):
        np.testing.assert_array_equal(project(zero, 0.3, norm).numpy(), 0.0)
        delta = tf.ones((2, 3))
        np.testing.assert_array_equal(project(delta, 0.0, norm).numpy(), 0.0)


def test_clip_to_range():
    x = tf.constant([[-0.5, 0.25, 1.5]])
    np.testing.assert_array_equal(clip_to_range(x, (0.0, 1.0)).numpy(), [[0.0, 0.25, 1.0]])
    np.testing.assert_array_equal(clip_to_range(x, (-1.0, 0.0)).numpy(), [[-0.5, 0.0, 0.0]])
    assert clip_to_range(x, None) is not None
    np.testing.assert_array_equal(clip_to_range(x, None).numpy(), x.numpy())


def test_unknown_norm_raises():
    norm = "linfinity"
    with pytest.raises(ValueError, match="norm"):
        ascent_direction(tf.ones((1, 2)), norm)
    with pytest.raises(ValueError, match="norm"):
        project(tf.ones((1, 2)), 0.1, norm)
    with pytest.raises(ValueError, match="norm"):
        random_start((1, 2), 0.1, norm, seed=0)


def test_random_start_linf_fills_the_box():
    eps = 0.25
    delta = random_start((2000, 3), eps, "linf", seed=keras.random.SeedGenerator(0)).numpy()
    assert delta.shape == (2000, 3) and delta.dtype == np.float32
    assert np.abs(delta).max() <= eps
    assert delta.min() < -0.95 * eps and delta.max() > 0.95 * eps
    # Uniform in [-eps, eps]: mean 0, variance eps^2 / 3.
    assert abs(delta.mean()) < 0.02 * eps
    np.testing.assert_allclose(delta.var(), eps**2 / 3, rtol=0.1)


def test_random_start_l2_is_uniform_in_the_ball():
    eps, d, n = 0.5, 4, 4000
    delta = random_start((n, 2, 2), eps, "l2", seed=keras.random.SeedGenerator(0)).numpy()
    radius = l2_norms(delta)
    assert radius.max() <= eps * (1 + 1e-6)
    # Not all on the sphere: uniform in the ball has (r / eps)^d uniform in [0, 1].
    assert (radius < 0.9 * eps).mean() > 0.5
    scaled = (radius / eps) ** d
    assert abs(scaled.mean() - 0.5) < 0.03
    assert abs((scaled < 0.25).mean() - 0.25) < 0.03
    # Isotropic directions: every coordinate has mean about 0.
    assert np.abs(delta.reshape(n, -1).mean(axis=0)).max() < 0.02


def test_random_start_l2_high_dimension_stays_inside():
    delta = random_start((64, 8, 8, 3), 1.0, "l2", seed=3).numpy()
    radius = l2_norms(delta)
    assert radius.max() <= 1.0 + 1e-6
    assert radius.min() > 0.9  # in high dimension almost all the mass is near the sphere


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_is_deterministic_for_a_seed(norm):
    first = random_start((8, 5), 0.3, norm, seed=keras.random.SeedGenerator(7))
    gen = keras.random.SeedGenerator(7)
    again = random_start((8, 5), 0.3, norm, seed=gen)
    following = random_start((8, 5), 0.3, norm, seed=gen)
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.allclose(again.numpy(), following.numpy())
    # An int seed is stateless: the same draw every call.
    np.testing.assert_array_equal(
        random_start((8, 5), 0.3, norm, seed=11).numpy(),
        random_start((8, 5), 0.3, norm, seed=11).numpy(),
    )
    assert not np.allclose(
        random_start((8, 5), 0.3, norm, seed=11).numpy(),
        random_start((8, 5), 0.3, norm, seed=12).numpy(),
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_random_start_in_graph_advances_the_generator(mode, norm):
    gen = keras.random.SeedGenerator(5)

    def draw(x):
        return random_start(tf.shape(x), 0.1, norm, seed=gen, dtype=x.dtype)

    fn = draw if mode == "eager" else tf.function(draw, jit_compile=(mode == "xla"))
    x = tf.zeros((16, 3, 2))
    a, b = fn(x).numpy(), fn(x).numpy()
    assert a.shape == (16, 3, 2)
    assert not np.allclose(a, b)
    bound = np.abs(a).max() if norm == "linf" else l2_norms(a).max()
    assert bound <= 0.1 * (1 + 1e-6)


def test_random_start_dtype_and_unknown_batch():
    fn = tf.function(
        lambda x: random_start(tf.shape(x), 0.2, "l2", seed=1, dtype=x.dtype),
        input_signature=[tf.TensorSpec([None, 3], tf.float64)],
    )
    out = fn(tf.zeros((5, 3), tf.float64))
    assert out.dtype == tf.float64 and out.shape == (5, 3)


def test_normal_start_scale():
    noise = normal_start((4000, 5), 0.001, seed=keras.random.SeedGenerator(0)).numpy()
    np.testing.assert_allclose(noise.std(), 0.001, rtol=0.05)
    assert abs(noise.mean()) < 1e-4
    assert normal_start((2, 3), 0.5, seed=0, dtype=tf.float16).dtype == tf.float16


def test_bad_seed_type_raises():
    with pytest.raises(TypeError, match="seed"):
        random_start((2, 3), 0.1, "linf", seed="zero")
    with pytest.raises(TypeError, match="seed"):
        primitives._seed_source(1.5)
