"""Margins of a classifier's prediction, the inputs of the weight network.

All functions take integer labels ``y`` of shape (n,) and logits of shape (n, K) and work in
float32. ``probability_margin`` is Definition 2.2 of Holtz, Weng & Mishne (2022) (the margin of
Zeng et al., also used by MAIL); ``multiclass_margin`` is the paper's Definition 3, the
*multi-class margin* that BiLAW's weight network reads: the K-vector ``p_y - p_j``.
``multiclass_onehot_margin`` (that vector with ``one_hot(y)`` appended), ``sorted_margin`` and
``logit_margin`` are this library's own variants, kept as options.
"""

from __future__ import annotations

import tensorflow as tf

from keras_mwat.losses import at_least_float32
from keras_mwat.validation import check_choice

MARGIN_KINDS = ("multiclass", "multiclass_onehot", "scalar", "sorted", "logit")


def _prepare(y, logits):
    logits = at_least_float32(logits)
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    one_hot = tf.one_hot(y, tf.shape(logits)[-1], dtype=logits.dtype)
    return y, logits, one_hot


def _true_minus_others(values, one_hot):
    """``v_y - v_j`` for every class j (entry y is 0), shape (n, K)."""
    true_value = tf.reduce_sum(values * one_hot, axis=-1, keepdims=True)
    return true_value - values


def probability_margin(y, logits) -> tf.Tensor:
    """Definition 2.2: ``p_y(x) - max_{t != y} p_t(x)`` with ``p = softmax(logits)``.

    Args:
        y: Integer labels, shape (n,).
        logits: Logits, shape (n, K).

    Returns:
        Float32 tensor of shape (n,), in [-1, 1]; positive when the sample is classified
        correctly.
    """
    y, logits, one_hot = _prepare(y, logits)
    probs = tf.nn.softmax(logits)
    true_prob = tf.reduce_sum(probs * one_hot, axis=-1)
    best_other = tf.reduce_max(probs - 2.0 * one_hot, axis=-1)
    return true_prob - best_other


def multiclass_margin(y, logits) -> tf.Tensor:
    """The paper's multi-class margin (Definition 3): ``p_y - p_j`` for every class j.

    With ``p = softmax(logits)``, a K-vector per sample in class-index order; entry y is
    exactly 0 (so the class is implicit in which entry is zero), every entry is in
    [-1, 1]. BiLAW computes it on the *clean* input with the current classifier.

    Args:
        y: Integer labels, shape (n,).
        logits: Logits, shape (n, K).

    Returns:
        Float32 tensor of shape (n, K).
    """
    y, logits, one_hot = _prepare(y, logits)
    margins = _true_minus_others(tf.nn.softmax(logits), one_hot)
    # The true class's entry is exactly zero (p_y - p_y can round to +-1 ulp otherwise).
    return margins * (1.0 - one_hot)


def multiclass_onehot_margin(y, logits) -> tf.Tensor:
    """``multiclass_margin`` with ``one_hot(y)`` appended (this library's earlier default).

    Returns:
        Float32 tensor of shape (n, 2K).
    """
    y, logits, one_hot = _prepare(y, logits)
    return tf.concat([multiclass_margin(y, logits), one_hot], axis=-1)


def sorted_margin(y, logits) -> tf.Tensor:
    """Class-agnostic multi-class margins: ``p_y - p_j`` over the wrong classes, ascending.

    The first entry is the Definition 2.2 margin (against the strongest wrong class).

    Returns:
        Float32 tensor of shape (n, K - 1).
    """
    y, logits, one_hot = _prepare(y, logits)
    margins = _true_minus_others(tf.nn.softmax(logits), one_hot)
    # Push the true class's own (zero) entry to the end, then drop it.
    masked = margins + 3.0 * one_hot
    return tf.sort(masked, axis=-1)[:, :-1]


def logit_margin(y, logits) -> tf.Tensor:
    """Class-conditioned logit margins ``z_y - z_j`` for every class j, with ``one_hot(y)``.

    Returns:
        Float32 tensor of shape (n, 2K).
    """
    y, logits, one_hot = _prepare(y, logits)
    return tf.concat([_true_minus_others(logits, one_hot), one_hot], axis=-1)


def margin_features(kind: str, y, logits) -> tf.Tensor:
    """Margin features of the given ``kind``, shape (n, feature_dim(kind, K)).

    Args:
        kind: One of "multiclass" (the paper's K-vector), "multiclass_onehot" (with
            ``one_hot(y)``), "scalar" (Definition 2.2, as a column), "sorted", "logit".
        y: Integer labels, shape (n,).
        logits: Logits, shape (n, K).
    """
    check_choice(kind, "margin", MARGIN_KINDS)
    if kind == "scalar":
        return probability_margin(y, logits)[:, None]
    if kind == "sorted":
        return sorted_margin(y, logits)
    if kind == "logit":
        return logit_margin(y, logits)
    if kind == "multiclass_onehot":
        return multiclass_onehot_margin(y, logits)
    return multiclass_margin(y, logits)


def feature_dim(kind: str, num_classes: int) -> int:
    """Number of margin features of ``kind`` for ``num_classes`` classes."""
    check_choice(kind, "margin", MARGIN_KINDS)
    return {"multiclass": num_classes, "multiclass_onehot": 2 * num_classes, "scalar": 1, "sorted": num_classes - 1,
            "logit": 2 * num_classes}[kind]
