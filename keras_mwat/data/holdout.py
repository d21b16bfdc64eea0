"""Held-out sets drawn from a training set, stratified by class.

The paper (BiLAW, Holtz et al. 2022) takes two sets of 1,000 images out of the training
set: a meta set that trains the weight network and an early-stopping set. ``holdout_split``
draws any number of such sets at once, so that they are disjoint and each keeps the class
proportions of the whole.

Stratification is a joint rounding: every set (the held-out ones and the remaining
training set) gets from each class ``floor`` or ``ceil`` of its proportional share
``n_class * size / n``, while the sizes of the sets and of the classes are met exactly.
Rounding each set on its own (largest remainder, set after set) cannot promise both; a
joint rounding always exists (Bacharach 1966, "matrix rounding problems") and is found by
augmenting paths in the small classes x sets graph, the classes that get the extra unit
chosen at random.
"""

from __future__ import annotations

import numbers
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_mwat.validation import check_int

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = ["holdout_split"]


def _check_sizes(sizes) -> tuple[int, ...]:
    if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
        sizes = (sizes,)
    if not isinstance(sizes, Sequence) or isinstance(sizes, str) or not sizes:
        raise TypeError(
            f"`sizes` must be an integer or a non-empty sequence of integers, got sizes={sizes!r}."
        )
    checked = []
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, numbers.Integral):
            raise TypeError(f"`sizes` must hold integers, got sizes={tuple(sizes)!r}.")
        if size < 0:
            raise ValueError(f"`sizes` must be >= 0, got sizes={tuple(sizes)!r}.")
        checked.append(int(size))
    return tuple(checked)


def _class_ids(y: np.ndarray) -> np.ndarray:
    """Integer class ids of ``y``: class indices (n,) or one-hot / probability rows (n, K)."""
    if y.ndim == 2:
        return np.argmax(y, axis=1)
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise TypeError(
            "To stratify, `y` must hold integer class indices of shape (n,) or one-hot rows "
            f"of shape (n, K), got dtype {y.dtype} and shape {y.shape}; pass stratify=False "
            "to draw a plain random sample."
        )
    return y


def _augment(row, free, extra, col_left, col_order) -> bool:
    """Adds one unit to ``row`` along an augmenting path (BFS); False if there is none."""
    num_rows = free.shape[0]
    # Nodes: rows 0..R-1, columns R..R+P-1. parent[node] = previous node on the path.
    parent = {row: None}
    queue = deque([row])
    while queue:
        r = queue.popleft()
        for k in col_order:
            col = num_rows + k
            if col in parent or not free[r, k] or extra[r, k]:
                continue
            parent[col] = r
            if col_left[k] > 0:  # path found: flip the edges along it
                col_left[k] -= 1
                node = col
                while parent[node] is not None:
                    prev = parent[node]
                    if node >= num_rows:  # row prev -> column node: add
                        extra[prev, node - num_rows] = 1
                    else:  # column prev -> row node: remove
                        extra[node, prev - num_rows] = 0
                    node = prev
                return True
            for r2 in np.flatnonzero(extra[:, k]):  # reroute a unit of column k
                if r2 not in parent:
                    parent[int(r2)] = col
                    queue.append(int(r2))
    return False


def _stratified_counts(
    classes: np.ndarray, counts: np.ndarray, sizes: Sequence[int], rng: np.random.Generator
) -> np.ndarray:
    """Per-class counts of every set: an int array (classes, sets).

    Row c sums to ``counts[c]``, column k to ``sizes[k]``, and each entry is the floor or
    the ceiling of ``counts[c] * sizes[k] / n``: the floors, plus one unit in some cells
    with a fractional share, chosen by augmenting paths (a bipartite b-matching between
    the classes' and the sets' missing units, which exists because the fractional parts
    themselves are a fractional solution).
    """
    counts = np.asarray(counts, dtype=np.int64)
    sizes_arr = np.asarray(sizes, dtype=np.int64)
    product = counts[:, None] * sizes_arr[None, :]
    total = max(int(counts.sum()), 1)
    low = product // total  # exact integer floors
    free = product % total != 0  # cells whose share is fractional may get one more
    row_need = counts - low.sum(axis=1)
    col_left = sizes_arr - low.sum(axis=0)
    extra = np.zeros_like(low)
    col_order = rng.permutation(len(sizes))
    for c in rng.permutation(len(counts)):  # random classes get the extra units
        for _ in range(int(row_need[c])):
            if not _augment(c, free, extra, col_left, col_order):  # pragma: no cover
                raise RuntimeError(  # impossible by the matrix-rounding theorem
                    f"No stratified rounding of sets {tuple(sizes)} over class counts "
                    f"{counts.tolist()}; please report this."
                )
    return low + extra


