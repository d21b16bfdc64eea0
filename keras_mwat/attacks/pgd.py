"""Projected gradient descent (PGD) on the loss, as a pure TensorFlow function.

Paper: Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks"
(ICLR 2018). FGSM (Goodfellow et al., ICLR 2015) is the one-step case with
``step_size = eps`` and no random start.

Threat model: white-box, untargeted, per-sample perturbations in the L-infinity or L2 ball
of radius ``eps`` around ``x``; adversarial inputs are clipped to ``value_range``
(``(0.0, 1.0)`` by default, i.e. images scaled to [0, 1]; ``None`` for no box).

The step loop is a ``tf.while_loop`` (one graph node, whatever ``num_steps``), so ``pgd``
runs eagerly, inside ``tf.function`` (for instance in a Keras ``train_step``, also under
``tf.distribute``) and under XLA. Arguments are trusted; ``keras_mwat.attacks.PGD``
validates them.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from keras_mwat import losses
from keras_mwat.attacks import primitives

# Scale of the TRADES start, x + 0.001 * N(0, 1).
NORMAL_START_SCALE = 0.001
INITS = ("uniform", "normal")


def _class_indices(y) -> tf.Tensor:
    """Integer labels of shape (n,); one-hot labels of shape (n, K > 1) are argmax-ed."""
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 2 and y.shape[-1] is not None and y.shape[-1] > 1:
        y = tf.argmax(y, axis=-1)
    return tf.cast(tf.reshape(y, [-1]), tf.int64)


def pgd(
    model_fn: Callable[[tf.Tensor], tf.Tensor],
    x,
    y,
    *,
    eps: float,
    step_size: float,
    num_steps: int,
    norm: str = "linf",
    random_start: bool = True,
    num_restarts: int = 1,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
    seed=None,
    init: str = "uniform",
    return_kappa: bool = False,
):
    """Maximises ``loss_fn`` within the ``norm`` ball of radius ``eps`` around ``x``.

    Each step is ``x <- clip(x0 + project(x + step_size * direction(grad) - x0, eps))``,
    where ``grad`` is the gradient of the sum of the per-sample losses (so samples are
    attacked independently).

    Args:
        model_fn: Maps a batch of inputs to logits, e.g.
            ``lambda z: model(z, training=False)``.
        x: Clean inputs, shape (n, ...), floating dtype.
        y: Integer labels, shape (n,) (one-hot labels of shape (n, K) are accepted).
        eps: Radius of the perturbation ball.
        step_size: Step length (in ``norm``) of each ascent step.
        num_steps: Number of ascent steps.
        norm: ``"linf"`` or ``"l2"``.
        random_start: Start from a random point (see ``init``) instead of ``x``.
        num_restarts: Number of independent runs; per sample, the run whose final point
            has the highest loss is kept (ties keep the earlier run). Without a random
            start all runs coincide, so a single one is made.
        value_range: ``(low, high)`` box of valid inputs, or None.
        loss_fn: ``loss_fn(y, logits)`` returning the per-sample loss (n,) to maximise.
            Defaults to ``keras_mwat.losses.cross_entropy``. Logits are cast to float32.
        seed: A ``keras.random.SeedGenerator`` (restarts draw from it in turn), an int
            (deterministic) or None (Keras's global generator).
        init: ``"uniform"`` (uniform in the ball) or ``"normal"`` (``x + 0.001 * N(0, 1)``,
            as in TRADES). Ignored when ``random_start`` is False.
        return_kappa: Also return ``kappa``, an int32 tensor (n,) counting the steps
            (0..num_steps) at which the current iterate, before the step, was classified
            correctly: GAIRAT's geometry value. With restarts, that of the kept restart.

    Returns:
        ``x_adv`` (same shape and dtype as ``x``, gradient-stopped, inside the ball and
        ``value_range``), or ``(x_adv, kappa)`` when ``return_kappa`` is True.

    Example:

    ```python
    x_adv = pgd(lambda z: model(z, training=False), x, y, eps=8 / 255,
                step_size=2 / 255, num_steps=10, seed=keras.random.SeedGenerator(0))
    ```
    """
    if loss_fn is None:
        loss_fn = losses.cross_entropy
    x = tf.stop_gradient(tf.convert_to_tensor(x))
    labels = _class_indices(y)
    eps_t = primitives._scalar(eps, x.dtype)
    step = primitives._scalar(step_size, x.dtype)
    num_steps = int(num_steps)
    num_restarts = int(num_restarts) if random_start else 1  # restarts from x all coincide
    if init not in INITS:
        raise ValueError(f"`init` must be one of {list(INITS)}, got init={init!r}.")

    def loss_and_logits(x_adv):
        logits = tf.cast(model_fn(x_adv), tf.float32)
        return tf.cast(loss_fn(labels, logits), tf.float32), logits

    def start(restart):
        if not random_start:
            return x
        restart_seed = primitives.run_seed(seed, restart)
        if init == "normal":
            delta = primitives.normal_start(
                tf.shape(x), NORMAL_START_SCALE, seed=restart_seed, dtype=x.dtype
            )
        else:
            delta = primitives.random_start(
                tf.shape(x), eps_t, norm, seed=restart_seed, dtype=x.dtype
            )
        return primitives.clip_to_range(x + primitives.project(delta, eps_t, norm), value_range)

    def run(restart):
        """One PGD run; returns the final iterate and its kappa."""

        def body(i, x_adv, kappa):
            with tf.GradientTape() as tape:
                tape.watch(x_adv)
                loss, logits = loss_and_logits(x_adv)
                total = tf.reduce_sum(loss)
            grad = tape.gradient(total, x_adv, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            correct = tf.equal(tf.argmax(logits, axis=-1), labels)
            kappa = kappa + tf.cast(correct, tf.int32)
            moved = x_adv + step * primitives.ascent_direction(grad, norm)
            x_adv = x + primitives.project(moved - x, eps_t, norm)
            x_adv = primitives.clip_to_range(x_adv, value_range)
            return i + 1, tf.stop_gradient(x_adv), kappa

        kappa0 = tf.zeros_like(labels, dtype=tf.int32)
        _, x_adv, kappa = tf.while_loop(
            lambda i, *_: i < num_steps,
            body,
            (tf.constant(0), start(restart), kappa0),
            maximum_iterations=num_steps,
        )
        return x_adv, kappa

    if num_restarts == 1:
        x_adv, kappa = run(0)
    else:

        def restart_body(r, best_x, best_kappa, best_loss):
            x_r, kappa_r = run(r)
            loss_r, _ = loss_and_logits(x_r)
            better = loss_r > best_loss
            best_x = primitives.select(better, x_r, best_x)
            best_kappa = tf.where(better, kappa_r, best_kappa)
            best_loss = tf.where(better, loss_r, best_loss)
            return r + 1, best_x, best_kappa, best_loss

        initial = (
            tf.constant(0),
            x,
            tf.zeros_like(labels, dtype=tf.int32),
            tf.fill(tf.shape(labels), tf.constant(-float("inf"), tf.float32)),
        )
        _, x_adv, kappa, _ = tf.while_loop(
            lambda r, *_: r < num_restarts,
            restart_body,
            initial,
            maximum_iterations=num_restarts,
        )

    x_adv = tf.stop_gradient(x_adv)
    if return_kappa:
        return x_adv, tf.stop_gradient(kappa)
    return x_adv
