"""The full Fashion-MNIST (60,000 training and 10,000 test images), read offline.

Fashion-MNIST (Xiao, Rasul, Vollgraf 2017) ships as four gzipped IDX files. Debian's
package ``dataset-fashion-mnist`` (``sudo apt-get install dataset-fashion-mnist``, or
``make fashion-mnist``) installs them in ``/usr/share/datasets/fashion-mnist``, the default
folder here; any folder holding the same four files works (``keras.datasets`` caches them
under the same names in ``~/.keras/datasets/fashion-mnist``). ``path="keras"`` downloads
them through ``keras.datasets.fashion_mnist`` instead.

The IDX format: a 4-byte magic number (two zero bytes, a type code, 0x08 for unsigned
bytes, and the number of dimensions), one big-endian uint32 per dimension, then the data in
row-major order. Images have magic 2051 (0x00000803, dims n x 28 x 28), labels 2049
(0x00000801, dims n).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np

from keras_mwat.data.holdout import holdout_split
from keras_mwat.data.splits import ImageSplits
from keras_mwat.validation import check_int

__all__ = ["FashionMNISTData", "load_fashion_mnist", "read_idx", "DEFAULT_PATH", "FILES"]

DEFAULT_PATH = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the files."""

FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
"""The four IDX files, by the array they hold."""

CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_IMAGE_SHAPE = (28, 28, 1)
_IMAGES_MAGIC = 0x00000803
_LABELS_MAGIC = 0x00000801
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Reads one IDX file (gzipped or not) into a NumPy array.

    Args:
        path: The file, e.g. ``train-images-idx3-ubyte.gz``; gzip is detected from the
            content, not the name.

    Returns:
        The array, with the shape of the header and the dtype of its type code (uint8 for
        the MNIST-family files), in native byte order.

    Raises:
        ValueError: If the file is not a valid IDX file: corrupt gzip, a magic number
            without the two leading zero bytes, an unknown type code, or a payload whose
            size does not match the header.

    Example:
        >>> from keras_mwat.data.fashion_mnist import read_idx
        >>> y = read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
        >>> y.shape, y.dtype  # doctest: +SKIP
        ((10000,), dtype('uint8'))
    """
    return _parse_idx(Path(path))[1]


def _parse_idx(path: Path) -> tuple[int, np.ndarray]:
    """``(magic number, array)`` of an IDX file; see ``read_idx``."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path} is not a valid gzip file ({error}).") from error
    if len(raw) < 4:
        raise ValueError(f"{path} is not an IDX file: {len(raw)} bytes, shorter than a header.")
    magic = int.from_bytes(raw[:4], "big")
    type_code, ndim = raw[2], raw[3]
    if raw[:2] != b"\x00\x00" or type_code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{path} is not an IDX file: bad magic number 0x{magic:08X} (expected two zero "
            "bytes, a type code such as 0x08 and the number of dimensions, e.g. 0x00000803 "
            "for images, 0x00000801 for labels)."
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated: the header of {ndim} dimensions is incomplete.")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path} has {len(raw) - header} bytes of data, but its header (shape {shape}, "
            f"{dtype.name}) announces {expected}: the file is truncated or corrupt."
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return magic, array.astype(dtype.newbyteorder("="))  # a writable, native-order copy


def _read_checked(path: Path, kind: str) -> np.ndarray:
    """Reads an image file (``kind="images"``) or a label file and checks its header."""
    magic, array = _parse_idx(path)
    expected, shape = (_IMAGES_MAGIC, "(n, 28, 28)") if kind == "images" else (_LABELS_MAGIC, "(n,)")
    if magic != expected:
        raise ValueError(
            f"{path} does not hold Fashion-MNIST {kind}: expected magic number {expected} "
            f"(0x{expected:08X}: unsigned bytes of shape {shape}), got {magic} (0x{magic:08X}: "
            f"{array.dtype.name} data of shape {array.shape})."
        )
    if kind == "images" and array.shape[1:] != _IMAGE_SHAPE[:2]:
        raise ValueError(f"{path} holds images of shape {array.shape[1:]}, expected (28, 28).")
    if kind == "labels" and array.size and array.max() >= len(CLASS_NAMES):
        raise ValueError(
            f"{path} holds label {int(array.max())}; Fashion-MNIST labels are 0..9."
        )
    return array


def _missing_message(folder: Path, missing: list[str]) -> str:
    return (
        f"Fashion-MNIST not found in {folder}: missing {', '.join(missing)}. To fix it, "
        "either install Debian's package, which puts the four files in "
        f"{DEFAULT_PATH}: `sudo apt-get install dataset-fashion-mnist` (or `make "
        "fashion-mnist` in a keras-mwat checkout); or pass path= a folder holding the four "
        f"IDX files ({', '.join(FILES.values())}); or, online, pass path=\"keras\" to download "
        "them through keras.datasets.fashion_mnist."
    )


def _read_folder(folder: Path) -> dict[str, np.ndarray]:
    if not folder.is_dir():
        raise FileNotFoundError(_missing_message(folder, list(FILES.values())))
    files = {}
    for key, name in FILES.items():
        # Also accept the files gunzipped (the same name without ".gz").
        candidates = [folder / name, folder / name.removesuffix(".gz")]
        files[key] = next((c for c in candidates if c.is_file()), None)
    missing = [FILES[key] for key, file in files.items() if file is None]
    if missing:
        raise FileNotFoundError(_missing_message(folder, missing))
    arrays = {
        key: _read_checked(file, "images" if key.startswith("x") else "labels")
        for key, file in files.items()
    }
    for split in ("train", "test"):
        n_x, n_y = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if n_x != n_y:
            raise ValueError(
                f"{files[f'x_{split}']} holds {n_x} images but {files[f'y_{split}']} holds "
                f"{n_y} labels."
            )
    return arrays


def _download_with_keras() -> dict[str, np.ndarray]:  # pragma: no cover - needs network
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def _to_float(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    x /= np.float32(255.0)  # in place: one float32 copy of the images, not two
    return x.reshape((-1, *_IMAGE_SHAPE))


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class FashionMNISTData(ImageSplits):
    """Train / validation / test splits of Fashion-MNIST.

    Images are float32 in ``[0, 1]`` with shape (n, 28, 28, 1); labels are int64 class
    indices of shape (n,), named by ``class_names``. Create it with
    ``load_fashion_mnist``. The splits, datasets, ``subset`` and ``with_holdout`` come from
    ``ImageSplits``.

    Attributes:
        x_train: Training images.
        y_train: Training labels.
        x_val: Validation images (taken from the 60,000 training images).
        y_val: Validation labels.
        x_test: Test images (the official 10,000).
        y_test: Test labels.
        num_classes: Number of classes (10).
        input_shape: Shape of one image, ``(28, 28, 1)``.
        value_range: Range of the pixel values, ``(0.0, 1.0)``.
        class_names: ``("T-shirt/top", "Trouser", ..., "Ankle boot")``.

    Example:
        >>> import keras_mwat as km
        >>> data = km.data.load_fashion_mnist()  # doctest: +SKIP
        >>> data  # doctest: +SKIP
        FashionMNISTData(train=60000, validation=0, test=10000, input_shape=(28, 28, 1), num_classes=10)
        >>> data.class_names[data.y_test[0]]  # doctest: +SKIP
        'Ankle boot'
    """  # noqa: E501

    num_classes: ClassVar[int] = 10
    input_shape: ClassVar[tuple[int, int, int]] = _IMAGE_SHAPE
    value_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    class_names: ClassVar[tuple[str, ...]] = CLASS_NAMES


def load_fashion_mnist(
    path: str | os.PathLike | None = None,
    validation_size: int = 0,
    seed: int = 0,
) -> FashionMNISTData:
    """Loads the full Fashion-MNIST: 60,000 training and 10,000 test images.

    The four IDX files are read and checked (magic numbers, sizes, labels 0..9) with NumPy;
    nothing is downloaded unless ``path="keras"``. Images are scaled to float32 in
    ``[0, 1]`` (a pixel ``p`` becomes ``p / 255``) with shape (n, 28, 28, 1); labels are
    int64. Training and test images keep the order of the files.

    The default ``validation_size=0`` keeps all 60,000 training images, as the paper's
    baselines use them; its protocol for MWAT (BiLAW) holds out two sets of 1,000 instead:
    ``load_fashion_mnist().with_holdout(meta=1000, early_stopping=1000)``. A validation
    split, when asked for, is drawn from the training images by ``holdout_split``
    (stratified by class with ``seed``); the remaining training images keep their order.

    Args:
        path: Folder holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
            ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (or the same
            names without ``.gz``). None: ``/usr/share/datasets/fashion-mnist``, where
            ``sudo apt-get install dataset-fashion-mnist`` puts them. ``"keras"``: download
            them with ``keras.datasets.fashion_mnist.load_data()`` (needs internet access the
            first time; pass ``"./keras"`` for a local folder of that name).
        validation_size: Validation images taken from the training set (>= 0, below the
            number of training images; use a multiple of 10 for equal class counts).
        seed: Seed of the validation draw (>= 0).

    Returns:
        A ``FashionMNISTData``.

    Raises:
        FileNotFoundError: If a file is missing; the message names the folder searched,
            the ``apt-get install dataset-fashion-mnist`` command, ``path=`` and
            ``path="keras"``.
        ValueError: If a file is not a valid Fashion-MNIST IDX file (bad magic number,
            wrong size or shape, labels out of range), or for an invalid ``validation_size``.
        TypeError: If an argument has the wrong type.

    Example:
        >>> import keras_mwat as km
        >>> data = km.data.load_fashion_mnist(validation_size=5000)  # doctest: +SKIP
        >>> len(data.y_train), len(data.y_val), len(data.y_test)  # doctest: +SKIP
        (55000, 5000, 10000)
        >>> paper = km.data.load_fashion_mnist().with_holdout(
        ...     meta=1000, early_stopping=1000, seed=0)  # doctest: +SKIP
        >>> len(paper.y_train), len(paper.y_meta), len(paper.y_early_stopping)  # doctest: +SKIP
        (58000, 1000, 1000)
    """
    validation_size = check_int(validation_size, "validation_size", minimum=0)
    seed = check_int(seed, "seed", minimum=0)
    if isinstance(path, str) and path == "keras":
        arrays = _download_with_keras()
    elif path is None or isinstance(path, str | os.PathLike):
        arrays = _read_folder(DEFAULT_PATH if path is None else Path(path).expanduser())
    else:
        raise TypeError(
            f"`path` must be a folder (str or os.PathLike), \"keras\" or None, got path={path!r}."
        )
    x_train, y_train = arrays["x_train"], arrays["y_train"].astype(np.int64)
    x_test, y_test = arrays["x_test"], arrays["y_test"].astype(np.int64)
    n_train = len(y_train)
    if validation_size >= n_train:
        raise ValueError(
            f"`validation_size` must be below the {n_train} training images (some must "
            f"remain for training), got validation_size={validation_size}."
        )
    if validation_size:
        (x_train, y_train), (x_val, y_val) = holdout_split(
            (x_train, y_train), sizes=validation_size, seed=seed
        )
    else:
        x_val, y_val = x_train[:0], y_train[:0]
    return FashionMNISTData(
        _to_float(x_train), y_train, _to_float(x_val), y_val, _to_float(x_test), y_test
    )
