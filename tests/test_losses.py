"""Per-sample losses against an independent float64 NumPy implementation of paper.md §3."""

import numpy as np
import pytest
import tensorflow as tf

from keras_mwat import losses

# ---------------------------------------------------------------- NumPy reference (float64)


def np_log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_softmax(z):
    return np.exp(np_log_softmax(z))


def ref_ce(y, z):
    return -np_log_softmax(z)[np.arange(len(y)), y]


def ref_kl(z_clean, z_adv):
    p = np_softmax(z_clean)
    out = np.zeros(len(p))
    for i in range(len(p)):
        for j in range(p.shape[1]):
            if p[i, j] > 0:
                out[i] += p[i, j] * (np.log(p[i, j]) - np_log_softmax(z_adv)[i, j])
    return out


def ref_trades(y, z_clean, z_adv, beta):
    return ref_ce(y, z_clean) + beta * ref_kl(z_clean, z_adv)


def ref_mart(y, z_clean, z_adv, beta):
    p_adv, p_nat = np_softmax(z_adv), np_softmax(z_clean)
    out = []
    for i, label in enumerate(y):
        wrong = [j for j in range(p_adv.shape[1]) if j != label]
        y_prime = wrong[int(np.argmax(p_adv[i, wrong]))]
        boosted = ref_ce(y[i:i + 1], z_adv[i:i + 1])[0] - np.log(1.0001 - p_adv[i, y_prime])
        kl_term = ref_kl(z_clean[i:i + 1], z_adv[i:i + 1])[0] * (1.0 - p_nat[i, label])
        out.append(boosted + beta * kl_term)
    return np.array(out)


def ref_cw(y, z):
    return np.array([max(z[i, j] for j in range(z.shape[1]) if j != label) - z[i, label]
                     for i, label in enumerate(y)])


def ref_dlr(y, z, target=None):
    out = []
    for i, label in enumerate(y):
        ranked = sorted(z[i], reverse=True)  # z_pi1 >= z_pi2 >= ...
        if target is None:
            best_other = max(z[i, j] for j in range(z.shape[1]) if j != label)
            out.append(-(z[i, label] - best_other) / (ranked[0] - ranked[2] + 1e-12))
        else:
            scale = ranked[0] - (ranked[2] + ranked[3]) / 2 + 1e-12
            out.append(-(z[i, label] - z[i, target[i]]) / scale)
    return np.array(out)


# ---------------------------------------------------------------- fixed batches

_rng = np.random.default_rng(0)
CLEAN_K4 = np.array([[5.0, 1.0, 0.0, -1.0],     # true class ranked 1st
                     [3.0, 2.0, 0.0, 0.5],      # 2nd
                     [4.0, 3.0, 1.0, 0.0],      # 3rd
                     [0.0, 1.0, 2.0, -3.0]])    # last
Y_K4 = np.array([0, 1, 2, 3])
SATURATED = np.array([[30.0, -30.0, -30.0, -30.0],
                      [-30.0, 30.0, -30.0, -30.0],
                      [-30.0, -30.0, 30.0, -30.0],
                      [30.0, 30.0, -30.0, -30.0]])
Y_SAT = np.array([0, 0, 3, 1])
# (y, logits_clean, logits_adv): K = 4 (true class ranked 1st..last), saturated, K = 10, K = 3.
PAIRS = [
    (Y_K4, CLEAN_K4, CLEAN_K4 + np.array([[-3.0, 2.0, 0.5, 0.0]])),
    (Y_SAT, SATURATED, SATURATED[[1, 0, 3, 2]]),
    (_rng.integers(0, 10, 32), _rng.normal(scale=4.0, size=(32, 10)),
     _rng.normal(scale=4.0, size=(32, 10))),
    (np.array([0, 1, 2, 2, 1]), _rng.normal(scale=3.0, size=(5, 3)),
     _rng.normal(scale=3.0, size=(5, 3))),
]
IDS = ["k4_ranked", "saturated", "k10", "k3"]


def f32(a):
    return np.asarray(a, dtype="float32")


# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize("y, clean, adv", PAIRS, ids=IDS)
def test_kl_matches_reference(y, clean, adv):
    got = losses.kl(f32(clean), f32(adv)).numpy()
    assert got.shape == (len(y),) and got.dtype == np.float32
    np.testing.assert_allclose(got, ref_kl(clean, adv), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 1.0, 6.0])
@pytest.mark.parametrize("y, clean, adv", PAIRS, ids=IDS)
def test_trades_matches_reference(y, clean, adv, beta):
    got = losses.trades(y, f32(clean), f32(adv), beta=beta).numpy()
    assert got.shape == (len(y),)
    np.testing.assert_allclose(got, ref_trades(y, clean, adv, beta), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 5.0, 6.0])
@pytest.mark.parametrize("y, clean, adv", PAIRS, ids=IDS)
def test_mart_matches_reference(y, clean, adv, beta):
    got = losses.mart(y, f32(clean), f32(adv), beta=beta).numpy()
    assert got.shape == (len(y),) and np.isfinite(got).all()
    np.testing.assert_allclose(got, ref_mart(y, clean, adv, beta), rtol=1e-5, atol=1e-5)


