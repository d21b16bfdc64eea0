"""Per-sample losses, taking logits.

Every function takes integer labels ``y`` of shape (n,) and logits of shape (n, K) (never
probabilities) and returns a tensor of shape (n,). Half-precision logits are cast to float32
first, so the functions are safe under mixed precision (float64 stays float64). All of them
work eagerly, inside ``tf.function`` and under XLA (``jit_compile=True``).

The training losses of the peer methods (``trades``, ``mart``, their ``kl`` term) and the
attack objectives (``cw_margin``, ``dlr``) follow the formulas of docs ``paper.md`` §3; each
docstring states the formula and the constants. Attack objectives are to be *maximised*.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from keras_mwat.validation import check_nonnegative

#: MART's constant in the boosted cross-entropy ``-log(1.0001 - p_adv[y'])``.
MART_BOOST_CONSTANT = 1.0001
#: AutoAttack's constant in the DLR denominators.
DLR_EPSILON = 1e-12


def at_least_float32(values) -> tf.Tensor:
    """Casts half-precision values to float32; float32 and float64 pass unchanged."""
    values = tf.convert_to_tensor(values)
    if values.dtype in (tf.float16, tf.bfloat16) or not values.dtype.is_floating:
        return tf.cast(values, tf.float32)
    return values


def _as_labels(y) -> tf.Tensor:
    return tf.cast(tf.reshape(y, [-1]), tf.int32)


@keras.saving.register_keras_serializable(package="keras_mwat")
def cross_entropy(y, logits) -> tf.Tensor:
    """Per-sample softmax cross-entropy ``-log softmax(logits)[y]``.

    Args:
        y: Integer labels, shape (n,).
        logits: Logits, shape (n, K).

    Returns:
        Float32 tensor of shape (n,).
    """
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=_as_labels(y), logits=at_least_float32(logits)
    )


def _promote(*tensors) -> list[tf.Tensor]:
    """Casts logits to at least float32 and to one common dtype (float64 if any is)."""
    tensors = [at_least_float32(t) for t in tensors]
    dtype = tf.float64 if any(t.dtype == tf.float64 for t in tensors) else tf.float32
    return [tf.cast(t, dtype) for t in tensors]


def _one_hot(labels, logits) -> tf.Tensor:
    return tf.one_hot(_as_labels(labels), tf.shape(logits)[-1], dtype=logits.dtype)


def _pick(values, one_hot) -> tf.Tensor:
    """``values[i, c_i]`` for the class ``c_i`` marked in ``one_hot`` (broadcasts)."""
    return tf.reduce_sum(values * one_hot, axis=-1)


def _best_other(values, one_hot) -> tf.Tensor:
    """``max_{j != c_i} values[i, j]``, the largest entry outside the marked class."""
    masked = tf.where(one_hot > 0, tf.cast(values.dtype.min, values.dtype), values)
    return tf.reduce_max(masked, axis=-1)


def _probability_outside(log_probs, one_hot) -> tf.Tensor:
    """``1 - p[c_i]`` computed as ``sum_{j != c_i} p_j``: accurate when ``p[c_i]`` is near 1."""
    return tf.reduce_sum(tf.exp(log_probs) * (1.0 - one_hot), axis=-1)


def _num_classes_at_least(logits, minimum: int, what: str) -> None:
    num_classes = logits.shape[-1]
    if num_classes is not None and num_classes < minimum:
        raise ValueError(
            f"{what} needs logits with at least {minimum} classes, got `logits` of shape "
            f"{tuple(logits.shape)} ({num_classes} classes)."
        )


def kl(logits_clean, logits_adv) -> tf.Tensor:
    """Per-sample ``KL(p_clean || p_adv)``, summed over classes.

    ``KL_i = sum_j p_clean[i, j] * (log p_clean[i, j] - log p_adv[i, j])`` with
    ``p = softmax(logits)``, computed with ``log_softmax`` for stability. This is the
    TRADES / MART regulariser (Zhang et al., ICML 2019; Wang et al., ICLR 2020; see
    ``paper.md`` §3); the TRADES reference computes it as ``KLDivLoss(reduction="sum")`` of
    ``log_softmax(adv)`` against ``softmax(clean)``, which is the same quantity.

    Mathematically ``KL >= 0`` and ``kl(z, z) == 0`` exactly; for different inputs rounding
    can give values a few ulps below 0. They are deliberately not clipped, so that the
    gradient stays informative near ``logits_adv == logits_clean`` (the TRADES attack
    starts there). Gradients flow to both arguments.

    Args:
        logits_clean: Logits on clean inputs, shape (n, K).
        logits_adv: Logits on adversarial inputs, shape (n, K).

    Returns:
        Tensor of shape (n,), float32 (float64 if either input is float64).
    """
    logits_clean, logits_adv = _promote(logits_clean, logits_adv)
    log_p_clean = tf.nn.log_softmax(logits_clean)
    log_p_adv = tf.nn.log_softmax(logits_adv)
    return tf.reduce_sum(tf.exp(log_p_clean) * (log_p_clean - log_p_adv), axis=-1)


def trades(y, logits_clean, logits_adv, beta: float = 6.0) -> tf.Tensor:
    """Per-sample TRADES loss ``CE(f(x), y) + beta * KL(p_clean || p_adv)``.

    TRADES (Zhang et al., "Theoretically Principled Trade-off between Robustness and
    Accuracy", ICML 2019; ``paper.md`` §3): the batch loss ``CE(f(x), y) + beta (1/n)
    sum_i KL_i`` is the mean of this per-sample loss. ``beta = 6`` is the paper's setting
    for CIFAR-10.

    Args:
        y: Integer labels, shape (n,).
        logits_clean: Logits on clean inputs, shape (n, K).
        logits_adv: Logits on adversarial inputs, shape (n, K).
        beta: Weight of the KL term, a finite number >= 0.

    Returns:
        Tensor of shape (n,), float32 (float64 if either input is float64).
    """
    beta = check_nonnegative(beta, "beta")
    logits_clean, logits_adv = _promote(logits_clean, logits_adv)
    return cross_entropy(y, logits_clean) + beta * kl(logits_clean, logits_adv)


def mart(y, logits_clean, logits_adv, beta: float = 6.0) -> tf.Tensor:
    """Per-sample MART loss: boosted CE on ``x_adv`` plus a misclassification-aware KL.

    MART (Wang et al., "Improving Adversarial Robustness Requires Revisiting Misclassified
    Examples", ICLR 2020; ``paper.md`` §3)::

        loss_i = CE(f(x_adv_i), y_i) - log(1.0001 - p_adv,i[y'_i])
                 + beta * KL(p_nat,i || p_adv,i) * (1 - p_nat,i[y_i])

    with ``y'_i = argmax_{j != y_i} p_adv,i[j]`` the most likely wrong class on the
    adversarial input and KL summed over classes (``kl``). The batch loss is the mean of
    this per-sample loss. The constant 1.0001 keeps the log finite when ``p_adv[y'] = 1``
    (the term is then ``-log(1e-4) = 9.2103...``). Gradients flow through every term,
    including ``1 - p_nat[y]``, as in the reference.

    For accuracy near saturation, ``1.0001 - p`` is evaluated as ``1e-4 + sum_{j != y'} p_j``
    and ``1 - p_nat[y]`` as ``sum_{j != y} p_nat,j`` (equal in exact arithmetic). The MART
    reference adds ``1e-12`` inside its logs and uses ``1.0000001 - p_nat[y]``; these
    safeguards change values by less than ~1e-7 relative and are not reproduced, the KL uses
    ``log_softmax`` instead.

    Args:
        y: Integer labels, shape (n,).
        logits_clean: Logits on natural (clean) inputs, shape (n, K).
        logits_adv: Logits on adversarial inputs, shape (n, K).
        beta: Weight of the KL term, a finite number >= 0 (MART uses 5 or 6).

    Returns:
        Tensor of shape (n,), float32 (float64 if either input is float64).
    """
    beta = check_nonnegative(beta, "beta")
    logits_clean, logits_adv = _promote(logits_clean, logits_adv)
    one_hot_y = _one_hot(y, logits_adv)
    log_p_adv = tf.nn.log_softmax(logits_adv)
    # y': the most likely wrong class on x_adv (the same class for probabilities and logits).
    wrong_logits = tf.where(
        one_hot_y > 0, tf.cast(logits_adv.dtype.min, logits_adv.dtype), logits_adv
    )
    one_hot_wrong = tf.one_hot(
        tf.argmax(wrong_logits, axis=-1, output_type=tf.int32),
        tf.shape(logits_adv)[-1],
        dtype=logits_adv.dtype,
    )
    # 1.0001 - p = (1.0001 - 1) + (1 - p); the offset is computed in float64 by Python.
    offset = MART_BOOST_CONSTANT - 1.0
    boost = -tf.math.log(offset + _probability_outside(log_p_adv, one_hot_wrong))
    log_p_nat = tf.nn.log_softmax(logits_clean)
    not_true = _probability_outside(log_p_nat, one_hot_y)
    return cross_entropy(y, logits_adv) + boost + beta * kl(logits_clean, logits_adv) * not_true


def cw_margin(y, logits) -> tf.Tensor:
    """Carlini-Wagner margin loss ``max_{j != y} z_j - z_y``, to be maximised by an attack.

    The (untargeted, confidence 0) margin of Carlini & Wagner, "Towards Evaluating the
    Robustness of Neural Networks", IEEE S&P 2017, on logits ``z``: positive exactly when
    the sample is misclassified. Invariant to adding a constant to all logits.

    Args:
        y: Integer labels, shape (n,).
        logits: Logits, shape (n, K), K >= 2.

    Returns:
        Tensor of shape (n,), float32 (float64 for float64 logits).
    """
    logits = at_least_float32(logits)
    _num_classes_at_least(logits, 2, "cw_margin")
    one_hot_y = _one_hot(y, logits)
    return _best_other(logits, one_hot_y) - _pick(logits, one_hot_y)


def dlr(y, logits, target=None) -> tf.Tensor:
    """AutoAttack's Difference of Logits Ratio loss, to be maximised by an attack.

    Croce & Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of
    Diverse Parameter-free Attacks", ICML 2020. With ``z`` the logits and ``pi`` the
    classes sorted by decreasing logit (``z_pi1 >= z_pi2 >= ...``):

    - untargeted (``target=None``, APGD-DLR):
      ``-(z_y - max_{j != y} z_j) / (z_pi1 - z_pi3 + 1e-12)``, needs K >= 3;
    - targeted (APGD-T): ``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12)`` with
      ``t = target``, needs K >= 4.

    Both are invariant to adding a constant to all logits and (up to the 1e-12) to scaling
    them by a positive constant.

    Args:
        y: Integer labels, shape (n,).
        logits: Logits, shape (n, K).
        target: None (untargeted) or integer target classes, shape (n,).

    Returns:
        Tensor of shape (n,), float32 (float64 for float64 logits).

    Raises:
        ValueError: If the number of classes is statically known and too small (< 3
            untargeted, < 4 targeted). With an unknown class dimension the check happens
            at run time (``tf.math.top_k`` fails).
    """
    logits = at_least_float32(logits)
    one_hot_y = _one_hot(y, logits)
    true_logit = _pick(logits, one_hot_y)
    if target is None:
        _num_classes_at_least(logits, 3, "dlr (untargeted)")
        top = tf.math.top_k(logits, k=3, sorted=True).values
        scale = top[:, 0] - top[:, 2] + DLR_EPSILON
        return -(true_logit - _best_other(logits, one_hot_y)) / scale
    _num_classes_at_least(logits, 4, "dlr (targeted)")
    top = tf.math.top_k(logits, k=4, sorted=True).values
    scale = top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_EPSILON
    target_logit = _pick(logits, _one_hot(target, logits))
    return -(true_logit - target_logit) / scale
