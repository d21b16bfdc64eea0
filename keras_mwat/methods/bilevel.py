"""The look-ahead (virtual) step and its hypergradient: the only nested-tape code.

For classifier values θ, per-sample losses ``l_i(θ)`` recorded on a persistent ``tape`` and
loss coefficients ``c_i(φ)`` from the weight network,

    θ'(φ) = θ − α · Σ_i c_i(φ) ∇_θ l_i(θ)          (the virtual SGD step)
    dL_meta(θ'(φ))/dφ                              (the hypergradient)

The inner gradient is the backward pass of the recorded losses with ``c`` as output
gradient, itself recorded by an outer tape, so the forward pass on the training batch is
computed once and shared with the real step. Under ``tf.distribute`` the inner gradient is
summed over replicas, so the virtual step is the one a single device would take.

Under mixed precision both gradients go through loss scaling: the inner gradient is taken
of the losses times ``inner_loss_scale`` (the classifier optimizer's scale) and divided by it
in float32, and the hypergradient is that of ``scale_meta_loss(meta_loss)`` (the weight
network's optimizer unscales it in ``apply``).
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
    inner_loss_scale=None,
    scale_meta_loss: Callable[[tf.Tensor], tf.Tensor] | None = None,
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
        inner_loss_scale: Optional float32 scalar multiplying the inner gradient's output
            gradients (mixed precision); the gradient is divided by it before the step.
        scale_meta_loss: Optional function applied to the meta loss before differentiation
            (an optimizer's ``scale_loss``).

    Returns:
        ``(meta_loss, hypergradients)``, the latter aligned with ``variables`` and taken of
        ``scale_meta_loss(meta_loss)``; ``meta_loss`` itself is unscaled.
    """
    with tf.GradientTape() as outer:
        targets, output_gradients = loss_targets()
        if inner_loss_scale is not None:
            output_gradients = [g * tf.cast(inner_loss_scale, g.dtype)
                                for g in output_gradients]
        gradients = tape.gradient(targets, list(theta), output_gradients=output_gradients)
        if inner_loss_scale is not None:
            gradients = [None if g is None else g / tf.cast(inner_loss_scale, g.dtype)
                         for g in gradients]
        inner_lr = tf.cast(inner_lr, tf.float32)
        theta_prime = [
            value if grad is None
            else value - tf.cast(inner_lr, value.dtype) * global_sum(grad)
            for value, grad in zip(theta, gradients)
        ]
        meta_loss = meta_loss_fn(theta_prime)
        scaled = meta_loss if scale_meta_loss is None else scale_meta_loss(meta_loss)
    hypergradients = outer.gradient(scaled, list(variables))
    return meta_loss, hypergradients
