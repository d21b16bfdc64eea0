"""The in-memory splits shared by the array datasets (embedded MNIST, Fashion-MNIST).

``ImageSplits`` holds train / validation / test arrays of an image classification dataset
(and, after ``with_holdout``, the paper's held-out meta and early-stopping sets), turns them
into ``tf.data`` pipelines and draws stratified subsets. A dataset is a subclass that sets
``num_classes``, ``input_shape`` and ``class_names``; ``dataclasses.replace`` (used by
``subset`` and ``with_holdout``) keeps that subclass.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from keras_mwat.data.holdout import holdout_split
from keras_mwat.validation import check_int

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = ["ImageSplits"]

_SPLITS = (  # (attribute suffix, public name)
    ("train", "train"),
    ("val", "validation"),
    ("test", "test"),
    ("meta", "meta"),
    ("early_stopping", "early_stopping"),
)


def _allocate(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Splits ``n`` draws across classes in proportion to ``counts`` (largest remainder).

    Each class gets ``floor(n * p_c)`` or one more; the extra units go to the largest
    fractional parts, ties broken at random. Requires ``0 <= n <= counts.sum()``; the result
    never exceeds ``counts``.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0 or n == 0:
        return np.zeros_like(counts)
    quotas = counts * n / total
    alloc = np.floor(quotas).astype(np.int64)
    remainder = n - int(alloc.sum())
    if remainder > 0:
        fractions = quotas - alloc
        tie_break = rng.permutation(len(counts))
        # Stable sort on a random permutation: equal fractions are taken in random order.
        ranked = tie_break[np.argsort(-fractions[tie_break], kind="stable")]
        alloc[ranked[:remainder]] += 1
    return np.minimum(alloc, counts)


def _stratified_indices(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` samples of ``y`` drawn per class in proportion, in shuffled order.

    With fewer samples requested than classes present, the classes that get one are chosen
    at random (the draw is then a plain random sample).
    """
    if n >= len(y):
        return rng.permutation(len(y))
    classes, counts = np.unique(y, return_counts=True)
    alloc = _allocate(counts, n, rng)
    order = rng.permutation(len(y))
    shuffled_labels = y[order]
    picked = [order[shuffled_labels == c][:k] for c, k in zip(classes, alloc, strict=True)]
    indices = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    return indices[rng.permutation(len(indices))]


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"`{name}` must be a bool, got {name}={value!r}.")
    return bool(value)