def test_mart_constant_1_0001_at_saturation():
    # Adversarial logits put all mass on a wrong class: p_adv[y'] == 1 in float32.
    y = np.array([0, 0])
    clean = f32([[30.0, -30.0, -30.0, -30.0], [100.0, -100.0, -100.0, -100.0]])
    adv = f32([[-30.0, 30.0, -30.0, -30.0], [-100.0, 100.0, -100.0, -100.0]])
    assert tf.nn.softmax(adv).numpy()[1, 1] == 1.0
    got = losses.mart(y, clean, adv, beta=6.0).numpy()
    assert np.isfinite(got).all()
    # CE(adv) = 60 + log(1 + 3e^-60); boost = -log(1.0001 - p) = -log(1e-4 + 3e^-60 / ...);
    # the KL term is ~60 * (1 - p_nat[y]) ~ 60 * 3e^-60, negligible.
    boost = -np.log(1.0001 - 1.0)
    np.testing.assert_allclose(boost, 9.210340371976, rtol=1e-11)
    np.testing.assert_allclose(got[0], 60.0 + boost, rtol=1e-6)
    np.testing.assert_allclose(got[1], 200.0 + boost, rtol=1e-6)
    np.testing.assert_allclose(got[0], ref_mart(y[:1], clean[:1], adv[:1], 6.0)[0], rtol=1e-6)


def test_mart_picks_most_likely_wrong_class_when_adv_is_correct():
    # adv still correct; y' = class 2 (0.5 logit gap above class 1).
    y = np.array([0])
    clean = f32([[2.0, 0.0, 0.0, 0.0]])
    adv = f32([[1.0, -1.0, 0.5, -2.0]])
    p = np_softmax(adv.astype(np.float64))[0]
    expected = ref_ce(y, adv.astype(np.float64))[0] - np.log(1.0001 - p[2])
    expected += 6.0 * ref_kl(clean, adv)[0] * (1 - np_softmax(clean)[0, 0])
    np.testing.assert_allclose(losses.mart(y, clean, adv).numpy()[0], expected, rtol=1e-6)


@pytest.mark.parametrize("y, clean, adv", PAIRS, ids=IDS)
def test_cw_margin_matches_reference(y, clean, adv):
    for z in (clean, adv):
        got = losses.cw_margin(y, f32(z)).numpy()
        np.testing.assert_allclose(got, ref_cw(y, z), rtol=1e-6, atol=1e-5)
        # Positive exactly when misclassified (rows with a tied top logit are left out).
        unique_top = (z == z.max(axis=1, keepdims=True)).sum(axis=1) == 1
        misclassified = z.argmax(axis=1) != y
        np.testing.assert_array_equal((got > 0)[unique_top], misclassified[unique_top])


@pytest.mark.parametrize("y, clean, adv", PAIRS, ids=IDS)
def test_dlr_untargeted_matches_reference(y, clean, adv):
    for z in (clean, adv):
        got = losses.dlr(y, f32(z)).numpy()
        assert got.shape == (len(y),)
        np.testing.assert_allclose(got, ref_dlr(y, z), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("y, clean, adv", PAIRS[:3], ids=IDS[:3])
def test_dlr_targeted_matches_reference(y, clean, adv):
    k = clean.shape[1]
    target = (y + 1 + np.arange(len(y)) % (k - 1)) % k  # never the true class
    for z in (clean, adv):
        got = losses.dlr(y, f32(z), target=target).numpy()
        np.testing.assert_allclose(got, ref_dlr(y, z, target), rtol=1e-5, atol=1e-6)


def test_dlr_rejects_too_few_classes():
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="at least 4 classes"):
        losses.dlr(y, f32(np.zeros((2, 3))), target=np.array([1, 2]))
    with pytest.raises(ValueError, match="at least 3 classes"):
        losses.dlr(y, f32(np.zeros((2, 2))))
    with pytest.raises(ValueError, match="at least 2 classes"):
        losses.cw_margin(y[:1], f32(np.zeros((1, 1))))


# ---------------------------------------------------------------- invariances


def test_kl_is_zero_on_itself_and_nonnegative():
    for _, clean, adv in PAIRS:
        np.testing.assert_array_equal(losses.kl(f32(clean), f32(clean)).numpy(), 0.0)
        assert np.all(losses.kl(f32(clean), f32(adv)).numpy() >= -1e-6)
    z = f32(_rng.normal(size=(16, 10)))
    near = z + f32(1e-3 * _rng.normal(size=z.shape))
    assert np.all(losses.kl(z, near).numpy() >= -1e-6)