def _check_stratifiable(classes, counts, parts_sizes) -> None:
    """Raises if a class has a single sample while two or more sets are non-empty."""
    if sum(1 for size in parts_sizes if size > 0) < 2:
        return
    rare = np.flatnonzero(counts < 2)
    if rare.size:
        raise ValueError(
            f"Cannot stratify: class {classes[rare[0]].item()!r} has only "
            f"{int(counts[rare[0]])} sample, too few to keep its proportion in more than one "
            f"set ({rare.size} such class(es)). Pass stratify=False, or drop or merge the "
            "rare classes."
        )


def _split_indices(
    y: np.ndarray | None, n: int, sizes: tuple[int, ...], rng: np.random.Generator
) -> list[np.ndarray]:
    """Index arrays of the remaining set (sorted) and of each held-out set (shuffled)."""
    parts_sizes = (*sizes, n - sum(sizes))
    if y is None:
        order = rng.permutation(n)
        parts = np.split(order, np.cumsum(parts_sizes)[:-1])
    else:
        classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        _check_stratifiable(classes, counts, parts_sizes)
        alloc = _stratified_counts(classes, counts, parts_sizes, rng)
        order = rng.permutation(n)
        grouped = order[np.argsort(inverse[order], kind="stable")]  # by class, shuffled within
        by_class = np.split(grouped, np.cumsum(counts)[:-1])
        parts = [
            np.concatenate(
                [
                    members[alloc[c, :k].sum() : alloc[c, : k + 1].sum()]
                    for c, members in enumerate(by_class)
                ]
            )
            for k in range(len(parts_sizes))
        ]
        parts = [part[rng.permutation(len(part))] for part in parts]  # mix the classes
    held_out, rest = parts[:-1], np.sort(parts[-1])
    return [rest, *held_out]


def _split_arrays(data, sizes, seed, stratify) -> list[tuple[np.ndarray, np.ndarray]]:
    if not isinstance(data, tuple | list) or len(data) != 2:
        raise TypeError(
            "`data` must be an (x, y) tuple of arrays or a tf.data.Dataset of (x, y) "
            f"elements, got {type(data).__name__}."
        )
    x, y = (np.asarray(a) for a in data)
    if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
        raise ValueError(
            f"`data` must be (x, y) with as many samples in x as in y, got shapes {x.shape} "
            f"and {y.shape}."
        )
    n = len(y)
    if sum(sizes) > n:
        raise ValueError(
            f"`sizes` ask for {sum(sizes)} held-out samples in total, more than the {n} in "
            f"`data`: got sizes={sizes}."
        )
    rng = np.random.default_rng(seed)
    indices = _split_indices(_class_ids(y) if stratify else None, n, sizes, rng)
    return [(x[i], y[i]) for i in indices]  # fancy indexing: copies


