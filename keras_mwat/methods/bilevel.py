"""The look-ahead (virtual) step and its hypergradient: the only nested-tape code.

For classifier values θ, per-sample losses ``l_i(θ)`` recorded on a persistent ``tape`` and
loss coefficients ``c_i(φ)`` from the weight network,

    θ'(φ) = θ − α · Σ_i c_i(φ) ∇_θ l_i(θ)          (the virtual SGD step)
    dL_meta(θ'(φ))/dφ                              (the hypergradient)

The hypergradient is evaluated in three phases:

1. the inner gradient is the backward pass of the recorded losses with ``c`` as output
   gradient, itself recorded by an outer tape (the forward pass on the training batch is
   computed once and shared with the real step);
2. ``v = ∇_θ' L_meta``: the meta loss is a sum of terms (e.g. the adversarial and the clean
   cross-entropy), each differentiated on its own tape, one after the other (a term's
   forward pass waits for the previous term's gradient), so that only one term's
   activations are alive at a time;
3. the outer tape's backward pass with ``v`` as output gradient. Since ``c`` enters the inner
   gradient linearly, this computes ``dL/dc_i = −α ⟨v, ∇_θ l_i(θ)⟩`` for all i at once (the
   reverse-over-reverse "double-backward" form of the Jacobian-vector product ``J v``),
   then the backward pass through the weight network and the weight normalisation.

Phases 2 and 3 together equal one reverse pass of ``L_meta(θ'(φ))`` (same value, same
operations); the split only bounds the memory. Two other modes of ``virtual_step``
compute the same ``J v`` after a plain (unrecorded) inner backward pass:
``mode="low_memory"`` (``MWATModel``'s default) by the double backward of a second backward
pass, taken after the look-ahead pass, so that the inner backward's intermediates and the
look-ahead's activations are never alive at once (in a graph the second pass's values are
never needed, so it costs no more than ``"reverse"``); ``mode="forward"`` by
forward mode (a ``ForwardAccumulator`` over a recomputed forward pass; slower on CPU, kept
as a cross-check). docs/benchmarks.md measures all three.

Under ``tf.distribute`` the inner gradient is summed over replicas, so the virtual step is
the one a single device would take; the backward pass of that all-reduce sums ``v`` over
replicas, so every replica's hypergradient is that of the global meta loss through its own
samples' coefficients.

Under mixed precision both gradients go through loss scaling: the inner gradient is taken
of the losses times ``inner_loss_scale`` (the classifier optimizer's scale) and divided by it
in float32, and the hypergradient is that of ``scale_meta_loss(meta_loss)`` (the weight
network's optimizer unscales it in ``apply``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

from keras_mwat.weighting import global_sum

MetaLoss = Callable[[list], tf.Tensor] | Sequence[Callable[[list], tf.Tensor]]


def _inner_step(tape, theta, targets, output_gradients, inner_lr, inner_loss_scale):
    """θ' = θ − α · Σ_replicas Σ_i c_i ∇_θ l_i, with ``c`` the output gradients."""
    if inner_loss_scale is not None:
        output_gradients = [g * tf.cast(inner_loss_scale, g.dtype) for g in output_gradients]
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
    return theta_prime, [g is not None for g in gradients]