@pytest.mark.parametrize("target", [None, np.array([1, 3, 0, 2] * 8)])
def test_dlr_invariant_to_shift_and_positive_scale(target):
    y, z = PAIRS[2][0], PAIRS[2][1]
    base = losses.dlr(y, f32(z), target=target).numpy()
    np.testing.assert_allclose(losses.dlr(y, f32(z + 12.5), target=target).numpy(), base,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(losses.dlr(y, f32(z * 7.0), target=target).numpy(), base,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(losses.dlr(y, f32(z * 0.2), target=target).numpy(), base,
                               rtol=1e-5, atol=1e-5)


def test_cw_margin_invariant_to_shift():
    y, z = PAIRS[2][0], PAIRS[2][1]
    np.testing.assert_allclose(losses.cw_margin(y, f32(z - 40.0)).numpy(),
                               losses.cw_margin(y, f32(z)).numpy(), atol=1e-4)


def test_trades_and_mart_reduce_to_their_first_term_with_beta_zero():
    y, clean, adv = PAIRS[0]
    np.testing.assert_allclose(losses.trades(y, f32(clean), f32(adv), beta=0.0).numpy(),
                               losses.cross_entropy(y, f32(clean)).numpy(), rtol=1e-6)
    boosted = ref_mart(y, clean, adv, 0.0)
    np.testing.assert_allclose(losses.mart(y, f32(clean), f32(adv), beta=0.0).numpy(),
                               boosted, rtol=1e-5)


# ---------------------------------------------------------------- dtypes, graph, XLA, grads


def _call_all(y, clean, adv, target):
    return {
        "kl": losses.kl(clean, adv),
        "trades": losses.trades(y, clean, adv),
        "mart": losses.mart(y, clean, adv),
        "cw_margin": losses.cw_margin(y, adv),
        "dlr": losses.dlr(y, adv),
        "dlr_targeted": losses.dlr(y, adv, target=target),
    }


def test_float16_logits_give_float32():
    y, clean, adv = PAIRS[0]
    target = np.array([1, 2, 3, 0])
    out = _call_all(y, clean.astype("float16"), adv.astype("float16"), target)
    reference = _call_all(y, f32(clean), f32(adv), target)
    for name, value in out.items():
        assert value.dtype == tf.float32, name
        np.testing.assert_allclose(value.numpy(), reference[name].numpy(), rtol=1e-2,
                                   atol=1e-2, err_msg=name)


def test_float64_stays_float64_and_mixed_inputs_promote():
    y, clean, adv = PAIRS[0]
    assert losses.trades(y, clean, adv).dtype == tf.float64
    assert losses.mart(y, clean.astype("float16"), adv).dtype == tf.float64
    assert losses.kl(clean.astype("float16"), f32(adv)).dtype == tf.float32


@pytest.mark.parametrize("mode", ["graph", "xla"])
def test_graph_and_xla_match_eager(mode):
    y, clean, adv = PAIRS[2]
    target = (y + 1) % 10
    args = (tf.constant(y, tf.int32), tf.constant(f32(clean)), tf.constant(f32(adv)),
            tf.constant(target, tf.int32))
    eager = _call_all(*args)
    compiled = tf.function(_call_all, jit_compile=(mode == "xla"))(*args)
    for name in eager:
        np.testing.assert_allclose(compiled[name].numpy(), eager[name].numpy(), rtol=1e-5,
                                   atol=1e-5, err_msg=name)


def test_gradients_are_finite_at_saturation():
    y = tf.constant(Y_SAT)
    clean, adv = tf.constant(f32(SATURATED)), tf.constant(f32(SATURATED[[1, 0, 3, 2]]))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([clean, adv])
        values = _call_all(y, clean, adv, tf.constant([1, 2, 0, 3]))
    for name, value in values.items():
        grads = tape.gradient(value, [clean, adv])
        for grad in grads:
            if grad is not None:
                assert np.isfinite(grad.numpy()).all(), name


def test_trades_kl_gradient_matches_finite_differences():
    y = tf.constant([0, 2])
    clean = tf.constant(f32([[1.0, 0.5, -1.0, 0.0], [0.0, 0.2, 0.1, -0.3]]))
    adv = tf.constant(f32([[0.5, 1.0, -1.0, 0.2], [0.3, 0.2, 0.4, -0.1]]))
    with tf.GradientTape() as tape:
        tape.watch(adv)
        total = tf.reduce_sum(losses.trades(y, clean, adv))
    grad = tape.gradient(total, adv).numpy()
    # d KL / d z_adv = beta * (p_adv - p_clean) per sample.
    expected = 6.0 * (np_softmax(adv.numpy()) - np_softmax(clean.numpy()))
    np.testing.assert_allclose(grad, expected, atol=1e-5)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("fn", [losses.trades, losses.mart])
def test_beta_is_validated(fn):
    y, clean, adv = PAIRS[0]
    with pytest.raises(ValueError, match=r"beta=-1\.0"):
        fn(y, clean, adv, beta=-1.0)
    with pytest.raises(ValueError, match="beta"):
        fn(y, clean, adv, beta=float("nan"))
    with pytest.raises(TypeError, match="beta"):
        fn(y, clean, adv, beta="6")
