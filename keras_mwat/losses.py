"""Per-sample losses, taking logits.

Every function takes integer labels ``y`` of shape (n,) and logits of shape (n, K) (never
probabilities) and returns a tensor of shape (n,). Half-precision logits are cast to float32
first, so the functions are safe under mixed precision (float64 stays float64).
"""

from __future__ import annotations

import tensorflow as tf


def at_least_float32(values) -> tf.Tensor:
    """Casts half-precision values to float32; float32 and float64 pass unchanged."""
    values = tf.convert_to_tensor(values)
    if values.dtype in (tf.float16, tf.bfloat16) or not values.dtype.is_floating:
        return tf.cast(values, tf.float32)
    return values


def _as_labels(y) -> tf.Tensor:
    return tf.cast(tf.reshape(y, [-1]), tf.int32)


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
