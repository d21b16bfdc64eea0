"""Fast Adaptive Boundary attack (FAB, FAB-T): a minimal-norm attack, as in AutoAttack.

Paper: Croce & Hein, "Minimally distorted Adversarial Examples with a Fast Adaptive
Boundary Attack" (ICML 2020); FAB-T, its targeted version, is one of the four attacks of
AutoAttack's standard version (Croce & Hein, "Reliable Evaluation of Adversarial Robustness
with an Ensemble of Diverse Parameter-free Attacks", ICML 2020).

Threat model: white-box, L-infinity or L2 perturbations; FAB searches the *smallest*
perturbation that changes the prediction, and as an attack of radius ``eps`` it returns,
per sample, the smallest misclassified point it found if its norm is at most ``eps`` (else
the clean input). Adversarial inputs stay in ``value_range`` (``(0.0, 1.0)`` by default;
None for no box).

One run, from ``x_1 = x_0`` (the clean input) or, for restarts, from a random point at
distance ``eps / 2`` (clipped to the box), repeats ``num_steps`` times:

1. Linearise the classifier at ``x_1``: for the class ``j`` whose decision boundary with the
   true class ``y`` looks closest (untargeted: ``argmin_j |f_j| / ||grad f_j||_*`` with
   ``f_j = z_j - z_y`` and ``||.||_*`` the dual norm; targeted: the target class), the
   boundary ``{z: f_j(x_1) + <grad f_j(x_1), z - x_1> = 0}`` is a hyperplane.
2. Project both ``x_1`` and ``x_0`` onto that hyperplane intersected with the box, exactly,
   in the attack's norm (``hyperplane_projection``): steps ``d_1`` and ``d_0``.
3. Biased, extrapolated step: ``x_1 <- clip((1 - a) (x_1 + eta d_1) + a (x_0 + eta d_0))``
   with ``a = min(||d_1|| / (||d_1|| + ||d_0||), alpha_max)``, which keeps the iterates close
   to ``x_0``; ``eta > 1`` overshoots the (linearised) boundary a little.
4. If ``x_1`` is misclassified, it is a candidate (the smallest one is kept) and the iterate
   steps back towards the original: ``x_1 <- x_0 + beta (x_1 - x_0)``.

FAB-T (``targeted=True``) runs this once per target class, the ``num_target_classes``
classes with the highest clean logits after the top one, best first; restarts, targets and
samples follow AutoAttack's protocol: each run attacks only the samples that no earlier run
fooled within ``eps``, the first run of each target starts at ``x_0``, later restarts at a
random point. A sample counts as fooled when it is misclassified (as in AutoAttack, also
for FAB-T).

Implementation: the steps are a ``tf.while_loop`` vectorised over the batch, and so is the
loop over runs (targets x restarts); the projections sort each sample's breakpoints once per
step (``O(d log d)``, no inner iterations). The untargeted version linearises every class
at once by evaluating the model on ``num_classes`` copies of the batch, so its memory grows
with the number of classes; FAB-T needs one gradient per step. It runs eagerly and inside
``tf.function``; the dynamic batch of unfooled samples is not XLA-compilable.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import keras
import tensorflow as tf

from keras_mwat import validation
from keras_mwat.attacks import primitives
from keras_mwat.attacks.base import Attack, _check_bool
from keras_mwat.attacks.pgd import _class_indices

#: Added to dual norms before dividing, as in the reference implementation.
_DUAL_GUARD = 1e-12
#: Smallest projection length used in the bias ``a``, as in the reference implementation.
_MIN_STEP = 1e-8
#: Weights at most this large count as zero in the projections.
_TINY_WEIGHT = 1e-30
#: Stand-in for an infinite breakpoint or an infeasible projection (finite, so 0 * it is 0).
_BIG = 1e30


def _dual_norm(w, norm: str) -> tf.Tensor:
    """Dual norm of the rows of ``w`` (last axis): L1 for ``"linf"``, L2 for ``"l2"``."""
    if norm == "linf":
        return tf.reduce_sum(tf.abs(w), axis=-1)
    return tf.sqrt(tf.reduce_sum(tf.square(w), axis=-1))


def _norm(delta, norm: str) -> tf.Tensor:
    """``norm`` of the rows of a flat (n, d) tensor."""
    if norm == "linf":
        return tf.reduce_max(tf.abs(delta), axis=-1)
    return tf.sqrt(tf.reduce_sum(tf.square(delta), axis=-1))


def hyperplane_projection(points, w, c, norm: str, value_range=None) -> tf.Tensor:
    """Smallest step ``delta`` with ``<w, delta> = c`` and ``points + delta`` in the box.

    Per row, the exact solution of ``min ||delta|| s.t. <w, delta> = c, low <= points +
    delta <= high`` in the L-infinity or L2 norm (FAB's projection onto the linearised
    decision boundary intersected with the input box). Both problems reduce to finding the
    smallest ``t >= 0`` with ``sum_i a_i min(t, s_i) = |c|``, a non-decreasing piecewise
    linear function of ``t``, solved exactly by sorting the breakpoints ``s_i``:

    * L-infinity: ``delta_i = sign(c w_i) min(t, r_i)``, with ``a_i = |w_i|``, ``s_i = r_i``;
    * L2: ``delta_i = sign(c) w_i min(t, s_i)``, with ``a_i = w_i**2``, ``s_i = r_i / |w_i|``;

    where ``r_i >= 0`` is how far coordinate ``i`` can move in the direction of
    ``sign(c w_i)`` before it leaves the box. If the hyperplane does not meet the box, the
    box vertex (for L-infinity; the box point for L2) that goes furthest towards it is
    returned. Without a box, ``delta = c sign(w) / ||w||_1`` (L-infinity) or
    ``c w / ||w||_2**2`` (L2).

    Args:
        points: Flat points, shape (n, d), inside ``value_range``.
        w: Normals of the hyperplanes, shape (n, d).
        c: Right-hand sides, shape (n,).
        norm: ``"linf"`` or ``"l2"``.
        value_range: ``(low, high)`` box, or None.

    Returns:
        ``delta`` of shape (n, d), in the dtype of ``points``.

    Example:

    ```python
    points = tf.constant([[0.5, 0.5]])
    delta = hyperplane_projection(points, tf.constant([[1.0, 2.0]]), tf.constant([0.3]),
                                  "linf")           # [[0.1, 0.1]]: |delta| <= 0.1 everywhere
    delta = hyperplane_projection(points, tf.constant([[1.0, 2.0]]), tf.constant([1.2]),
                                  "linf", (0.0, 1.0))  # [[0.2, 0.5]]: the box caps x_2
    ```
    """
    points = tf.convert_to_tensor(points)
    dtype = points.dtype
    w = tf.cast(w, dtype)
    c = tf.cast(c, dtype)
    direction = w * tf.sign(c)[:, None]  # <direction, delta> = |c| is the condition
    target = tf.abs(c)
    magnitude = tf.abs(direction)
    live = magnitude > _TINY_WEIGHT
    zero = tf.zeros([], dtype)
    if value_range is None:
        if norm == "linf":
            t = target / tf.maximum(tf.reduce_sum(magnitude, axis=-1), _DUAL_GUARD)
            return tf.sign(direction) * tf.minimum(t, _BIG)[:, None]
        t = target / tf.maximum(tf.reduce_sum(tf.square(direction), axis=-1), _DUAL_GUARD)
        return direction * tf.minimum(t, _BIG)[:, None]

    low, high = value_range
    room = tf.where(direction > 0, high - points, points - low)
    room = tf.maximum(room, 0.0)
    if norm == "linf":
        weight = tf.where(live, magnitude, zero)
        breaks = room
        weighted = weight * room
    else:
        weight = tf.where(live, tf.square(direction), zero)
        breaks = tf.where(live, room / tf.where(live, magnitude, zero + 1.0), zero + _BIG)
        weighted = tf.where(live, magnitude * room, zero)

    order = tf.argsort(breaks, axis=-1, stable=True)
    breaks_sorted = tf.gather(breaks, order, batch_dims=1)
    weight_sorted = tf.gather(weight, order, batch_dims=1)
    weighted_sorted = tf.gather(weighted, order, batch_dims=1)
    # Value of sum_i a_i min(t, s_i) at t = s_(k), for every k.
    below = tf.cumsum(weighted_sorted, axis=-1, exclusive=True)  # sum_{m < k} a s
    above = tf.cumsum(weight_sorted, axis=-1, reverse=True)  # sum_{m >= k} a
    # Exclusive sums, so that the weights after the last live one add exactly zero.
    strictly_above = tf.cumsum(weight_sorted, axis=-1, reverse=True, exclusive=True)
    at_break = below + weighted_sorted + breaks_sorted * strictly_above
    k = tf.reduce_sum(tf.cast(at_break < target[:, None], tf.int32), axis=-1)
    d = tf.shape(points)[-1]
    feasible = k < d
    index = tf.minimum(k, d - 1)[:, None]
    # On the segment [s_(k-1), s_(k)] the function is below_k + t * above_k.
    base = tf.gather(below, index, batch_dims=1)[:, 0]
    slope = tf.gather(above, index, batch_dims=1)[:, 0]
    t = tf.maximum((target - base) / tf.maximum(slope, _TINY_WEIGHT), 0.0)
    t = tf.where(feasible, tf.minimum(t, _BIG), zero + _BIG)[:, None]
    if norm == "linf":
        return tf.sign(direction) * tf.minimum(t, room)
    return tf.where(live, direction * tf.minimum(t, breaks), zero)


def _boundary(model_fn, z, labels, target, num_classes, norm, targeted, restore, dtype):
    """Logit difference ``f = z_j - z_y`` and its gradient (n, d) at ``z`` for the chosen
    class ``j`` (the target, or the class whose linearised boundary is closest)."""
    if targeted:
        with tf.GradientTape() as tape:
            tape.watch(z)
            logits = tf.cast(model_fn(tf.cast(restore(z), dtype)), z.dtype)
            diff = tf.gather(logits, target, batch_dims=1) - tf.gather(
                logits, labels, batch_dims=1
            )
            total = tf.reduce_sum(diff)
        grad = tape.gradient(total, z, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return diff, grad
    n = tf.shape(z)[0]
    tiled = tf.repeat(z, num_classes, axis=0)  # copy k of sample i at row i * K + k
    with tf.GradientTape() as tape:
        tape.watch(tiled)
        logits = tf.cast(model_fn(tf.cast(restore(tiled), dtype)), z.dtype)
        picked = tf.reduce_sum(logits * tf.tile(tf.eye(num_classes, dtype=z.dtype), [n, 1]))
    grads = tape.gradient(picked, tiled, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    grads = tf.reshape(grads, tf.stack([n, num_classes, -1]))  # (n, K, d)
    logits = tf.reshape(logits, tf.stack([n, num_classes, num_classes]))[:, 0, :]
    diff = logits - tf.gather(logits, labels, batch_dims=1)[:, None]
    grad_diff = grads - tf.gather(grads, labels, batch_dims=1)[:, None, :]
    distance = tf.abs(diff) / (_dual_norm(grad_diff, norm) + _DUAL_GUARD)
    distance = tf.where(
        tf.one_hot(labels, num_classes) > 0, tf.constant(math.inf, distance.dtype), distance
    )
    closest = tf.argmin(distance, axis=-1)
    return tf.gather(diff, closest, batch_dims=1), tf.gather(grad_diff, closest, batch_dims=1)


def _fab_run(model_fn, x0, labels, target, start, *, num_classes, num_steps, norm, targeted,
             alpha_max, eta, beta, value_range, restore, dtype):
    """One FAB run on flat points ``x0`` (n, d) from ``start``; returns the smallest
    misclassified iterate and its norm (``inf`` where none was found)."""
    n = tf.shape(x0)[0]

    def misclassified(z):
        logits = model_fn(tf.cast(restore(z), dtype))
        return tf.not_equal(tf.argmax(logits, axis=-1), labels)

    def body(i, x1, x_best, norm_best):
        f, w = _boundary(model_fn, x1, labels, target, num_classes, norm, targeted, restore,
                         dtype)
        # The hyperplane f + <w, z - x1> = 0, seen from x1 and from x0.
        d1 = hyperplane_projection(x1, w, -f, norm, value_range)
        d0 = hyperplane_projection(
            x0, w, -f - tf.reduce_sum(w * (x0 - x1), axis=-1), norm, value_range
        )
        a1 = tf.maximum(_norm(d1, norm), _MIN_STEP)
        a0 = tf.maximum(_norm(d0, norm), _MIN_STEP)
        alpha = tf.clip_by_value(a1 / (a1 + a0), 0.0, alpha_max)[:, None]
        x1 = primitives.clip_to_range(
            (1.0 - alpha) * (x1 + eta * d1) + alpha * (x0 + eta * d0), value_range
        )
        fooled = misclassified(x1)
        size = _norm(x1 - x0, norm)
        better = tf.logical_and(fooled, size < norm_best)
        x_best = tf.where(better[:, None], x1, x_best)
        norm_best = tf.where(better, size, norm_best)
        x1 = tf.where(fooled[:, None], x0 + beta * (x1 - x0), x1)
        return i + 1, x1, x_best, norm_best

    _, _, x_best, norm_best = tf.while_loop(
        lambda i, *_: i < num_steps,
        body,
        (tf.constant(0), start, x0, tf.fill([n], tf.constant(math.inf, x0.dtype))),
        maximum_iterations=num_steps,
    )
    return x_best, norm_best


def fab(
    model_fn: Callable[[tf.Tensor], tf.Tensor],
    x,
    y,
    *,
    eps: float,
    norm: str = "linf",
    num_steps: int = 100,
    num_restarts: int = 1,
    targeted: bool = False,
    num_target_classes: int = 9,
    alpha_max: float = 0.1,
    eta: float = 1.05,
    beta: float = 0.9,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    seed=None,
    return_norms: bool = False,
):
    """Runs FAB (untargeted, or FAB-T over several target classes) on a batch.

    Args:
        model_fn: Maps a batch of inputs to logits, e.g.
            ``lambda z: model(z, training=False)``.
        x: Clean inputs, shape (n, ...), floating dtype.
        y: Integer labels, shape (n,) (one-hot labels of shape (n, K) are accepted).
        eps: Radius of the threat model: a point counts as adversarial only if its
            perturbation has norm at most ``eps``; restarts start at distance ``eps / 2``.
        norm: ``"linf"`` or ``"l2"``.
        num_steps: Iterations per run (AutoAttack: 100).
        num_restarts: Runs per target (untargeted: runs); the first starts at ``x``, the
            others at a random point; each only on the samples not yet fooled.
        targeted: Attack the boundaries with the target classes in turn (FAB-T).
        num_target_classes: Number of target classes (the runner-up classes of the clean
            logits, best first); capped at ``K - 1``.
        alpha_max: Largest bias of a step towards the projection of ``x``.
        eta: Extrapolation factor of the projections (>= 1).
        beta: Backward step towards ``x`` after a misclassified iterate (in (0, 1]).
        value_range: ``(low, high)`` box of valid inputs, or None.
        seed: An int (deterministic), a ``keras.random.SeedGenerator`` or None; used only
            by the random starts of restarts.
        return_norms: Also return, per sample, the norm of the returned perturbation when
            it fools the model within ``eps`` (0 for samples misclassified at ``x``, ``inf``
            where nothing was found).

    Returns:
        ``x_adv`` with the shape and dtype of ``x``, gradient-stopped: per sample the
        smallest misclassified point found if its norm is at most ``eps``, else ``x``; or
        ``(x_adv, norms)`` when ``return_norms`` is True.

    Example:

    ```python
    x_adv = fab(lambda z: model(z, training=False), x, y, eps=8 / 255, targeted=True,
                seed=0)
    ```
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"`norm` must be one of ['linf', 'l2'], got norm={norm!r}.")
    x = tf.stop_gradient(tf.convert_to_tensor(x))
    labels = _class_indices(y)
    wide = primitives._compute_dtype(x.dtype)
    shape = tf.shape(x)
    flat = tf.reshape(tf.cast(x, wide), tf.stack([shape[0], -1]))

    def restore(z):
        return tf.reshape(z, tf.concat([tf.shape(z)[:1], shape[1:]], axis=0))

    eps_t = primitives._scalar(eps, wide)
    num_steps, num_restarts = int(num_steps), int(num_restarts)
    clean_logits = model_fn(x)
    num_classes = clean_logits.shape[-1]
    if num_classes is None:
        raise ValueError("FAB needs a statically known number of classes.")
    num_classes = int(num_classes)
    if targeted:
        num_targets = max(1, min(int(num_target_classes), num_classes - 1))
        ranked = tf.math.top_k(tf.cast(clean_logits, tf.float32), k=num_targets + 1).indices
        ranked = tf.cast(ranked[:, 1:], labels.dtype)
    else:
        num_targets = 1
        ranked = tf.zeros([shape[0], 1], labels.dtype)
    num_runs = num_targets * num_restarts
    fooled0 = tf.not_equal(tf.argmax(clean_logits, axis=-1), labels)

    def run_body(run, x_out, norms, fooled):
        todo = tf.where(tf.logical_not(fooled))[:, 0]
        x_sub = tf.gather(flat, todo)
        labels_sub = tf.gather(labels, todo)
        target = tf.gather(tf.gather(ranked, todo), run // num_restarts, axis=1)
        delta = primitives.boundary_start(
            tf.shape(x_sub), 0.5 * eps_t, norm, seed=primitives.run_seed(seed, run), dtype=wide
        )
        random = tf.not_equal(run % num_restarts, 0)
        start = tf.where(random, primitives.clip_to_range(x_sub + delta, value_range), x_sub)
        x_run, norm_run = _fab_run(
            model_fn, x_sub, labels_sub, target, start, num_classes=num_classes,
            num_steps=num_steps, norm=norm, targeted=targeted,
            alpha_max=tf.cast(alpha_max, wide), eta=tf.cast(eta, wide),
            beta=tf.cast(beta, wide), value_range=value_range, restore=restore, dtype=x.dtype,
        )
        success = norm_run <= eps_t
        index = todo[:, tf.newaxis]
        x_out = tf.tensor_scatter_nd_update(
            x_out, index, tf.where(success[:, None], x_run, x_sub)
        )
        norms = tf.tensor_scatter_nd_update(
            norms, index, tf.where(success, norm_run, tf.constant(math.inf, wide))
        )
        fooled = tf.tensor_scatter_nd_update(fooled, index, success)
        return run + 1, x_out, norms, fooled

    _, x_out, norms, _ = tf.while_loop(
        lambda run, x_out, norms, fooled: tf.logical_and(
            run < num_runs, tf.reduce_any(tf.logical_not(fooled))
        ),
        run_body,
        (tf.constant(0), flat, tf.cast(tf.where(fooled0, 0.0, math.inf), wide), fooled0),
        maximum_iterations=num_runs,
    )
    # Already within eps; the projection only guards against rounding.
    delta = primitives.project(restore(x_out) - tf.cast(x, wide), eps_t, norm)
    x_adv = primitives.clip_to_range(tf.cast(x, wide) + delta, value_range)
    x_adv = tf.stop_gradient(tf.cast(x_adv, x.dtype))
    if return_norms:
        return x_adv, tf.stop_gradient(tf.cast(norms, wide))
    return x_adv


@keras.saving.register_keras_serializable(package="keras_mwat")
class FAB(Attack):
    """Fast Adaptive Boundary attack (Croce & Hein, ICML 2020): FAB and FAB-T.

    A minimal-norm white-box attack: it walks along the linearised decision boundary
    towards the smallest perturbation that changes the prediction (see
    ``keras_mwat.attacks.fab``). As an attack of radius ``eps`` it returns the smallest
    misclassified point found if its norm is at most ``eps``, else the clean input.
    ``FAB(targeted=True)`` (9 target classes, 100 steps, 1 run per target) is FAB-T as in
    AutoAttack's standard version.

    Args:
        eps: Radius of the perturbation ball, >= 0.
        norm: ``"linf"`` or ``"l2"``.
        value_range: ``(low, high)`` box of valid inputs, or None.
        num_steps: Iterations per run (AutoAttack: 100).
        num_restarts: Runs per target class (untargeted: in total), >= 1; the first starts
            at the clean input, the others at random points at distance ``eps / 2``.
        targeted: Run FAB-T over the top ``num_target_classes`` runner-up classes.
        num_target_classes: Number of target classes for FAB-T (capped at K - 1).
        alpha_max: Largest bias of a step towards the original point, in [0, 1] (0.1).
        eta: Extrapolation factor of the projection steps, >= 1 (1.05).
        beta: Backward step factor after a success, in (0, 1] (0.9).
        seed: Non-negative int for reproducible random restarts, or None.

    Example:

    ```python
    fab_t = keras_mwat.attacks.FAB(eps=8 / 255, targeted=True, seed=0)
    x_adv = fab_t(model, x_test, y_test, batch_size=500)
    ```
    """

    def __init__(
        self,
        eps=8 / 255,
        norm="linf",
        value_range=(0.0, 1.0),
        num_steps=100,
        num_restarts=1,
        targeted=False,
        num_target_classes=9,
        alpha_max=0.1,
        eta=1.05,
        beta=0.9,
        seed=None,
    ):
        super().__init__(eps=eps, norm=norm, value_range=value_range, seed=seed)
        self.num_steps = validation.check_int(num_steps, "num_steps", minimum=1)
        self.num_restarts = validation.check_int(num_restarts, "num_restarts", minimum=1)
        self.targeted = _check_bool(targeted, "targeted")
        self.num_target_classes = validation.check_int(
            num_target_classes, "num_target_classes", minimum=1
        )
        self.alpha_max = validation.check_nonnegative(alpha_max, "alpha_max")
        if self.alpha_max > 1:
            raise ValueError(f"`alpha_max` must be in [0, 1], got alpha_max={alpha_max!r}.")
        self.eta = validation.check_positive(eta, "eta")
        if self.eta < 1:
            raise ValueError(f"`eta` must be >= 1, got eta={eta!r}.")
        self.beta = validation.check_positive(beta, "beta")
        if self.beta > 1:
            raise ValueError(f"`beta` must be in (0, 1], got beta={beta!r}.")

    def _perturb(self, model_fn, x, y, *, seed, loss_fn, trace: bool):
        """Runs ``fab`` with this attack's settings (see ``Attack._perturb``).

        FAB maximises no loss, so ``loss_fn`` must be None; it starts at the clean input
        and records no trace.
        """
        if loss_fn is not None:
            raise ValueError(
                "FAB searches the closest decision boundary and maximises no loss; "
                f"`loss_fn` must be None, got loss_fn={loss_fn!r}."
            )
        x_adv = fab(
            model_fn,
            x,
            y,
            eps=self._radius(self.eps),
            norm=self.norm,
            num_steps=self.num_steps,
            num_restarts=self.num_restarts,
            targeted=self.targeted,
            num_target_classes=self.num_target_classes,
            alpha_max=self.alpha_max,
            eta=self.eta,
            beta=self.beta,
            value_range=self.value_range,
            seed=self.seed_generator if seed is None else seed,
        )
        return x_adv, None

    def get_config(self) -> dict:
        """Returns the constructor arguments."""
        config = super().get_config()
        config.update(
            num_steps=self.num_steps,
            num_restarts=self.num_restarts,
            targeted=self.targeted,
            num_target_classes=self.num_target_classes,
            alpha_max=self.alpha_max,
            eta=self.eta,
            beta=self.beta,
        )
        return config
