"""TensorFlow Datasets (TFDS) image classification data as ``(x, y)`` batches.

``load_tfds`` turns a prepared TFDS dataset into what ``keras_mwat.MWATModel`` and
the attacks expect: float32 images in a declared ``value_range`` and int64 labels of shape
(batch,). ``dataset_info`` reports what a classifier needs (number of classes, input
shape, split sizes).

Nothing is downloaded unless ``download=True`` is passed: without it, a dataset that is not
prepared under ``data_dir`` raises ``FileNotFoundError`` at once (a plain ``tfds.load``
instead tries the network, which hangs for minutes offline). ``tensorflow_datasets`` is
imported on first use, so importing ``keras_mwat`` stays fast; it comes with the ``tfds``
extra (``pip install 'keras-mwat[tfds]'``), and a missing one is an ``ImportError`` naming it.
"""

from __future__ import annotations

import difflib
import math
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_mwat._optional import require
from keras_mwat.validation import check_int, check_value_range

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = ["load_tfds", "dataset_info"]

_SHUFFLE_BUFFER_BYTES = 256 * 2**20
"""Shuffle buffers hold at most this many bytes of (undecoded-dtype) images."""

_MIN_SHUFFLE_BUFFER = 1024

_FIX_HINT = (
    "To fix it: pass download=True on a machine with internet access (the data is then "
    "written to data_dir and reused offline), or build it there with `tfds build {name} "
    "--data_dir DIR` and copy DIR here, or pass the data_dir that already holds it."
)


def _import_tfds():
    """``tensorflow_datasets``, or a ``MissingExtraError`` naming the ``tfds`` extra."""
    return require("tensorflow_datasets", "keras_mwat.data.load_tfds")


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"`{name}` must be a bool, got {name}={value!r}.")
    return bool(value)


def _check_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TypeError(
            f"`name` must be a non-empty TFDS dataset name such as 'mnist' or "
            f"'mnist:3.0.1', got name={name!r}."
        )
    return name.strip()


def _searched_dirs(tfds, data_dir: str | None) -> list[str]:
    """The data directories TFDS looks in for ``data_dir`` (all registered ones for None)."""
    from keras_mwat import _compat

    dirs = _compat.tfds_data_dirs(data_dir)
    if dirs is None:  # pragma: no cover - tfds internals moved
        return [data_dir] if data_dir is not None else ["~/tensorflow_datasets"]
    return dirs


def _get_builder(name: str, data_dir: str | None):
    """Returns ``tfds.builder(name, data_dir=data_dir)`` with actionable errors.

    Creating a builder reads no data and never touches the network: for a registered
    dataset it instantiates the code, otherwise it looks for prepared files in the data
    directories.
    """
    tfds = _import_tfds()
    from keras_mwat import _compat

    try:
        return tfds.builder(name, data_dir=data_dir)
    except _compat.tfds_dataset_not_found_error() as error:
        base = name.split(":", 1)[0].split("/", 1)[0].lower()
        known = tfds.list_builders(with_community_datasets=False)
        close = difflib.get_close_matches(base, known, n=3)
        suggestion = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(
            f"Unknown TFDS dataset {name!r}: it is not a registered TFDS dataset and no "
            f"prepared copy was found in {_searched_dirs(tfds, data_dir)}.{suggestion} See "
            "the names with `tensorflow_datasets.list_builders()` or at "
            "https://www.tensorflow.org/datasets/catalog/overview; for a dataset you stored "
            "yourself, pass the data_dir it was written to."
        ) from error
    except (ValueError, AssertionError, KeyError) as error:
        # e.g. a malformed name, an unknown config, or a version that is not available
        # (TFDS raises AssertionError for the latter).
        raise ValueError(
            f"Cannot create the TFDS builder for {name!r} (data_dir={data_dir!r}): {error}"
        ) from error