def _make_dataset(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    import tensorflow as tf

    batch_size = check_int(batch_size, "batch_size", minimum=1)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle and len(y) > 1:
        dataset = dataset.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class ImageSplits:
    """Train / validation / test arrays of an image classification dataset.

    The base of ``EmbeddedData`` and ``FashionMNISTData``: a subclass sets the class
    attributes ``num_classes``, ``input_shape``, ``value_range`` and ``class_names``. Images
    have shape ``(n, *input_shape)``, labels are int64 class indices of shape (n,). The
    held-out ``meta`` and ``early_stopping`` sets are empty unless made by ``with_holdout``.

    Attributes:
        x_train: Training images.
        y_train: Training labels.
        x_val: Validation images.
        y_val: Validation labels.
        x_test: Test images.
        y_test: Test labels.
        x_meta: Meta-set images (held out from training by ``with_holdout``).
        y_meta: Meta-set labels.
        x_early_stopping: Early-stopping images (held out by ``with_holdout``).
        y_early_stopping: Early-stopping labels.

    Example:
        >>> import keras_mwat as km
        >>> data = km.data.load_embedded(seed=0)
        >>> isinstance(data, km.data.ImageSplits)
        True
        >>> paper = data.with_holdout(meta=500, early_stopping=500, seed=0)
        >>> len(paper.y_train), len(paper.y_meta), len(paper.y_early_stopping)
        (2500, 500, 500)
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_meta: np.ndarray | None = None
    y_meta: np.ndarray | None = None
    x_early_stopping: np.ndarray | None = None
    y_early_stopping: np.ndarray | None = None

    num_classes: ClassVar[int]
    input_shape: ClassVar[tuple[int, ...]]
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    class_names: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        if not hasattr(type(self), "num_classes") or not hasattr(type(self), "input_shape"):
            raise TypeError(
                "ImageSplits is a base class: use a dataset's subclass (EmbeddedData, "
                "FashionMNISTData) or subclass it with `num_classes` and `input_shape`."
            )
        for held_out in ("meta", "early_stopping"):
            x, y = getattr(self, f"x_{held_out}"), getattr(self, f"y_{held_out}")
            if (x is None) != (y is None):
                raise ValueError(f"Give both `x_{held_out}` and `y_{held_out}`, or neither.")
            if x is None:  # empty, with the dtypes of the training split
                object.__setattr__(
                    self, f"x_{held_out}", np.zeros((0, *self.input_shape), self.x_train.dtype)
                )
                object.__setattr__(self, f"y_{held_out}", np.zeros((0,), self.y_train.dtype))
        for split, _ in _SPLITS:
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.shape[1:] != tuple(self.input_shape) or y.shape != (x.shape[0],):
                raise ValueError(
                    f"`x_{split}` must have shape (n, {', '.join(map(str, self.input_shape))}) "
                    f"and `y_{split}` shape (n,), got {x.shape} and {y.shape}."
                )

    def __repr__(self) -> str:
        sizes = [f"train={len(self.y_train)}", f"validation={len(self.y_val)}"]
        sizes.append(f"test={len(self.y_test)}")
        if self.has_holdout:
            sizes.append(f"meta={len(self.y_meta)}")
            sizes.append(f"early_stopping={len(self.y_early_stopping)}")
        return (
            f"{type(self).__name__}({', '.join(sizes)}, input_shape={self.input_shape}, "
            f"num_classes={self.num_classes})"
        )

    @property
    def train(self) -> tuple[np.ndarray, np.ndarray]:
        """The training split as an ``(x, y)`` tuple."""
        return self.x_train, self.y_train

    @property
    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """The validation split as an ``(x, y)`` tuple."""
        return self.x_val, self.y_val

    @property
    def test(self) -> tuple[np.ndarray, np.ndarray]:
        """The test split as an ``(x, y)`` tuple."""
        return self.x_test, self.y_test

    @property
    def meta(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out meta set as an ``(x, y)`` tuple (empty before ``with_holdout``)."""
        return self.x_meta, self.y_meta

    @property
    def early_stopping(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out early-stopping set as an ``(x, y)`` tuple (empty before ``with_holdout``)."""
        return self.x_early_stopping, self.y_early_stopping

    @property
    def has_holdout(self) -> bool:
        """Whether a meta or an early-stopping set has been held out."""
        return len(self.y_meta) > 0 or len(self.y_early_stopping) > 0

    def train_dataset(
        self,
        batch_size: int = 128,
        shuffle: bool = True,
        seed: int = 0,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """Batched ``(x, y)`` training dataset, reshuffled every epoch.

        Args:
            batch_size: Samples per batch.
            shuffle: Shuffle with a full-size buffer, seeded with ``seed`` and reshuffled on
                every iteration (epoch).
            seed: Shuffle seed.
            drop_remainder: Drop the last, smaller batch.

        Returns:
            A prefetched ``tf.data.Dataset`` of ``(float32 images, int64 labels)``.
        """
        return self._shuffled_dataset(
            self.x_train, self.y_train, batch_size, shuffle, seed, drop_remainder
        )

    def validation_dataset(self, batch_size: int = 128) -> tf.data.Dataset:
        """Batched ``(x, y)`` validation dataset in a fixed order."""
        return _make_dataset(self.x_val, self.y_val, batch_size)

    def test_dataset(self, batch_size: int = 128) -> tf.data.Dataset:
        """Batched ``(x, y)`` test dataset in a fixed order."""
        return _make_dataset(self.x_test, self.y_test, batch_size)

    def meta_dataset(
        self,
        batch_size: int = 128,
        shuffle: bool = True,
        seed: int = 0,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """Batched ``(x, y)`` meta set, reshuffled every epoch (arguments of ``train_dataset``)."""
        return self._shuffled_dataset(
            self.x_meta, self.y_meta, batch_size, shuffle, seed, drop_remainder
        )

    def early_stopping_dataset(self, batch_size: int = 128) -> tf.data.Dataset:
        """Batched ``(x, y)`` early-stopping set in a fixed order."""
        return _make_dataset(self.x_early_stopping, self.y_early_stopping, batch_size)

    def _shuffled_dataset(self, x, y, batch_size, shuffle, seed, drop_remainder):
        shuffle = _check_bool(shuffle, "shuffle")
        drop_remainder = _check_bool(drop_remainder, "drop_remainder")
        seed = check_int(seed, "seed", minimum=0)
        return _make_dataset(
            x, y, batch_size, shuffle=shuffle, seed=seed, drop_remainder=drop_remainder
        )

    def subset(
        self,
        train: int | None = None,
        validation: int | None = None,
        test: int | None = None,
        seed: int = 0,
    ) -> ImageSplits:
        """A smaller copy with at most the given number of samples per split.

        Samples are drawn per class in proportion to the split's class counts (largest
        remainder, ties broken at random), so a subset of a balanced split stays balanced.
        A split asked for at least its size is kept whole. Held-out sets are kept whole.

        Args:
            train: Training samples to keep; None keeps them all.
            validation: Validation samples to keep; None keeps them all.
            test: Test samples to keep; None keeps them all.
            seed: Seed of the draw.

        Returns:
            A new object of the same class.

        Example:
            >>> from keras_mwat.data import load_embedded
            >>> tiny = load_embedded().subset(train=100, validation=20, test=20)
            >>> len(tiny.y_train), len(tiny.y_val), len(tiny.y_test)
            (100, 20, 20)
        """
        sizes = {
            "train": train if train is None else check_int(train, "train", minimum=0),
            "validation": (
                validation if validation is None else check_int(validation, "validation", minimum=0)
            ),
            "test": test if test is None else check_int(test, "test", minimum=0),
        }
        rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
        fields = {}
        for attr, split in _SPLITS[:3]:
            x = getattr(self, f"x_{attr}")
            y = getattr(self, f"y_{attr}")
            n = sizes[split]
            if n is None or n >= len(y):
                fields[f"x_{attr}"], fields[f"y_{attr}"] = x.copy(), y.copy()
            else:
                keep = _stratified_indices(y, n, rng)
                fields[f"x_{attr}"], fields[f"y_{attr}"] = x[keep], y[keep]
        return dataclasses.replace(self, **fields)

    def with_holdout(
        self,
        meta: int = 1000,
        early_stopping: int = 1000,
        seed: int = 0,
        stratify: bool = True,
    ) -> ImageSplits:
        """A copy with a meta set and an early-stopping set held out from the training split.

        The paper (BiLAW) holds out two sets of 1,000 training images: the meta set trains
        the weight network, the early-stopping set selects the epoch. Both are drawn from
        the training split by ``holdout_split`` (stratified by class with ``seed``,
        disjoint); the remaining training samples keep their order, validation and test are
        unchanged. The result is the same class, so every split keeps its dataset methods
        (``meta_dataset()``, ``early_stopping_dataset()``) and its ``class_names``.

        Args:
            meta: Size of the meta set (>= 0).
            early_stopping: Size of the early-stopping set (>= 0).
            seed: Seed of the draw (>= 0).
            stratify: Draw per class in proportion (see ``holdout_split``); False draws a
                plain random sample.

        Returns:
            A new object of the same class with ``meta`` and ``early_stopping`` filled and
            ``meta + early_stopping`` fewer training samples.

        Raises:
            ValueError: If held-out sets exist already, a size is negative, the sizes exceed
                the training split, or a class is too small to stratify.

        Example:
            >>> from keras_mwat.data import load_embedded
            >>> data = load_embedded().with_holdout(meta=200, early_stopping=100, seed=0)
            >>> data
            EmbeddedData(train=3200, validation=500, test=1000, meta=200, early_stopping=100, input_shape=(28, 28, 1), num_classes=10)
            >>> x_meta, y_meta = data.meta  # e.g. MWATModel(..., meta_data=data.meta)
        """  # noqa: E501
        meta = check_int(meta, "meta", minimum=0)
        early_stopping = check_int(early_stopping, "early_stopping", minimum=0)
        if self.has_holdout:
            raise ValueError(
                f"This {type(self).__name__} already has held-out sets (meta="
                f"{len(self.y_meta)}, early_stopping={len(self.y_early_stopping)}); call "
                "with_holdout once, on the data as loaded."
            )
        if meta + early_stopping > len(self.y_train):
            raise ValueError(
                f"`meta` + `early_stopping` must be at most the {len(self.y_train)} training "
                f"samples, got meta={meta}, early_stopping={early_stopping}."
            )
        rest, meta_set, early_set = holdout_split(
            self.train, sizes=(meta, early_stopping), seed=seed, stratify=stratify
        )
        return dataclasses.replace(
            self,
            x_train=rest[0],
            y_train=rest[1],
            x_meta=meta_set[0],
            y_meta=meta_set[1],
            x_early_stopping=early_set[0],
            y_early_stopping=early_set[1],
        )
