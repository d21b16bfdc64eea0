"""Sample-weight normalisation over the global batch.

Weights multiply per-sample losses. ``normalize`` rescales them over the *global* batch
(all replicas under ``tf.distribute``), so that training on two replicas equals training on
one. The heuristic weightings of the peer methods (MAIL, GAIRAT, WMMR) live here too.
"""

from __future__ import annotations

import tensorflow as tf

from keras_mwat.losses import at_least_float32
from keras_mwat.margins import probability_margin
from keras_mwat.validation import check_choice, check_finite, check_int

NORMALIZATIONS = ("mean", "sum", "none")


def global_sum(value) -> tf.Tensor:
    """Sum of ``value`` over all replicas (identity outside ``tf.distribute``)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return value
    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def global_batch_size(local_batch) -> tf.Tensor:
    """Number of samples in the global batch, as float32."""
    return global_sum(tf.cast(tf.shape(local_batch)[0], tf.float32))


def _count(weights, mask):
    """Number of (unmasked) samples in the global batch, in the weights' dtype."""
    local = tf.reduce_sum(mask) if mask is not None else tf.shape(weights)[0]
    return global_sum(tf.cast(local, weights.dtype))


def normalize(weights, mode: str = "mean", mask=None) -> tf.Tensor:
    """Normalises sample weights over the global batch.

    Args:
        weights: Non-negative float32 weights, shape (n,).
        mode: "mean" (global mean 1), "sum" (global sum 1) or "none" (unchanged).
        mask: Optional 0/1 float mask, shape (n,): masked-out samples get weight 0 and do
            not count in the normalisation.

    Returns:
        Float32 tensor of shape (n,).
    """
    check_choice(mode, "weight_normalization", NORMALIZATIONS)
    weights = at_least_float32(weights)
    if mask is not None:
        weights = weights * tf.cast(mask, weights.dtype)
    if mode == "none":
        return weights
    total = global_sum(tf.reduce_sum(weights))
    total = tf.maximum(total, tf.cast(1e-12, weights.dtype))
    if mode == "sum":
        return weights / total
    return weights * (_count(weights, mask) / total)


def loss_coefficients(weights, mode: str = "mean", mask=None) -> tf.Tensor:
    """Coefficients ``c_i`` such that the weighted loss is ``sum_i c_i * loss_i`` per replica.

    Summed over replicas, the loss is ``sum_i w_i l_i / sum_i w_i`` for "mean" and "sum"
    normalisation (a weighted mean over the global batch) and ``mean_i(w_i l_i)`` for "none";
    uniform weights give the plain mean over the global batch.
    """
    normalized = normalize(weights, mode, mask)
    if mode == "sum":
        return normalized
    return normalized / tf.maximum(_count(normalized, mask), 1.0)


def mail(y, logits_adv, bias: float = -1.5, slope: float = 1.0) -> tf.Tensor:
    """MAIL sample weights ``3 * sigmoid(slope * (p_2nd - p_y + bias))``.

    MAIL (Wang et al., "Probabilistic Margins for Instance Reweighting in Adversarial
    Training", NeurIPS 2021; ``paper.md`` §3): with ``p = softmax(logits_adv)`` on the
    *adversarial* inputs, ``PM = p_2nd - p_y`` where ``p_2nd = max_{j != y} p_j`` is the
    largest wrong-class probability, i.e. ``PM = -probability_margin`` (Definition 2.2).
    Weights lie in (0, 3) and grow as the margin shrinks. As in the reference they are
    *not* normalised over the batch (the model's ``weight_normalization`` may still be
    applied on top). Defaults bias -1.5 and slope 1.0; the reference README also uses
    bias -0.5 / slope 10 for MAIL-AT and bias 0 / slope 2 for MAIL-TRADES.

    Args:
        y: Integer labels, shape (n,).
        logits_adv: Logits on adversarial inputs, shape (n, K).
        bias: Finite number added to the margin.
        slope: Finite number multiplying the biased margin.

    Returns:
        Tensor of shape (n,), float32 (float64 for float64 logits), with no gradient
        (``stop_gradient``).
    """
    bias = check_finite(bias, "bias")
    slope = check_finite(slope, "slope")
    negative_margin = -probability_margin(y, logits_adv)
    return tf.stop_gradient(3.0 * tf.sigmoid(slope * (negative_margin + bias)))


def gairat(kappa, num_steps: int, lam: float = -1.0) -> tf.Tensor:
    """GAIRAT sample weights, normalised to mean 1 over the global batch.

    GAIRAT (Zhang et al., "Geometry-aware Instance-reweighted Adversarial Training",
    ICLR 2021; ``paper.md`` §3): with ``K = num_steps`` PGD steps and ``kappa_i`` in
    ``[0, K]`` the number of steps during which ``x_i`` stays correctly classified,

        w_i = (tanh(lam + 5 * (floor(K/2) - kappa_i) / floor(K/2)) + 1) / 2,

    then ``w <- n * w / sum(w)`` (``normalize(w, "mean")``, over *all* replicas under
    ``tf.distribute``). Small ``kappa`` (attacked early, close to the boundary) gets the
    largest weight. ``(tanh(a) + 1) / 2`` is evaluated as the identical ``sigmoid(2a)``,
    which keeps the small weights accurate in float32. For ``K = 1``, ``floor(K/2) = 0``
    (the reference divides by zero); 1 is used instead, i.e.
    ``w = (tanh(lam + 5 * (0 - kappa)) + 1) / 2``. ``kappa`` is not clipped to ``[0, K]``.

    Args:
        kappa: Per-sample counts (integer or float tensor), shape (n,).
        num_steps: Number of PGD steps K, a Python int >= 1.
        lam: The offset lambda, a finite number (GAIRAT uses -1).

    Returns:
        Tensor of shape (n,), float32 (float64 for float64 ``kappa``), with global mean 1
        and no gradient (``stop_gradient``).
    """
    num_steps = check_int(num_steps, "num_steps", minimum=1)
    lam = check_finite(lam, "lam")
    half = max(num_steps // 2, 1)
    kappa = at_least_float32(tf.reshape(kappa, [-1]))
    argument = lam + 5.0 * (half - kappa) / half
    weights = tf.sigmoid(2.0 * argument)
    return tf.stop_gradient(normalize(weights, "mean"))


def wmmr(y, logits, alpha: float = 1.0) -> tf.Tensor:
    """WMMR sample weights ``exp(-alpha * m)`` with ``m`` the Definition 2.2 margin.

    Zeng et al., "Are Adversarial Examples Created Equal? A Learnable Weighted Minimax Risk
    for Robustness under Non-uniform Attacks", AAAI 2021 (``paper.md`` §3):
    ``m = p_y - max_{t != y} p_t`` (``margins.probability_margin``), so weights lie in
    ``[exp(-|alpha|), exp(|alpha|)]``. Not normalised over the batch.

    Args:
        y: Integer labels, shape (n,).
        logits: Logits, shape (n, K) (adversarial or clean, as the method chooses).
        alpha: Finite number, the temperature of the exponential.

    Returns:
        Tensor of shape (n,), float32 (float64 for float64 logits), with no gradient
        (``stop_gradient``).
    """
    alpha = check_finite(alpha, "alpha")
    return tf.stop_gradient(tf.exp(-alpha * probability_margin(y, logits)))
