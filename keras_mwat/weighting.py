"""Sample-weight normalisation over the global batch.

Weights multiply per-sample losses. ``normalize`` rescales them over the *global* batch
(all replicas under ``tf.distribute``), so that training on two replicas equals training on
one. The heuristic weightings of the peer methods (MAIL, GAIRAT, WMMR) live here too.
"""

from __future__ import annotations

import tensorflow as tf

from keras_mwat.losses import at_least_float32
from keras_mwat.validation import check_choice

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
