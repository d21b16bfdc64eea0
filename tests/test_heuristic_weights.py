"""MAIL, GAIRAT and WMMR weights against an independent float64 NumPy implementation."""

import numpy as np
import pytest
import tensorflow as tf

from keras_mwat import weighting

# ---------------------------------------------------------------- NumPy reference (float64)


def np_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def ref_margin(y, z):
    """Definition 2.2: p_y - max_{t != y} p_t."""
    p = np_softmax(z)
    return np.array([p[i, label] - max(p[i, j] for j in range(p.shape[1]) if j != label)
                     for i, label in enumerate(y)])


def ref_mail(y, z, bias, slope):
    pm = -ref_margin(y, z)  # p_2nd - p_y
    return 3.0 / (1.0 + np.exp(-slope * (pm + bias)))


def ref_gairat(kappa, num_steps, lam):
    half = num_steps // 2 or 1
    w = (np.tanh(lam + 5.0 * (half - np.asarray(kappa, np.float64)) / half) + 1.0) / 2.0
    return len(w) * w / w.sum()


def ref_wmmr(y, z, alpha):
    return np.exp(-alpha * ref_margin(y, z))


_rng = np.random.default_rng(1)
BATCHES = [
    (np.array([0, 1, 2, 3]), np.array([[5.0, 1.0, 0.0, -1.0],     # true class ranked 1st
                                       [3.0, 2.0, 0.0, 0.5],      # 2nd
                                       [4.0, 3.0, 1.0, 0.0],      # 3rd
                                       [0.0, 1.0, 2.0, -3.0]])),  # last
    (np.array([0, 1, 3]), np.array([[30.0, -30.0, -30.0, -30.0],
                                    [30.0, -30.0, -30.0, -30.0],
                                    [-30.0, 30.0, 30.0, -30.0]])),
    (_rng.integers(0, 10, 32), _rng.normal(scale=4.0, size=(32, 10))),
    (np.array([2, 0, 1]), _rng.normal(scale=2.0, size=(3, 3))),
]
IDS = ["k4_ranked", "saturated", "k10", "k3"]


def f32(a):
    return np.asarray(a, dtype="float32")


# ---------------------------------------------------------------- MAIL


@pytest.mark.parametrize("bias, slope", [(-1.5, 1.0), (-0.5, 10.0), (0.0, 2.0)])
@pytest.mark.parametrize("y, z", BATCHES, ids=IDS)
def test_mail_matches_formula(y, z, bias, slope):
    got = weighting.mail(y, f32(z), bias=bias, slope=slope).numpy()
    assert got.shape == (len(y),) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref_mail(y, z, bias, slope), rtol=1e-5, atol=1e-6)


def test_mail_is_bounded_by_3_and_not_normalised():
    y, z = BATCHES[1]
    got = weighting.mail(y, f32(z), bias=0.0, slope=50.0).numpy()
    assert np.all((got > 0) & (got <= 3.0))
    # Confidently misclassified (PM = 1): weight -> 3; confidently correct (PM = -1): -> 0.
    np.testing.assert_allclose(got[1], 3.0, rtol=1e-6)
    assert got[0] < 1e-20
    defaults = weighting.mail(*BATCHES[2]).numpy()
    assert np.all(defaults <= 3.0 * (1 / (1 + np.exp(-(1.0 - 1.5)))) + 1e-6)
    assert not np.isclose(defaults.mean(), 1.0)


# ---------------------------------------------------------------- GAIRAT


@pytest.mark.parametrize("num_steps", [10, 3, 1])
@pytest.mark.parametrize("lam", [-1.0, 0.0, 2.0])
def test_gairat_matches_formula_and_is_monotone(num_steps, lam):
    kappa = np.arange(num_steps + 1)
    got = weighting.gairat(kappa, num_steps, lam=lam).numpy()
    assert got.shape == (num_steps + 1,) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref_gairat(kappa, num_steps, lam), rtol=1e-5)
    np.testing.assert_allclose(got.mean(), 1.0, rtol=1e-6)
    assert got.argmax() == 0 and got.argmin() == num_steps  # kappa=0 largest, kappa=K smallest
    assert np.all(np.diff(got) < 0)


