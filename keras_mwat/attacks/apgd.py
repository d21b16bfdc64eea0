"""Auto-PGD (APGD), as a pure TensorFlow function: AutoAttack's APGD-CE and APGD-T.

Paper: Croce & Hein, "Reliable Evaluation of Adversarial Robustness with an Ensemble of
Diverse Parameter-free Attacks" (ICML 2020), Algorithm 1. The schedule follows the
published algorithm and AutoAttack's reference implementation, so that numbers are
comparable with AutoAttack's:

* start at ``x + delta`` with ``||delta|| = eps`` (see ``primitives.boundary_start``);
* step size ``2 eps`` per sample; the first step has no momentum, later steps use momentum
  ``0.75``: ``x <- P(x + 0.75 (z - x) + 0.25 (x - x_prev))`` with
  ``z = P(x + step * direction(grad))``;
* checkpoints after ``p_1 = ceil(0.22 N)`` iterations, then at intervals that shrink by
  ``ceil(0.03 N)`` down to ``ceil(0.06 N)`` (integer parts as in the reference code). At a
  checkpoint, a sample halves its step size and restarts from its best point when (1) the
  loss increased in at most ``rho = 0.75`` of the iterations since the last checkpoint, or
  (2) its step size was not halved at the last checkpoint and its best loss has not improved
  since;
* the per-sample best point (highest loss) and the first misclassified point are kept.

Losses: ``"ce"`` (cross-entropy) and ``"dlr"`` (difference of logits ratio). Targeted runs
(``targeted=True``, APGD-T) attack, in turn, the ``num_target_classes`` classes with the
highest clean logits after the top one, maximising the targeted DLR loss (or ``-CE`` of the
target for ``loss="ce"``). Restarts and targets run only while some sample is still
classified correctly, and each run attacks only those samples (as AutoAttack does).

Threat model: white-box, L-infinity or L2 perturbations of radius ``eps``; adversarial
inputs stay in ``value_range`` (``(0.0, 1.0)`` by default; None for no box). The iterations
are a ``tf.while_loop``, fully vectorised over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

from keras_mwat import losses
from keras_mwat.attacks import primitives
from keras_mwat.attacks.pgd import _class_indices

#: Momentum of APGD's update.
MOMENTUM = 0.75
#: Initial step size, in units of ``eps``.
INITIAL_STEP = 2.0
LOSSES = ("ce", "dlr")


def checkpoint_schedule(num_steps: int) -> tuple[int, int, int]:
    """APGD's ``(first interval, interval decrease, minimum interval)`` for ``num_steps``.

    As in AutoAttack: ``max(int(0.22 N), 1)``, ``max(int(0.03 N), 1)``,
    ``max(int(0.06 N), 1)``; for ``N = 100`` that is ``(22, 3, 6)``, giving checkpoints at
    iterations 22, 41, 57, 70, 80, 87, 93, 99 (counted from 1).

    Example:

    ```python
    checkpoint_schedule(100)  # (22, 3, 6)
    ```
    """
    return max(int(0.22 * num_steps), 1), max(int(0.03 * num_steps), 1), max(
        int(0.06 * num_steps), 1
    )


def _objective(loss: str, targeted: bool) -> Callable:
    """``objective(labels, logits, target)``: the per-sample loss APGD maximises."""
    if loss == "ce":
        if targeted:
            return lambda labels, logits, target: -losses.cross_entropy(target, logits)
        return lambda labels, logits, target: losses.cross_entropy(labels, logits)
    if loss == "dlr":
        if targeted:
            return lambda labels, logits, target: losses.dlr(labels, logits, target=target)
        return lambda labels, logits, target: losses.dlr(labels, logits)
    raise ValueError(f"`loss` must be one of {list(LOSSES)}, got loss={loss!r}.")


def _apgd_run(model_fn, objective, x, labels, target, start, *, eps, num_steps, norm, rho,
              value_range):
    """One APGD run from ``start``; returns ``(x_out, loss_best, fooled)``.

    ``x_out`` is, per sample, the first misclassified iterate if there was one, else the
    iterate of highest loss.
    """
    first, decrease, minimum = checkpoint_schedule(num_steps)
    eps_t = primitives._scalar(eps, x.dtype)
    n = tf.shape(x)[0]

    def evaluate(x_adv):
        with tf.GradientTape() as tape:
            tape.watch(x_adv)
            logits = tf.cast(model_fn(x_adv), tf.float32)
            loss = tf.cast(objective(labels, logits, target), tf.float32)
            total = tf.reduce_sum(loss)
        grad = tape.gradient(total, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        correct = tf.equal(tf.argmax(logits, axis=-1), labels)
        return loss, grad, correct

    def feasible(point):
        return primitives.clip_to_range(x + primitives.project(point - x, eps_t, norm), value_range)

    loss0, grad0, correct0 = evaluate(start)
    step0 = tf.fill([n], tf.cast(INITIAL_STEP * eps, x.dtype))

    def body(i, x_adv, x_prev, grad, step, x_best, grad_best, loss_best, fooled, x_fooled,
             history, since_check, interval, best_at_check, reduced_at_check):
        momentum = tf.where(i > 0, tf.constant(MOMENTUM, x.dtype), tf.constant(1.0, x.dtype))
        stepped = feasible(
            x_adv + primitives.per_sample(step, x.shape.rank)
            * primitives.ascent_direction(grad, norm)
        )
        x_new = feasible(x_adv + momentum * (stepped - x_adv) + (1.0 - momentum) * (x_adv - x_prev))
        loss, grad_new, correct = evaluate(x_new)

        newly_fooled = tf.logical_and(tf.logical_not(correct), tf.logical_not(fooled))
        x_fooled = primitives.select(newly_fooled, x_new, x_fooled)
        fooled = tf.logical_or(fooled, tf.logical_not(correct))

        history = tf.tensor_scatter_nd_update(history, [[i]], loss[tf.newaxis])
        improved = loss > loss_best
        x_best = primitives.select(improved, x_new, x_best)
        grad_best = primitives.select(improved, grad_new, grad_best)
        loss_best = tf.where(improved, loss, loss_best)
        since_check = since_check + 1

        def checkpoint():
            # Loss increases over the last `interval` iterations, indices wrapping around
            # (before the first iterations the history holds zeros, as in the reference).
            back = tf.range(interval)
            later = tf.gather(history, tf.math.floormod(i - back, num_steps))
            earlier = tf.gather(history, tf.math.floormod(i - back - 1, num_steps))
            increases = tf.reduce_sum(tf.cast(later > earlier, tf.float32), axis=0)
            oscillating = increases <= tf.cast(interval, tf.float32) * rho
            stalled = tf.logical_and(tf.logical_not(reduced_at_check), best_at_check >= loss_best)
            reduce = tf.logical_or(oscillating, stalled)
            return (
                tf.where(reduce, step / 2.0, step),
                primitives.select(reduce, x_best, x_new),
                primitives.select(reduce, grad_best, grad_new),
                tf.constant(0),
                tf.maximum(interval - decrease, minimum),
                loss_best,
                reduce,
            )

        def no_checkpoint():
            return (step, x_new, grad_new, since_check, interval, best_at_check,
                    reduced_at_check)

        step, x_next, grad_next, since_check, interval, best_at_check, reduced_at_check = (
            tf.cond(tf.equal(since_check, interval), checkpoint, no_checkpoint)
        )
        return (i + 1, x_next, x_adv, grad_next, step, x_best, grad_best, loss_best, fooled,
                x_fooled, history, since_check, interval, best_at_check, reduced_at_check)

    initial = (
        tf.constant(0),
        start,
        start,
        grad0,
        step0,
        start,
        grad0,
        loss0,
        tf.logical_not(correct0),
        start,
        tf.zeros(tf.stack([num_steps, n]), tf.float32),
        tf.constant(0),
        tf.constant(first),
        loss0,
        tf.ones([n], tf.bool),
    )
    final = tf.while_loop(
        lambda i, *_: i < num_steps, body, initial, maximum_iterations=num_steps
    )
    x_best, loss_best, fooled, x_fooled = final[5], final[7], final[8], final[9]
    return primitives.select(fooled, x_fooled, x_best), loss_best, fooled


def apgd(
    model_fn: Callable[[tf.Tensor], tf.Tensor],
    x,
    y,
    *,
    eps: float,
    num_steps: int = 100,
    norm: str = "linf",
    num_restarts: int = 1,
    loss: str = "ce",
    targeted: bool = False,
    num_target_classes: int = 9,
    rho: float = 0.75,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    seed=None,
    loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
):
    """Runs APGD (untargeted, or APGD-T over several target classes) on a batch.

    Args:
        model_fn: Maps a batch of inputs to logits, e.g.
            ``lambda z: model(z, training=False)``.
        x: Clean inputs, shape (n, ...), floating dtype.
        y: Integer labels, shape (n,) (one-hot labels of shape (n, K) are accepted).
        eps: Radius of the perturbation ball.
        num_steps: Iterations per run (AutoAttack: 100).
        norm: ``"linf"`` or ``"l2"``.
        num_restarts: Runs per target (untargeted: runs), each from a new random start and
            only on the samples no earlier run has misclassified.
        loss: ``"ce"`` or ``"dlr"``.
        targeted: Attack target classes in turn (APGD-T) instead of the true class.
        num_target_classes: Number of target classes (the runner-up classes of the clean
            logits, best first); capped at ``K - 1``.
        rho: Fraction of loss increases below which a checkpoint halves the step size.
        value_range: ``(low, high)`` box of valid inputs, or None.
        seed: An int (deterministic), a ``keras.random.SeedGenerator`` or None.
        loss_fn: Optional per-sample ``loss_fn(y, logits)`` to maximise instead of
            ``loss`` (untargeted runs only), e.g. a training method's attack objective.

    Returns:
        ``x_adv`` of the shape and dtype of ``x``, gradient-stopped: per sample, a
        misclassified point if some run found one, else the highest-loss point of the last
        run on that sample.

    Example:

    ```python
    x_adv = apgd(lambda z: model(z, training=False), x, y, eps=8 / 255, loss="dlr",
                 targeted=True, seed=0)
    ```
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"`norm` must be one of ['linf', 'l2'], got norm={norm!r}.")
    objective = _objective(loss, targeted) if loss_fn is None else (
        lambda labels, logits, target: loss_fn(labels, logits)
    )
    x = tf.stop_gradient(tf.convert_to_tensor(x))
    labels = _class_indices(y)
    eps_t = primitives._scalar(eps, x.dtype)
    num_steps, num_restarts = int(num_steps), int(num_restarts)

    clean_logits = tf.cast(model_fn(x), tf.float32)
    if targeted:
        num_classes = clean_logits.shape[-1]
        if num_classes is None:
            raise ValueError("APGD-T needs a statically known number of classes.")
        num_targets = max(1, min(int(num_target_classes), int(num_classes) - 1))
        ranked = tf.math.top_k(clean_logits, k=num_targets + 1, sorted=True).indices
        ranked = tf.cast(ranked, labels.dtype)
    else:
        num_targets = 1
        ranked = tf.zeros([tf.shape(x)[0], 2], labels.dtype)
    num_runs = num_targets * num_restarts
    fooled0 = tf.not_equal(tf.argmax(clean_logits, axis=-1), labels)

    def run_body(run, x_out, loss_out, fooled):
        todo = tf.where(tf.logical_not(fooled))[:, 0]
        x_sub = tf.gather(x, todo)
        labels_sub = tf.gather(labels, todo)
        target = tf.gather(ranked[:, 1:] if targeted else ranked, todo)
        target = tf.gather(target, run // num_restarts, axis=1)
        delta = primitives.boundary_start(
            tf.shape(x_sub), eps_t, norm, seed=primitives.run_seed(seed, run), dtype=x.dtype
        )
        start = primitives.clip_to_range(x_sub + delta, value_range)
        x_run, loss_run, fooled_run = _apgd_run(
            model_fn, objective, x_sub, labels_sub, target, start, eps=eps, num_steps=num_steps,
            norm=norm, rho=rho, value_range=value_range,
        )
        index = todo[:, tf.newaxis]
        x_out = tf.tensor_scatter_nd_update(x_out, index, x_run)
        loss_out = tf.tensor_scatter_nd_update(loss_out, index, loss_run)
        fooled = tf.tensor_scatter_nd_update(fooled, index, fooled_run)
        return run + 1, x_out, loss_out, fooled

    _, x_adv, _, _ = tf.while_loop(
        lambda run, x_out, loss_out, fooled: tf.logical_and(
            run < num_runs, tf.reduce_any(tf.logical_not(fooled))
        ),
        run_body,
        (tf.constant(0), x, tf.fill(tf.shape(labels), -math.inf), fooled0),
        maximum_iterations=num_runs,
    )
    return tf.stop_gradient(x_adv)
