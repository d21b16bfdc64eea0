"""Square Attack: score-based random search in the L-infinity or L2 ball, no gradients.

Paper: Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient
black-box adversarial attack via random search" (ECCV 2020), as run by AutoAttack (Croce &
Hein, ICML 2020) with ``p_init = 0.8``.

Threat model: black-box (score-based: only the logits of queried points are used),
untargeted, per-sample perturbations in the L-infinity or L2 ball of radius ``eps``;
adversarial inputs stay in ``value_range`` (``(0.0, 1.0)`` by default; ``None`` for no box).

The algorithm, per sample, minimises the margin ``z_y - max_{j != y} z_j`` of the logits
``z``:

* Start. L-infinity: vertical stripes, ``x + eps * s`` with one random sign ``s`` per
  column and channel. L2: a 5 x 5 grid of "meta pseudo-Gaussian" bumps (a positive and a
  negative pseudo-Gaussian half, side by side) with random signs per channel, rescaled to
  L2 norm ``eps``.
* Step ``i``: a random square window of ``p_i`` of the pixels is proposed. L-infinity: the
  window is set to ``x + eps * s`` (one random sign per channel; signs that would change
  nothing are redrawn). L2: the perturbation of the window is replaced by a new meta
  pseudo-Gaussian bump plus its old (normalised) content, taking the L2 mass of a second
  random window, which is set to zero, so that the total norm stays ``eps``.
* The proposal is accepted for a sample only if it lowers the sample's loss (or
  misclassifies it); samples already misclassified stop.
* ``p_i`` follows the paper's piecewise-constant schedule: ``p_init`` halved after 10, 50,
  200, 500, 1000, 2000, 4000, 6000 and 8000 iterations out of 10 000, rescaled to
  ``num_queries`` (iteration ``i`` counts as ``int(i * 10000 / num_queries)``).

Deviations from the reference code, none of which changes the algorithm: every sample
draws its own window positions and signs (AutoAttack shares one window across the batch;
the L-infinity code of the paper's repository already draws per sample); window positions
are uniform over all ``size - side + 1`` offsets (the reference never draws the last one);
the sign redraws of an unchanged L-infinity window are capped at ``MAX_SIGN_REDRAWS``.

Query budget: the clean input is queried once; then, per restart and per sample, at most
``num_queries`` queries (the start, then ``num_queries - 1`` random-search steps), so at most
``1 + num_restarts * num_queries`` logits evaluations per sample. A sample misclassified at
its clean input costs one query; a sample stops being queried once misclassified, restarts
only run on samples not yet misclassified, and the loops end early once every sample of
the batch is.

Input layouts: channels-last images ``(n, height, width, channels)``; single-channel images
``(n, height, width)``; flat feature vectors ``(n, features)``, searched as a 1-D signal
whose windows hold ``p_i`` of the features.

Implementation: everything runs vectorised over the batch in two ``tf.while_loop`` (restarts
and queries; one graph node whatever ``num_queries``), with per-sample windows built from
``tf.range`` comparisons and the model evaluated only on the samples not yet fooled (with a
custom ``loss_fn``, which may close over batch-aligned tensors, on the whole batch). It runs
eagerly and inside ``tf.function``; the dynamic batch of unfooled samples is not
XLA-compilable. Randomness comes from one stateless seed pair (see
``primitives.stateless_seed``), so an int seed gives the same output every call.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import tensorflow as tf

from keras_mwat import losses, validation
from keras_mwat.attacks import primitives
from keras_mwat.attacks.base import Attack
from keras_mwat.attacks.pgd import _class_indices

#: Iterations (out of ``SCHEDULE_LENGTH``) after which the window fraction ``p`` is halved.
SCHEDULE_THRESHOLDS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: Number of iterations the schedule was designed for; it is rescaled to ``num_queries``.
SCHEDULE_LENGTH = 10000
#: L-infinity: redraws of a window's signs when the proposal would not change the sample.
MAX_SIGN_REDRAWS = 10
#: L2: smallest side of the square window (the reference uses odd sides >= 3).
L2_MIN_SIDE = 3
#: L2 start: the image is tiled with ``GRID x GRID`` bumps of side ``size // GRID``.
GRID = 5
#: Guard of the reference implementation against dividing by a zero norm.
_NORM_GUARD = 1e-12


# --------------------------------------------------------------------------- schedule


def window_fraction(p_init: float, iteration: int | tf.Tensor, num_queries: int) -> tf.Tensor:
    """The fraction ``p`` of pixels in the window at (0-based) ``iteration``.

    ``p_init / 2**k`` where ``k`` counts the thresholds of ``SCHEDULE_THRESHOLDS`` below
    ``int(iteration * 10000 / num_queries)`` (AutoAttack's rescaled ``p_selection``).

    Args:
        p_init: Initial fraction, in (0, 1].
        iteration: Iteration index (an int or an int tensor).
        num_queries: Query budget the schedule is stretched over.

    Returns:
        A float32 scalar tensor.

    Example:

    ```python
    window_fraction(0.8, 0, 5000)     # 0.8
    window_fraction(0.8, 4999, 5000)  # 0.8 / 512
    ```
    """
    scaled = (tf.cast(iteration, tf.int64) * SCHEDULE_LENGTH) // int(num_queries)
    halvings = tf.reduce_sum(
        tf.cast(scaled > tf.constant(SCHEDULE_THRESHOLDS, tf.int64), tf.float32)
    )
    return tf.cast(p_init, tf.float32) / tf.pow(2.0, halvings)


def _window_sides(p, height, width, minimum: int, odd: bool):
    """Sides (rows, cols) of a window holding a fraction ``p`` of the ``height x width`` grid.

    Square windows of side ``round(sqrt(p * height * width))`` on images; on a 1-D grid
    (one side of length 1) a segment of ``round(p * length)`` entries. At least ``minimum``,
    odd if ``odd``, at most the grid.
    """
    one_d = tf.equal(tf.minimum(height, width), 1)
    area = p * tf.cast(height * width, tf.float32)
    length = tf.cast(tf.round(tf.where(one_d, area, tf.sqrt(area))), tf.int32)
    length = tf.maximum(length, minimum)
    if odd:
        length = length + 1 - length % 2
    cap = tf.where(one_d, tf.maximum(height, width), tf.minimum(height, width))
    length = tf.minimum(length, cap)
    return tf.minimum(length, height), tf.minimum(length, width)


# ---------------------------------------------------------------------- random draws


def _uniform(shape, seed, index) -> tf.Tensor:
    return primitives._draw("uniform", shape, seed, index, tf.float32)


def _random_int(count, high, seed, index) -> tf.Tensor:
    """``count`` integers uniform in ``[0, high)`` (``high >= 1``), int32."""
    draws = tf.floor(_uniform(tf.reshape(count, [1]), seed, index) * tf.cast(high, tf.float32))
    return tf.minimum(tf.cast(draws, tf.int32), high - 1)


def _random_sign(shape, seed, index, dtype) -> tf.Tensor:
    return tf.where(_uniform(shape, seed, index) < 0.5, -tf.ones([], dtype), tf.ones([], dtype))


# ------------------------------------------------------------------ windows and bumps


def _window(top, left, rows, cols, height, width) -> tf.Tensor:
    """Per-sample window masks, shape (m, height, width), from ``tf.range`` comparisons."""
    r = tf.range(height)[None, :] - top[:, None]
    c = tf.range(width)[None, :] - left[:, None]
    inside_r = (r >= 0) & (r < rows)
    inside_c = (c >= 0) & (c < cols)
    return inside_r[:, :, None] & inside_c[:, None, :]


def pseudo_gaussian(
    rows: int | tf.Tensor, cols: int | tf.Tensor, dtype: tf.DType = tf.float32
) -> tf.Tensor:
    """The paper's pseudo-Gaussian bump on a ``rows x cols`` rectangle, unit L2 norm.

    The entry at Chebyshev distance ``d`` from the centre ``(rows // 2, cols // 2)`` is
    ``sum_{k=d}^{K-1} 1 / (k + 1)**2`` with ``K = max(rows // 2, cols // 2) + 1``: the sum
    of ``1 / (k + 1)**2`` over the centred squares of half-width ``k`` that contain it. An
    empty rectangle gives an empty tensor.

    Example:

    ```python
    pseudo_gaussian(3, 3)  # centre 1 + 1/4, ring 1/4, normalised
    ```
    """
    rows = tf.convert_to_tensor(rows, tf.int32)
    cols = tf.convert_to_tensor(cols, tf.int32)
    levels = tf.maximum(rows // 2, cols // 2) + 1
    weights = 1.0 / tf.square(tf.cast(tf.range(1, levels + 1), dtype))
    tail = tf.cumsum(weights, reverse=True)  # tail[d] = sum_{k >= d} 1 / (k + 1)**2
    dist_r = tf.abs(tf.range(rows) - rows // 2)
    dist_c = tf.abs(tf.range(cols) - cols // 2)
    bump = tf.gather(tail, tf.maximum(dist_r[:, None], dist_c[None, :]))
    return bump / tf.maximum(tf.norm(bump), _NORM_GUARD)


def meta_pseudo_gaussian(
    rows: int | tf.Tensor, cols: int | tf.Tensor, dtype: tf.DType = tf.float32
) -> tf.Tensor:
    """The L2 update of the paper: a pseudo-Gaussian bump over the top ``rows // 2`` rows
    and a negated one over the others, unit L2 norm, shape ``(rows, cols)``.

    Example:

    ```python
    eta = meta_pseudo_gaussian(5, 5)   # sums to ~0, norm 1
    ```
    """
    rows = tf.convert_to_tensor(rows, tf.int32)
    top = pseudo_gaussian(rows // 2, cols, dtype)
    bottom = -pseudo_gaussian(rows - rows // 2, cols, dtype)
    pattern = tf.concat([top, bottom], axis=0)
    return pattern / tf.maximum(tf.norm(pattern), _NORM_GUARD)


def _split_along_cols(rows, cols, count, seed, index) -> tf.Tensor:
    """Which way each of ``count`` bumps is split: random for squares (the reference's random
    transpose), else across the longer side. Bool, shape (count,)."""
    coin = _uniform(tf.reshape(count, [1]), seed, index) < 0.5
    return tf.where(tf.equal(rows, cols), coin, tf.fill(tf.reshape(count, [1]), cols > rows))


def _bump_values(rows, cols, rel_r, rel_c, along_cols, dtype) -> tf.Tensor:
    """Entries ``[rel_r, rel_c]`` of the meta bump split across rows or (``along_cols``)
    columns; ``rel_*`` must lie inside the ``rows x cols`` window."""
    across_rows = meta_pseudo_gaussian(rows, cols, dtype)
    across_cols = tf.transpose(meta_pseudo_gaussian(cols, rows, dtype))
    index = tf.stack([rel_r, rel_c], axis=-1)
    return tf.where(
        along_cols, tf.gather_nd(across_cols, index), tf.gather_nd(across_rows, index)
    )


def _per_channel_norm(values) -> tf.Tensor:
    """L2 norm over the spatial axes of (m, H, W, C) values, shape (m, 1, 1, C)."""
    return tf.sqrt(tf.reduce_sum(tf.square(values), axis=[1, 2], keepdims=True))


def _normalize(delta) -> tf.Tensor:
    """``delta`` divided by its per-sample L2 norm (plus the reference's guard)."""
    return delta / (primitives._per_sample_l2_norm(delta) + _NORM_GUARD)


# --------------------------------------------------------------------- the searches


class _Search:
    """One Square search over images of shape (m, H, W, C) in a ``wide`` float dtype.

    With ``compact``, each query evaluates the model on the samples still searched only;
    otherwise on the whole batch, the others' results being discarded.
    """

    def __init__(self, evaluate, eps, norm, num_queries, p_init, value_range, dtype, compact):
        self.evaluate = evaluate
        self.eps = eps
        self.norm = norm
        self.num_queries = int(num_queries)
        self.p_init = p_init
        self.value_range = value_range
        self.dtype = dtype
        self.compact = compact

    def clip(self, z):
        return primitives.clip_to_range(z, self.value_range)

    # ---------------------------------------------------------------- starts
    def start(self, x, seed):
        if self.norm == "linf":
            shape = tf.shape(x)
            stripes = _random_sign(tf.stack([shape[0], 1, shape[2], shape[3]]), seed, 0, x.dtype)
            return self.clip(x + self.eps * stripes)
        return self.clip(x + self.eps * _normalize(self._l2_start_delta(x, seed)))

    def _l2_start_delta(self, x, seed):
        """A ``GRID x GRID`` tiling of meta bumps with random signs per block and channel."""
        shape = tf.shape(x)
        m, height, width, channels = shape[0], shape[1], shape[2], shape[3]

        def axis(size):
            side = tf.maximum(size // GRID, 1)
            blocks = tf.minimum(GRID, size // side)
            offset = tf.range(size) - (size - blocks * side) // 2
            block = tf.math.floordiv(offset, side)
            valid = (offset >= 0) & (block < blocks)
            rel = offset - block * side
            return side, blocks, tf.clip_by_value(block, 0, blocks - 1), rel, valid

        side_r, blocks_r, block_r, rel_r, valid_r = axis(height)
        side_c, blocks_c, block_c, rel_c, valid_c = axis(width)
        num_blocks = blocks_r * blocks_c
        block = block_r[:, None] * blocks_c + block_c[None, :]  # (H, W)
        rel_r = tf.broadcast_to(tf.clip_by_value(rel_r, 0, side_r - 1)[:, None], [height, width])
        rel_c = tf.broadcast_to(tf.clip_by_value(rel_c, 0, side_c - 1)[None, :], [height, width])
        along_cols = _split_along_cols(side_r, side_c, m * num_blocks, seed, 0)
        along_cols = tf.gather(tf.reshape(along_cols, [m, num_blocks]), block, axis=1)
        bumps = _bump_values(side_r, side_c, rel_r[None], rel_c[None], along_cols, self.dtype)
        signs = _random_sign(tf.stack([m, num_blocks, channels]), seed, 1, self.dtype)
        signs = tf.gather(signs, block, axis=1)  # (m, H, W, C)
        valid = tf.cast(valid_r[:, None] & valid_c[None, :], self.dtype)
        return (valid * bumps)[..., None] * signs

    # ------------------------------------------------------------- proposals
    def propose(self, x, best, iteration, seed):
        p = window_fraction(self.p_init, iteration, self.num_queries)
        if self.norm == "linf":
            return self._propose_linf(x, best, p, seed)
        return self._propose_l2(x, best, p, seed)

    def _propose_linf(self, x, best, p, seed):
        shape = tf.shape(x)
        m, height, width, channels = shape[0], shape[1], shape[2], shape[3]
        rows, cols = _window_sides(p, height, width, minimum=1, odd=False)
        top = _random_int(m, height - rows + 1, seed, 0)
        left = _random_int(m, width - cols + 1, seed, 1)
        window = _window(top, left, rows, cols, height, width)[..., None]
        sign_shape = tf.stack([m, 1, 1, channels])

        def candidate(signs):
            return tf.where(window, self.clip(x + self.eps * signs), best)

        def unchanged(proposal):
            return tf.reduce_all(tf.equal(proposal, best), axis=[1, 2, 3])

        def redraw(k, signs, proposal, same):
            fresh = tf.ensure_shape(_random_sign(sign_shape, seed, 3 + k, x.dtype), signs.shape)
            signs = primitives.select(same, fresh, signs)
            proposal = candidate(signs)
            return k + 1, signs, proposal, unchanged(proposal)

        signs = _random_sign(sign_shape, seed, 2, x.dtype)
        proposal = candidate(signs)
        _, _, proposal, _ = tf.while_loop(
            lambda k, signs, proposal, same: (k < MAX_SIGN_REDRAWS) & tf.reduce_any(same),
            redraw,
            (tf.constant(0), signs, proposal, unchanged(proposal)),
            maximum_iterations=MAX_SIGN_REDRAWS,
        )
        return proposal

    def _propose_l2(self, x, best, p, seed):
        shape = tf.shape(x)
        m, height, width = shape[0], shape[1], shape[2]
        channels = tf.cast(shape[3], self.dtype)
        rows, cols = _window_sides(p, height, width, minimum=L2_MIN_SIDE, odd=True)
        top = _random_int(m, height - rows + 1, seed, 0)
        left = _random_int(m, width - cols + 1, seed, 1)
        top_2 = _random_int(m, height - rows + 1, seed, 2)
        left_2 = _random_int(m, width - cols + 1, seed, 3)
        window = _window(top, left, rows, cols, height, width)
        window_2 = _window(top_2, left_2, rows, cols, height, width)
        both = tf.cast(window | window_2, self.dtype)[..., None]
        window = tf.cast(window, self.dtype)[..., None]

        delta = best - x
        norm_image = primitives._per_sample_l2_norm(delta)  # (m, 1, 1, 1)
        norm_window = _per_channel_norm(delta * window)  # (m, 1, 1, C)
        norm_windows = _per_channel_norm(delta * both)

        rel_r = tf.clip_by_value(tf.range(height)[None, :] - top[:, None], 0, rows - 1)
        rel_c = tf.clip_by_value(tf.range(width)[None, :] - left[:, None], 0, cols - 1)
        rel_r = tf.broadcast_to(rel_r[:, :, None], [m, height, width])
        rel_c = tf.broadcast_to(rel_c[:, None, :], [m, height, width])
        along_cols = _split_along_cols(rows, cols, m, seed, 4)[:, None, None]
        bump = _bump_values(rows, cols, rel_r, rel_c, along_cols, self.dtype)[..., None] * window
        signs = _random_sign(tf.stack([m, 1, 1, shape[3]]), seed, 5, self.dtype)

        update = bump * signs + delta * window / (norm_window + _NORM_GUARD)
        budget = tf.maximum(tf.square(self.eps) - tf.square(norm_image), 0.0) / channels
        update = update / (_per_channel_norm(update) + _NORM_GUARD)
        update = update * tf.sqrt(budget + tf.square(norm_windows))
        delta = delta * (1.0 - both) + update
        return self.clip(x + self.eps * _normalize(delta))

    # ------------------------------------------------------------------ a run
    def rows(self, mask):
        """Indices (k, 1) of the rows to evaluate: those of ``mask`` when compacting, else
        all (a ``loss_fn`` may close over batch-aligned tensors, so it sees whole batches).
        """
        if self.compact:
            return tf.where(mask)
        return tf.range(tf.shape(mask, out_type=tf.int64)[0])[:, None]

    def run(self, x, labels, seed, searching):
        """One search from a fresh start on the ``searching`` samples.

        Returns (best, margin, loss, queries); rows outside ``searching`` are not queried
        (or, without compaction, their queries are not counted and their results are
        meaningless).
        """
        best = self.start(x, tf.random.experimental.stateless_fold_in(seed, 0))
        margin, loss = self.evaluate(best, labels)
        queries = tf.cast(searching, tf.int32)

        def body(i, best, margin, loss, queries):
            index = self.rows(searching & (margin > 0.0))
            x_a, best_a = tf.gather_nd(x, index), tf.gather_nd(best, index)
            margin_a, loss_a = tf.gather_nd(margin, index), tf.gather_nd(loss, index)
            active_a = tf.gather_nd(searching, index) & (margin_a > 0.0)
            step_seed = tf.random.experimental.stateless_fold_in(seed, i + 1)
            proposal = self.propose(x_a, best_a, i, step_seed)
            margin_new, loss_new = self.evaluate(proposal, tf.gather_nd(labels, index))
            better = active_a & ((loss_new < loss_a) | (margin_new <= 0.0))
            return (
                i + 1,
                tf.tensor_scatter_nd_update(
                    best, index, primitives.select(better, proposal, best_a)
                ),
                tf.tensor_scatter_nd_update(margin, index, tf.where(better, margin_new, margin_a)),
                tf.tensor_scatter_nd_update(loss, index, tf.where(better, loss_new, loss_a)),
                tf.tensor_scatter_nd_add(queries, index, tf.cast(active_a, tf.int32)),
            )

        steps = self.num_queries - 1
        _, best, margin, loss, queries = tf.while_loop(
            lambda i, _, margin, *__: (i < steps) & tf.reduce_any(searching & (margin > 0.0)),
            body,
            (tf.constant(0), best, margin, loss, queries),
            maximum_iterations=max(steps, 1),
        )
        return best, margin, loss, queries


def _as_images(x):
    """``x`` as channels-last images (n, H, W, C) and the map back to the shape of ``x``."""
    rank = x.shape.rank
    shape = tf.shape(x)
    if rank == 4:
        images = x
    elif rank == 3:
        images = x[..., None]
    elif rank == 2:
        images = x[:, None, :, None]
    else:
        raise ValueError(
            "Square attacks images (n, height, width, channels), (n, height, width) or "
            f"feature vectors (n, features); got `x` of shape {tuple(x.shape)}."
        )

    def restore(z):
        return tf.reshape(z, tf.concat([tf.shape(z)[:1], shape[1:]], axis=0))

    return images, restore


def square(
    model_fn: Callable[[tf.Tensor], tf.Tensor],
    x,
    y,
    *,
    eps: float,
    norm: str = "linf",
    num_queries: int = 5000,
    p_init: float = 0.8,
    num_restarts: int = 1,
    value_range: tuple[float, float] | None = (0.0, 1.0),
    loss_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor] | None = None,
    seed=None,
    return_queries: bool = False,
):
    """Runs the Square Attack (see the module docstring) on a batch.

    Args:
        model_fn: Maps a batch of inputs to logits; only its outputs are used.
        x: Clean inputs, shape (n, H, W, C), (n, H, W) or (n, features), floating dtype.
        y: Integer labels, shape (n,) (one-hot labels of shape (n, K) are accepted).
        eps: Radius of the perturbation ball.
        norm: ``"linf"`` or ``"l2"``.
        num_queries: Queries per restart and sample (the start and ``num_queries - 1``
            random-search steps); the ``p`` schedule is stretched over it.
        p_init: Initial fraction of the pixels in the window, in (0, 1].
        num_restarts: Runs from fresh random starts; each runs only on the samples that no
            earlier run misclassified. Per sample the point with the lowest loss is kept.
        value_range: ``(low, high)`` box of valid inputs, or None.
        loss_fn: ``loss_fn(y, logits)``, a per-sample loss to maximise instead of the
            margin loss (a proposal is accepted when it raises it); samples still stop
            once misclassified. None: the margin ``z_y - max_{j != y} z_j`` is minimised.
            ``loss_fn`` is always called on the whole batch (so it may close over
            batch-aligned tensors), which costs a full-batch forward pass per query.
        seed: A ``keras.random.SeedGenerator`` (advanced once per call), an int
            (deterministic), a stateless seed pair or None (Keras's global generator).
        return_queries: Also return the int32 count (n,) of logits evaluations of each
            sample, including the clean one.

    Returns:
        ``x_adv`` (shape and dtype of ``x``, gradient-stopped, inside the ball and
        ``value_range``), or ``(x_adv, queries)`` when ``return_queries`` is True. A sample
        misclassified at ``x`` is returned unchanged; a sample never misclassified gets its
        lowest-loss point (the clean input if no search improved on it).

    Example:

    ```python
    x_adv = square(lambda z: model(z, training=False), x, y, eps=0.3, num_queries=1000,
                   seed=0)
    ```
    """
    x = tf.stop_gradient(tf.convert_to_tensor(x))
    labels = _class_indices(y)
    wide = primitives._compute_dtype(x.dtype)
    images, restore = _as_images(tf.cast(x, wide))
    eps_t = primitives._scalar(eps, wide)
    num_restarts = int(num_restarts)
    base_seed = primitives.stateless_seed(seed)

    def evaluate(z, lab):
        """(margin, loss to minimise) of each sample of ``z``, float32."""
        logits = tf.cast(model_fn(tf.cast(restore(z), x.dtype)), tf.float32)
        margin = -tf.cast(losses.cw_margin(lab, logits), tf.float32)
        if loss_fn is None:
            return margin, margin
        return margin, -tf.cast(loss_fn(lab, logits), tf.float32)

    # The model sees only the samples still searched, unless a loss_fn may need whole batches.
    compact = loss_fn is None
    search = _Search(evaluate, eps_t, norm, num_queries, p_init, value_range, wide, compact)
    margin, loss = evaluate(images, labels)
    queries = tf.ones_like(labels, dtype=tf.int32)

    def restart(r, best, margin, loss, queries):
        searching = margin > 0.0
        index = search.rows(searching)
        searching_a = tf.gather_nd(searching, index)
        seed_r = tf.random.experimental.stateless_fold_in(base_seed, r)
        found, margin_r, loss_r, queries_r = search.run(
            tf.gather_nd(images, index), tf.gather_nd(labels, index), seed_r, searching_a
        )
        margin_a, loss_a = tf.gather_nd(margin, index), tf.gather_nd(loss, index)
        better = searching_a & ((loss_r < loss_a) | (margin_r <= 0.0))
        found = primitives.select(better, found, tf.gather_nd(best, index))
        return (
            r + 1,
            tf.tensor_scatter_nd_update(best, index, found),
            tf.tensor_scatter_nd_update(margin, index, tf.where(better, margin_r, margin_a)),
            tf.tensor_scatter_nd_update(loss, index, tf.where(better, loss_r, loss_a)),
            tf.tensor_scatter_nd_add(queries, index, queries_r),
        )

    _, best, _, _, queries = tf.while_loop(
        lambda r, _, margin, *__: (r < num_restarts) & tf.reduce_any(margin > 0.0),
        restart,
        (tf.constant(0), images, margin, loss, queries),
        maximum_iterations=num_restarts,
    )
    delta = primitives.project(restore(best) - tf.cast(x, wide), eps_t, norm)
    x_adv = tf.stop_gradient(
        tf.cast(primitives.clip_to_range(tf.cast(x, wide) + delta, value_range), x.dtype)
    )
    if return_queries:
        return x_adv, tf.stop_gradient(queries)
    return x_adv


@keras.saving.register_keras_serializable(package="keras_mwat")
class Square(Attack):
    """Square Attack (Andriushchenko et al., ECCV 2020): black-box random search.

    Score-based and gradient-free, so it is unaffected by gradient masking: a useful check
    next to the gradient attacks. See ``keras_mwat.attacks.square`` for the algorithm.

    Query budget: at most ``1 + num_restarts * num_queries`` logits evaluations per sample
    (one on the clean input; per restart the random start and ``num_queries - 1``
    random-search steps). Samples stop once misclassified, and the search ends as soon as
    every sample of the batch is; the cost is a forward pass on the unfooled samples per
    step.

    Args:
        eps: Radius of the perturbation ball, >= 0.
        norm: ``"linf"`` or ``"l2"``.
        num_queries: Queries per sample and restart, >= 1 (AutoAttack uses 5000).
        p_init: Initial fraction of the pixels changed per step, in (0, 1] (0.8, as in
            AutoAttack); it is halved along the paper's schedule.
        num_restarts: Random restarts, >= 1, each on the samples still correctly
            classified.
        value_range: ``(low, high)`` box of valid inputs, or None.
        seed: Non-negative int for reproducible searches, or None.

    Example:

    ```python
    attack = keras_mwat.attacks.Square(eps=0.3, num_queries=5000, seed=0)
    x_adv = attack(model, x_test, y_test, batch_size=500)
    ```
    """

    def __init__(
        self,
        eps=8 / 255,
        norm="linf",
        num_queries=5000,
        p_init=0.8,
        num_restarts=1,
        value_range=(0.0, 1.0),
        seed=None,
    ):
        super().__init__(eps=eps, norm=norm, value_range=value_range, seed=seed)
        self.num_queries = validation.check_int(num_queries, "num_queries", minimum=1)
        self.p_init = validation.check_positive(p_init, "p_init")
        if self.p_init > 1.0:
            raise ValueError(f"`p_init` must be in (0, 1], got p_init={p_init!r}.")
        self.num_restarts = validation.check_int(num_restarts, "num_restarts", minimum=1)

    def _perturb(self, model_fn, x, y, *, seed, loss_fn, trace: bool):
        """Runs ``square`` with this attack's settings (see ``Attack._perturb``).

        ``loss_fn``, when given, replaces the margin loss as the acceptance criterion.
        Square has its own start (stripes or bumps) and no iterates to trace.
        """
        x_adv = square(
            model_fn,
            x,
            y,
            eps=self._radius(self.eps),
            norm=self.norm,
            num_queries=self.num_queries,
            p_init=self.p_init,
            num_restarts=self.num_restarts,
            value_range=self.value_range,
            loss_fn=loss_fn,
            seed=self.seed_generator if seed is None else seed,
        )
        return x_adv, None

    def get_config(self) -> dict:
        """Returns the constructor arguments."""
        config = super().get_config()
        config.update(
            num_queries=self.num_queries, p_init=self.p_init, num_restarts=self.num_restarts
        )
        return config