def _image_and_label_keys(info, name: str) -> tuple[str, str]:
    """Top-level feature keys of the image and of the label."""
    tfds = _import_tfds()
    features = info.features
    if not isinstance(features, tfds.features.FeaturesDict):
        raise ValueError(
            f"TFDS dataset {name!r} does not store a dict of features ({features!r}); "
            "load_tfds needs an image and a label feature."
        )
    keys = list(features.keys())
    supervised = info.supervised_keys
    if (
        isinstance(supervised, tuple | list)
        and len(supervised) == 2
        and all(isinstance(k, str) and k in keys for k in supervised)
    ):
        return supervised[0], supervised[1]
    # Datasets stored without supervised keys (e.g. by store_as_tfds_dataset): take the
    # only Image feature and the only ClassLabel feature, else the conventional names.
    images = [k for k in keys if isinstance(features[k], tfds.features.Image)]
    labels = [k for k in keys if isinstance(features[k], tfds.features.ClassLabel)]
    image_key = images[0] if len(images) == 1 else ("image" if "image" in keys else None)
    label_key = labels[0] if len(labels) == 1 else ("label" if "label" in keys else None)
    if image_key is None or label_key is None:
        raise ValueError(
            f"TFDS dataset {name!r} has no (image, label) structure that load_tfds can use: "
            f"supervised_keys={supervised!r}, features={keys}. It needs supervised keys, or "
            "one Image (or 'image') feature and one ClassLabel (or 'label') feature."
        )
    return image_key, label_key


def _summarize(builder, name: str) -> dict[str, Any]:
    info = builder.info
    image_key, label_key = _image_and_label_keys(info, name)
    image_feature = info.features[image_key]
    label_feature = info.features[label_key]
    shape = getattr(image_feature, "shape", None)
    input_shape = tuple(None if d is None else int(d) for d in shape) if shape is not None else None
    num_classes = getattr(label_feature, "num_classes", None)
    names = getattr(label_feature, "names", None) if num_classes is not None else None
    dtype = getattr(image_feature, "np_dtype", None) or getattr(image_feature, "dtype", None)
    return {
        "name": info.name,
        "version": str(info.version),
        "num_classes": None if num_classes is None else int(num_classes),
        "class_names": list(names) if names else None,
        "input_shape": input_shape,
        "image_dtype": np.dtype(getattr(dtype, "as_numpy_dtype", dtype)).name,
        "num_examples": {str(s): int(v.num_examples) for s, v in info.splits.items()},
        "image_key": image_key,
        "label_key": label_key,
        "prepared": bool(builder.is_prepared()),
        "data_dir": os.fspath(builder.data_dir),
    }


