"""The look-ahead (virtual) step and its hypergradient: the only nested-tape code.

For classifier values θ, per-sample losses ``l_i(θ)`` recorded on a persistent ``tape`` and
loss coefficients ``c_i(φ)`` from the weight network,

    θ'(φ) = θ − α · Σ_i c_i(φ) ∇_θ l_i(θ)          (the virtual SGD step)
    dL_meta(θ'(φ))/dφ                              (the hypergradient)

The inner gradient is the backward pass of the recorded losses with ``c`` as output
gradient, itself recorded by an outer tape, so the forward pass on the training batch is
computed once and shared with the real step. Under ``tf.distribute`` the inner gradient is
summed over replicas, so the virtual step is the one a single device would take.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from keras_mwat.weighting import global_sum


def virtual_step(
    tape: tf.GradientTape,
    theta: Sequence[tf.Tensor],
    loss_targets: Callable[[], tuple[list, list]],
    inner_lr,
    meta_loss_fn: Callable[[list], tf.Tensor],
    variables: Sequence,
):
    """Takes the virtual step and returns the meta loss and its gradient w.r.t. ``variables``.

    Args:
        tape: A persistent tape that recorded the per-sample losses as functions of ``theta``.
        theta: The classifier's trainable values (tensors watched by ``tape``).
        loss_targets: Called under the outer tape; returns ``(targets, output_gradients)``:
            the recorded per-sample loss tensors and their coefficients, which depend on
            ``variables`` (the weight network's).
        inner_lr: Step size α of the virtual step (scalar).
        meta_loss_fn: Maps the virtual values θ' to the scalar meta loss.
        variables: The weight network's trainable variables.

    Returns:
        ``(meta_loss, hypergradients)``, the latter aligned with ``variables``.
    """
    with tf.GradientTape() as outer:
        targets, output_gradients = loss_targets()
        gradients = tape.gradient(targets, list(theta), output_gradients=output_gradients)
        inner_lr = tf.cast(inner_lr, tf.float32)
        theta_prime = [
            value if grad is None
            else value - tf.cast(inner_lr, value.dtype) * global_sum(grad)
            for value, grad in zip(theta, gradients)
        ]
        meta_loss = meta_loss_fn(theta_prime)
    hypergradients = outer.gradient(meta_loss, list(variables))
    return meta_loss, hypergradients