def _split_dataset(dataset: tf.data.Dataset, sizes, seed, stratify) -> list[tf.data.Dataset]:
    import tensorflow as tf

    spec = dataset.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise ValueError(
            f"`data` must be a tf.data.Dataset of (x, y) elements, got elements {spec!r}."
        )
    rank = spec[1].shape.rank
    if rank not in (0, 1):
        raise ValueError(
            "`data` must yield integer labels y of shape () (unbatched) or (batch,) "
            f"(batched), got y of shape {spec[1].shape}. Convert one-hot labels with "
            "argmax, or pass (x, y) arrays."
        )
    if int(dataset.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise ValueError("`data` is an infinite tf.data.Dataset (e.g. .repeat()); pass one epoch.")
    batched = rank == 1
    xs, ys = [], []
    for x, y in dataset.as_numpy_iterator():
        xs.append(x)
        ys.append(y)
    if not ys:
        raise ValueError("`data` is an empty tf.data.Dataset.")
    join = np.concatenate if batched else np.stack
    batch_size = len(ys[0]) if batched else None
    parts = _split_arrays((join(xs), join(ys)), sizes, seed, stratify)

    def to_dataset(x, y):
        part = tf.data.Dataset.from_tensor_slices((x, y))
        return part.batch(batch_size) if batched else part

    return [to_dataset(x, y) for x, y in parts]


def holdout_split(
    data: tuple[Any, Any] | tf.data.Dataset,
    sizes: int | Sequence[int] = (1000, 1000),
    seed: int = 0,
    stratify: bool = True,
) -> tuple:
    """Splits held-out sets off a training set: ``(rest, held_out_1, held_out_2, ...)``.

    One held-out set is drawn per entry of ``sizes``; with the default ``(1000, 1000)``,
    the paper's meta set and early-stopping set. The sets and the remaining training set
    are disjoint and together cover ``data`` exactly. With ``stratify=True`` each set keeps
    the class proportions of ``data``: every class gets ``floor`` or ``ceil`` of its
    proportional share ``n_class * size / n`` in every set (so at most one sample away from
    proportional, and exactly proportional when the shares are whole, e.g. 100 per class
    in 1,000 of a balanced 10-class set). A set smaller than the number of classes thus
    holds only some of them (each at most once). The extra units and the samples are chosen at random with ``seed``: the same seed and
    input give the same split.

    The remaining training set keeps the input order; each held-out set is in random order
    (classes mixed, so that consecutive batches of it are not one class).

    A ``tf.data.Dataset`` is **materialised**: it is read once into NumPy arrays (it must be
    finite and fit in memory), split as arrays, and returned as datasets of the same form.
    Its elements must be ``(x, y)`` with integer labels, unbatched (``y`` of shape ``()``)
    or batched (``y`` of shape ``(batch,)``); batched input gives datasets batched with the
    size of the input's first batch, in the order described above (add ``.shuffle`` for
    training). Reading the whole set is what a stratified draw of exact sizes needs (the
    class counts must be known); a shuffled ``take(n)`` is neither stratified nor, with a
    reshuffling input, disjoint across epochs. Iterating the input must give the same order
    each time for the split to be reproducible.

    Args:
        data: ``(x, y)`` arrays (``y`` integer class indices of shape (n,), or one-hot rows
            of shape (n, K)), or a ``tf.data.Dataset`` of ``(x, y)`` elements.
        sizes: Size of each held-out set (>= 0), or one integer for a single set.
        seed: Seed of the draw (>= 0).
        stratify: Draw per class in proportion; False draws plain random samples.

    Returns:
        A tuple ``(rest, held_out_1, ...)`` with ``len(sizes) + 1`` entries: ``(x, y)``
        array tuples for array input (copies), ``tf.data.Dataset``s for dataset input.

    Raises:
        TypeError: If ``data``, ``sizes`` or ``seed`` has the wrong type, or the labels are
            not class indices (with ``stratify=True``).
        ValueError: If a size is negative, the sizes add up to more than ``data`` holds, or
            a class is too small to stratify: it has a single sample while two or more
            sets are non-empty (as in scikit-learn; pass ``stratify=False``).

    Example:
        >>> import numpy as np
        >>> from keras_mwat.data import holdout_split
        >>> x = np.random.rand(6000, 28, 28, 1).astype("float32")
        >>> y = np.repeat(np.arange(10), 600)
        >>> train, meta, early_stopping = holdout_split((x, y), sizes=(1000, 1000), seed=0)
        >>> len(train[1]), np.bincount(meta[1]).tolist()
        (4000, [100, 100, 100, 100, 100, 100, 100, 100, 100, 100])
    """
    sizes = _check_sizes(sizes)
    seed = check_int(seed, "seed", minimum=0)
    if not isinstance(stratify, bool | np.bool_):
        raise TypeError(f"`stratify` must be a bool, got stratify={stratify!r}.")
    if hasattr(data, "element_spec") and hasattr(data, "as_numpy_iterator"):
        return tuple(_split_dataset(data, sizes, seed, bool(stratify)))
    return tuple(_split_arrays(data, sizes, seed, bool(stratify)))