def test_gairat_known_values_for_k10():
    # K = 10, floor(K/2) = 5, lambda = -1: w(kappa) = (tanh(-1 + (5 - kappa)) + 1) / 2.
    kappa = np.array([0, 5, 10, 7, 7, 2])
    raw = (np.tanh(-1.0 + 5.0 - kappa) + 1.0) / 2.0
    got = weighting.gairat(kappa, 10).numpy()
    np.testing.assert_allclose(got, raw * 6 / raw.sum(), rtol=1e-5)
    np.testing.assert_allclose(got.mean(), 1.0, rtol=1e-6)
    # Small weights stay accurate in float32 (tanh(-6) + 1 ~ 1.2e-5).
    np.testing.assert_allclose(got[2] / got[1], raw[2] / raw[1], rtol=1e-5)


def test_gairat_accepts_int_and_float_kappa_and_has_no_gradient():
    kappa_f = tf.constant([0.0, 3.0, 10.0])
    with tf.GradientTape() as tape:
        tape.watch(kappa_f)
        w = weighting.gairat(kappa_f, 10)
    assert tape.gradient(w, kappa_f) is None
    np.testing.assert_allclose(w.numpy(), weighting.gairat(np.array([0, 3, 10], np.int64),
                                                           10).numpy(), rtol=1e-6)


def test_gairat_validation():
    with pytest.raises(ValueError, match="num_steps=0"):
        weighting.gairat([0, 1], 0)
    with pytest.raises(TypeError, match="num_steps"):
        weighting.gairat([0, 1], 2.5)
    with pytest.raises(ValueError, match="lam"):
        weighting.gairat([0, 1], 10, lam=float("inf"))


# ---------------------------------------------------------------- WMMR


@pytest.mark.parametrize("alpha", [1.0, 0.0, 3.5, -2.0])
@pytest.mark.parametrize("y, z", BATCHES, ids=IDS)
def test_wmmr_is_exp_of_minus_alpha_margin(y, z, alpha):
    got = weighting.wmmr(y, f32(z), alpha=alpha).numpy()
    assert got.shape == (len(y),) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref_wmmr(y, z, alpha), rtol=1e-5, atol=1e-6)
    bound = np.exp(abs(alpha)) * (1 + 1e-6)
    assert np.all((got <= bound) & (got >= 1 / bound))


# ---------------------------------------------------------------- common behaviour


def test_weights_have_no_gradient_to_logits():
    y, z = BATCHES[0]
    logits = tf.constant(f32(z))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(logits)
        outputs = [weighting.mail(y, logits), weighting.wmmr(y, logits)]
    for out in outputs:
        assert tape.gradient(out, logits) is None


def test_float16_logits_give_float32():
    y, z = BATCHES[2]
    for fn in (weighting.mail, weighting.wmmr):
        half = fn(y, z.astype("float16"))
        assert half.dtype == tf.float32
        np.testing.assert_allclose(half.numpy(), fn(y, f32(z)).numpy(), rtol=1e-2, atol=1e-2)
    assert weighting.gairat(np.array([0, 1, 2], np.int32), 4).dtype == tf.float32
    assert weighting.gairat(np.array([0, 1, 2], np.float16), 4).dtype == tf.float32


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_graph_and_xla_match_eager(mode):
    y, z = BATCHES[2]
    kappa = _rng.integers(0, 11, len(y))

    def all_weights(y, z, kappa):
        return {"mail": weighting.mail(y, z, bias=-0.5, slope=10.0),
                "gairat": weighting.gairat(kappa, 10),
                "wmmr": weighting.wmmr(y, z, alpha=2.0)}

    args = (tf.constant(y, tf.int32), tf.constant(f32(z)), tf.constant(kappa, tf.int32))
    eager = all_weights(*args)
    compiled = tf.function(all_weights, jit_compile=(mode == "xla"))(*args)
    for name in eager:
        np.testing.assert_allclose(compiled[name].numpy(), eager[name].numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=name)


@pytest.mark.parametrize("fn, name, value, error", [
    (weighting.mail, "bias", float("nan"), ValueError),
    (weighting.mail, "slope", float("inf"), ValueError),
    (weighting.mail, "slope", "1", TypeError),
    (weighting.wmmr, "alpha", float("-inf"), ValueError),
    (weighting.wmmr, "alpha", None, TypeError),
])
def test_hyperparameters_are_validated(fn, name, value, error):
    y, z = BATCHES[0]
    with pytest.raises(error, match=name):
        fn(y, z, **{name: value})