def dataset_info(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Describes a TFDS image classification dataset without reading (or downloading) data.

    The description comes from ``tfds.builder(name, data_dir=data_dir).info``: for a
    registered dataset (``"mnist"``, ``"cifar10"``, ...) the features are known even when
    the data is not prepared (``num_examples`` is then empty and ``prepared`` False); a
    dataset stored with ``tfds.dataset_builders.store_as_tfds_dataset`` is described from
    the files in ``data_dir``.

    Args:
        name: TFDS name, optionally with a config and a version: ``"mnist"``,
            ``"mnist:3.0.1"``, ``"dataset/config:1.0.0"``.
        data_dir: Directory holding the prepared data. None: the TFDS default
            (``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``).

    Returns:
        A dict with ``num_classes`` (int, or None if the label is not a ``ClassLabel``),
        ``input_shape`` (shape of one image, e.g. ``(28, 28, 1)``), ``num_examples``
        (``{split: count}``), ``class_names``, ``image_dtype`` (the stored dtype, e.g.
        ``"uint8"``), ``image_key`` / ``label_key`` (the features used as ``(x, y)``),
        ``name``, ``version``, ``prepared`` and ``data_dir`` (the versioned directory).

    Raises:
        TypeError: If ``name`` is not a non-empty string.
        ValueError: If the dataset is unknown, or has no image and label features.

    Example:
        >>> from keras_mwat.data.tfds import dataset_info
        >>> info = dataset_info("mnist")  # no download: features come from the TFDS code
        >>> info["num_classes"], info["input_shape"]
        (10, (28, 28, 1))
        >>> import keras_mwat as km
        >>> clf = km.zoo.small_cnn(input_shape=info["input_shape"],
        ...                        num_classes=info["num_classes"])
    """
    name = _check_name(name)
    data_dir = None if data_dir is None else os.fspath(data_dir)
    return _summarize(_get_builder(name, data_dir), name)


def _shuffle_buffer(info, split: str, image_feature) -> int:
    """The whole split if its images fit in ``_SHUFFLE_BUFFER_BYTES``, else what does."""
    try:
        num_examples = int(info.splits[split].num_examples)
    except (KeyError, ValueError, TypeError, AttributeError):  # pragma: no cover
        num_examples = 0
    shape = getattr(image_feature, "shape", None) or ()
    dtype = getattr(image_feature, "np_dtype", None) or np.uint8
    if any(d is None for d in shape):  # pragma: no cover - rejected before
        return max(num_examples, _MIN_SHUFFLE_BUFFER)
    example_bytes = max(1, math.prod(shape) * np.dtype(dtype).itemsize)
    cap = max(_MIN_SHUFFLE_BUFFER, _SHUFFLE_BUFFER_BYTES // example_bytes)
    return max(1, min(num_examples, cap) if num_examples > 0 else cap)


def _image_converter(dtype: tf.DType, value_range: tuple[float, float]):
    """A function mapping a stored image tensor to float32 in ``value_range``."""
    import tensorflow as tf

    low, high = value_range
    if dtype.is_floating:
        scale = None  # assumed in [0, 1] already
    elif dtype == tf.uint16:
        scale = 65535.0
    elif dtype.is_integer:
        scale = 255.0
    else:
        raise TypeError(f"Images must be integer or floating point, got dtype {dtype.name}.")

    def convert(image: tf.Tensor) -> tf.Tensor:
        x = tf.cast(image, tf.float32)
        if scale is not None:
            x = x / scale  # exact at 0 and at the maximum, as in the embedded dataset
        if (low, high) != (0.0, 1.0):
            x = x * (high - low) + low
        return x

    return convert


def load_tfds(
    name: str,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    download: bool = False,
    batch_size: int = 128,
    shuffle: bool | None = None,
    seed: int = 0,
    value_range: tuple[float, float] = (0.0, 1.0),
    as_supervised: bool = True,
) -> tf.data.Dataset:
    """Loads a TFDS image classification split as batched, prefetched ``(x, y)`` pairs.

    Images are cast to float32 and mapped linearly to ``value_range``: integer images from
    ``[0, 255]`` (``[0, 65535]`` for uint16), floating-point images from ``[0, 1]``. With the
    default ``(0.0, 1.0)``, a uint8 pixel ``p`` becomes ``p / 255``, as in
    ``keras_mwat.data.load_embedded``. Labels are int64 class indices of shape (batch,).
    The image and label are the dataset's supervised keys or, for datasets stored without
    them (``store_as_tfds_dataset``), its only ``Image`` and ``ClassLabel`` features.

    Nothing is downloaded unless ``download=True``: if the data is not prepared in
    ``data_dir``, a ``FileNotFoundError`` is raised at once instead of the minutes-long
    network timeout of a plain ``tfds.load`` offline.

    Args:
        name: TFDS name, optionally with a config and a version: ``"mnist"``,
            ``"mnist:3.0.1"``, ``"cifar10"``, ``"dataset/config:1.0.0"``.
        split: TFDS split, including slicing syntax: ``"train"``, ``"test"``,
            ``"train[:90%]"``, ``"train[90%:]"``.
        data_dir: Directory holding the prepared data (``<data_dir>/<name>/<version>``).
            None: the TFDS default (``~/tensorflow_datasets`` or ``$TFDS_DATA_DIR``).
        download: If True, download and prepare the data in ``data_dir`` first when it is
            missing (needs internet access and may take long).
        batch_size: Examples per batch (>= 1); the last batch may be smaller.
        shuffle: Shuffle the examples (and the files), differently in each epoch but
            reproducibly for a given ``seed``. None: shuffle only splits whose name starts
            with ``"train"``. The buffer holds the whole split when its images fit in
            256 MB, else as many as do.
        seed: Seed of the shuffle (>= 0).
        value_range: ``(low, high)`` the images are mapped to, e.g. ``(-1.0, 1.0)``; give
            the attacks the same ``value_range``.
        as_supervised: If True, elements are ``(x, y)`` tuples. If False, they are the
            batched feature dicts of the dataset, with the image and the label converted
            as above and the other features unchanged.

    Returns:
        A ``tf.data.Dataset`` of ``(x, y)`` batches: ``x`` float32 of shape
        ``(batch, *input_shape)``, ``y`` int64 of shape ``(batch,)``.

    Raises:
        FileNotFoundError: If ``download=False`` and the data is not prepared in
            ``data_dir``; the message names the dataset, the directory searched and the fix.
        ValueError: For an unknown dataset or split, a dataset without an image and a label
            feature, images of unknown (variable) shape, or an invalid argument.
        TypeError: For an argument of the wrong type.

    Example:
        With MNIST prepared in ``/data/tfds`` (the calls below need the data):

        >>> import keras_mwat as km
        >>> train = km.data.load_tfds("mnist", split="train[:90%]",
        ...                           data_dir="/data/tfds")  # doctest: +SKIP
        >>> val = km.data.load_tfds("mnist", split="train[90%:]",
        ...                         data_dir="/data/tfds")  # doctest: +SKIP
        >>> x, y = next(iter(train))  # doctest: +SKIP
        >>> x.shape, x.dtype, y.shape, y.dtype  # doctest: +SKIP
        (TensorShape([128, 28, 28, 1]), tf.float32, TensorShape([128]), tf.int64)
        >>> model.fit(train, validation_data=val, epochs=5)  # doctest: +SKIP

        First use on a machine with internet access (the data is then reused offline):

        >>> km.data.load_tfds("cifar10", data_dir="/data/tfds", download=True)  # doctest: +SKIP
    """
    import tensorflow as tf

    name = _check_name(name)
    if not isinstance(split, str) or not split.strip():
        raise TypeError(f"`split` must be a non-empty string such as 'train', got {split!r}.")
    split = split.strip()
    if data_dir is not None and not isinstance(data_dir, str | os.PathLike):
        raise TypeError(f"`data_dir` must be a path or None, got data_dir={data_dir!r}.")
    data_dir = None if data_dir is None else os.fspath(data_dir)
    download = _check_bool(download, "download")
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    shuffle = split.startswith("train") if shuffle is None else _check_bool(shuffle, "shuffle")
    seed = check_int(seed, "seed", minimum=0)
    if value_range is None:
        raise TypeError("`value_range` must be a pair (low, high), got None.")
    value_range = check_value_range(value_range)
    as_supervised = _check_bool(as_supervised, "as_supervised")

    tfds = _import_tfds()
    builder = _get_builder(name, data_dir)
    if not builder.is_prepared():
        if not download:
            searched = _searched_dirs(tfds, data_dir)
            raise FileNotFoundError(
                f"TFDS dataset {name!r} is not prepared in data_dir={data_dir!r} (looked for "
                f"{os.fspath(builder.data_dir)!r}; data directories searched: {searched}) "
                "and download=False. " + _FIX_HINT.format(name=name.split(":", 1)[0])
            )
        builder.download_and_prepare()

    info = builder.info
    image_key, label_key = _image_and_label_keys(info, name)
    image_feature = info.features[image_key]
    shape = getattr(image_feature, "shape", None)
    if shape is None or any(d is None for d in shape):
        raise ValueError(
            f"TFDS dataset {name!r} has images of variable shape {shape}; load_tfds batches "
            "images as they are stored. Load it with tensorflow_datasets and resize the "
            "images first."
        )
    label_feature = info.features[label_key]
    if tuple(getattr(label_feature, "shape", ())) not in ((), (1,)):
        raise ValueError(
            f"The label feature {label_key!r} of {name!r} has shape {label_feature.shape}; "
            "load_tfds needs one integer class index per example."
        )

    read_config = tfds.ReadConfig(
        shuffle_seed=seed if shuffle else None,
        shuffle_reshuffle_each_iteration=True if shuffle else None,
    )
    try:
        dataset = builder.as_dataset(
            split=split, shuffle_files=shuffle, read_config=read_config, as_supervised=False
        )
    except (ValueError, KeyError, AssertionError) as error:
        raise ValueError(
            f"Cannot read split {split!r} of TFDS dataset {name!r} (splits: "
            f"{list(info.splits.keys())}): {error}"
        ) from error

    if shuffle:
        buffer = _shuffle_buffer(info, split, image_feature)
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)

    convert_image = _image_converter(dataset.element_spec[image_key].dtype, value_range)

    def to_batchable(example: dict) -> Any:
        x = convert_image(example[image_key])
        y = tf.reshape(tf.cast(example[label_key], tf.int64), [])
        if as_supervised:
            return x, y
        return {**example, image_key: x, label_key: y}

    dataset = dataset.map(to_batchable, num_parallel_calls=tf.data.AUTOTUNE)
    dataset = dataset.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)