def meta_gradient(theta_prime: Sequence[tf.Tensor], meta_loss_fn: MetaLoss,
                  scale_meta_loss: Callable[[tf.Tensor], tf.Tensor] | None = None):
    """The meta loss at θ' and the gradient of its scaled value w.r.t. θ'.

    Args:
        theta_prime: The virtual classifier values.
        meta_loss_fn: A function of θ' returning the scalar meta loss, or a sequence of
            such functions whose sum is the meta loss; the terms are evaluated and
            differentiated one after the other.
        scale_meta_loss: Optional (linear) loss scaling applied to each term.

    Returns:
        ``(meta_loss, directions)``: the unscaled meta loss and ``∇_θ' scale(meta_loss)``,
        one tensor per entry of ``theta_prime`` (zeros where unconnected).
    """
    terms = [meta_loss_fn] if callable(meta_loss_fn) else list(meta_loss_fn)
    if not terms:
        raise ValueError("`meta_loss_fn` must be a function or a non-empty sequence of them.")
    theta_prime = list(theta_prime)
    meta_loss, directions = None, None
    for term in terms:
        # In a graph, the term's forward pass starts once the previous gradient exists.
        with tf.control_dependencies(directions or []):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                tape.watch(theta_prime)
                loss = term(theta_prime)
                scaled = loss if scale_meta_loss is None else scale_meta_loss(loss)
        gradients = tape.gradient(scaled, theta_prime,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
        if directions is None:
            meta_loss, directions = loss, gradients
        else:
            meta_loss = meta_loss + loss
            directions = [a + b for a, b in zip(directions, gradients)]
    return meta_loss, directions


#: How ``virtual_step`` evaluates ``J v`` (all give the same value; docs/benchmarks.md).
HYPERGRADIENT_MODES = ("reverse", "low_memory", "forward")


def virtual_step(
    tape: tf.GradientTape,
    theta: Sequence[tf.Tensor],
    loss_targets: Callable[[], tuple[list, list]],
    inner_lr,
    meta_loss_fn: MetaLoss,
    variables: Sequence,
    inner_loss_scale=None,
    scale_meta_loss: Callable[[tf.Tensor], tf.Tensor] | None = None,
    mode: str = "low_memory",
    losses_at: Callable[[list], list] | None = None,
):
    """Takes the virtual step and returns the meta loss and its gradient w.r.t. ``variables``.

    Args:
        tape: A persistent tape that recorded the per-sample losses as functions of ``theta``.
        theta: The classifier's trainable values (tensors watched by ``tape``).
        loss_targets: Called under the outer tape; returns ``(targets, output_gradients)``:
            the recorded per-sample loss tensors and their coefficients, which depend on
            ``variables`` (the weight network's).
        inner_lr: Step size α of the virtual step (scalar).
        meta_loss_fn: Maps the virtual values θ' to the scalar meta loss; or a sequence of
            such functions whose sum is the meta loss (differentiated one after the other,
            which bounds the memory to one term's activations).
        variables: The weight network's trainable variables.
        inner_loss_scale: Optional float32 scalar multiplying the inner gradient's output
            gradients (mixed precision); the gradient is divided by it before the step.
        scale_meta_loss: Optional function applied to the meta loss before differentiation
            (an optimizer's ``scale_loss``; it must be linear, as loss scaling is).
        mode: How ``J v`` is evaluated, all to the same value (default ``"low_memory"``,
            as ``MWATModel``'s):
            ``"reverse"``: the inner gradient is recorded by an outer tape, whose backward
            pass is ``J v`` (the inner backward's intermediates stay alive through the
            look-ahead pass).
            ``"low_memory"``: the inner gradient is a plain backward pass, and ``J v`` is
            the double backward of a second backward pass of the recorded losses, taken
            after the look-ahead pass, so that the look-ahead's activations and the inner
            backward's intermediates are never alive at once. In a graph this costs no
            more than ``"reverse"``: ``J v`` is linear in that second pass's output
            gradients, so its values are never needed and the graph optimiser drops it
            (measured: same step time, less peak memory; docs/benchmarks.md).
            ``"forward"``: a plain inner backward, then one forward-mode JVP of the losses
            recomputed at θ by ``losses_at`` (one forward pass more; slower on CPU).
        losses_at: ``mode="forward"`` only: maps values θ to the loss targets (the same
            list, in the same order, as ``loss_targets`` returns), recomputed.

    Returns:
        ``(meta_loss, hypergradients)``, the latter aligned with ``variables`` and taken of
        ``scale_meta_loss(meta_loss)``; ``meta_loss`` itself is unscaled.
    """
    if mode not in HYPERGRADIENT_MODES:
        raise ValueError(f"`mode` must be one of {HYPERGRADIENT_MODES}, got {mode!r}.")
    if mode == "forward" and losses_at is None:
        raise ValueError('`losses_at` is needed with mode="forward".')
    if mode == "reverse":
        with tf.GradientTape() as outer:
            targets, output_gradients = loss_targets()
            theta_prime, connected = _inner_step(tape, theta, targets, output_gradients,
                                                 inner_lr, inner_loss_scale)
        meta_loss, directions = meta_gradient(theta_prime, meta_loss_fn, scale_meta_loss)
        pairs = [(value, direction) for value, direction, linked
                 in zip(theta_prime, directions, connected) if linked]
        hypergradients = outer.gradient([value for value, _ in pairs], list(variables),
                                        output_gradients=[direction for _, direction in pairs])
        return meta_loss, hypergradients

    # dL/dc_i = −α ⟨v, ∇_θ l_i⟩ = −α (J v)_i, pulled back through the weight network.
    with tf.GradientTape() as weights_tape:
        targets, output_gradients = loss_targets()
    constants = [tf.stop_gradient(g) for g in output_gradients]
    meta_loss, directions = _look_ahead(tape, theta, targets, constants, inner_lr,
                                        meta_loss_fn, inner_loss_scale, scale_meta_loss)
    if mode == "forward":
        with tf.autodiff.ForwardAccumulator(list(theta), directions) as accumulator:
            recomputed = losses_at(list(theta))
        products = [accumulator.jvp(target, unconnected_gradients=tf.UnconnectedGradients.ZERO)
                    for target in recomputed]
    else:
        products = _products_by_double_backward(tape, theta, targets, directions,
                                                inner_loss_scale)
    cotangents = [-tf.cast(inner_lr, c.dtype) * tf.cast(p, c.dtype)
                  for c, p in zip(output_gradients, products)]
    hypergradients = weights_tape.gradient(list(output_gradients), list(variables),
                                           output_gradients=cotangents)
    return meta_loss, hypergradients


def _look_ahead(tape, theta, targets, coefficients, inner_lr, meta_loss_fn, inner_loss_scale,
                scale_meta_loss):
    """The virtual step with constant coefficients; (meta loss, global ``v = ∇_θ' L_meta``)."""
    theta_prime, connected = _inner_step(tape, theta, targets, coefficients, inner_lr,
                                         inner_loss_scale)
    meta_loss, directions = meta_gradient(theta_prime, meta_loss_fn, scale_meta_loss)
    # The backward pass of the global sum in θ': every replica pulls back the global v.
    directions = [global_sum(d) if linked else tf.zeros_like(d)
                  for d, linked in zip(directions, connected)]
    return meta_loss, directions


def gradient_alignment(
    tape: tf.GradientTape,
    theta: Sequence[tf.Tensor],
    targets: Sequence[tf.Tensor],
    coefficients: Sequence[tf.Tensor],
    inner_lr,
    meta_loss_fn: MetaLoss,
    inner_loss_scale=None,
):
    """Per-sample alignment ``<∇_θ' L_meta(θ'), ∇_θ l_i(θ)>`` after a virtual step.

    The non-parametric reweighting of the paper (after learning-to-reweight, Ren et al.
    2018): the virtual step ``θ' = θ − α Σ_i c_i ∇_θ l_i`` is taken with the given,
    constant coefficients; ``v = ∇_θ' L_meta(θ')`` (summed over replicas); and for every
    recorded per-sample loss the inner product of its gradient at θ with ``v``, all at once
    by the same double backward pass as ``virtual_step(mode="low_memory")``. A positive
    value means that a step on sample i lowers the meta loss. Under mixed precision the
    meta loss is scaled by ``inner_loss_scale`` too and the products unscaled.

    Args:
        tape: A persistent tape that recorded ``targets`` as functions of ``theta``.
        theta: The classifier's trainable values (watched by ``tape``).
        targets: The recorded per-sample loss tensors.
        coefficients: Their constant coefficients in the virtual step (same shapes).
        inner_lr: Step size α of the virtual step.
        meta_loss_fn: The meta loss of θ' (a function or a sequence of terms).
        inner_loss_scale: Optional float32 loss scale (mixed precision).

    Returns:
        ``(meta_loss, products)``: the meta loss at θ' and one tensor of per-sample inner
        products per entry of ``targets``.
    """
    coefficients = [tf.stop_gradient(c) for c in coefficients]
    scale = None
    if inner_loss_scale is not None:
        scale = lambda loss: loss * tf.cast(inner_loss_scale, loss.dtype)  # noqa: E731
    meta_loss, directions = _look_ahead(tape, theta, targets, coefficients, inner_lr,
                                        meta_loss_fn, inner_loss_scale, scale)
    products = _products_by_double_backward(tape, theta, targets, directions,
                                            inner_loss_scale)
    if inner_loss_scale is not None:
        products = [p / tf.cast(inner_loss_scale, p.dtype) for p in products]
    return meta_loss, products


def _products_by_double_backward(tape, theta, targets, directions, inner_loss_scale):
    """``J v``: the gradient w.r.t. ``u`` of ``<v, Σ_i u_i ∇_θ l_i>``, at any ``u``.

    The backward pass of the recorded losses with dummy output gradients ``u`` (zeros:
    it is linear in ``u``) is recorded by a tape and differentiated back to ``u``. The
    dummies and every use of ``v`` wait for all of ``v``, so none of this starts before
    the look-ahead's backward pass has finished (and freed its activations).
    """
    with tf.control_dependencies(list(directions)):
        directions = [tf.identity(d) for d in directions]
        dummies = [tf.zeros_like(t) for t in targets]
    with tf.GradientTape(watch_accessed_variables=False) as dual:
        dual.watch(dummies)
        scaled = dummies if inner_loss_scale is None else [
            d * tf.cast(inner_loss_scale, d.dtype) for d in dummies]
        gradients = tape.gradient(targets, list(theta), output_gradients=scaled)
        products = [tf.reduce_sum(g * tf.cast(v, g.dtype))
                    for g, v in zip(gradients, directions) if g is not None]
        if not products:  # no classifier value reaches the losses: J v = 0
            return [tf.zeros_like(d) for d in dummies]
        inner = tf.add_n(products)
        if inner_loss_scale is not None:
            inner = inner / tf.cast(inner_loss_scale, inner.dtype)
    return dual.gradient(inner, dummies, unconnected_gradients=tf.UnconnectedGradients.ZERO)
