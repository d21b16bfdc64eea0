"""Tests of the TFDS loader (keras_mwat.data.tfds), fully offline.

A tiny dataset is written to a temporary directory with
``tfds.dataset_builders.store_as_tfds_dataset`` and read back with :func:`load_tfds`.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

import keras_mwat as km  # noqa: E402
from keras_mwat.data.tfds import dataset_info, load_tfds  # noqa: E402

NAME = "km_tiny_digits"
NUM_TRAIN, NUM_TEST, NUM_CLASSES = 30, 10, 4


def _key(image_uint8: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image_uint8, dtype=np.uint8).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """Writes 40 random 28x28x1 uint8 digits (labels 0..3) as a TFDS dataset."""
    tfds.disable_progress_bar()
    data_dir = tmp_path_factory.mktemp("tfds")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(NUM_TRAIN + NUM_TEST, 28, 28, 1), dtype=np.uint8)
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 0, 255  # both ends of the range are present
    y = np.arange(NUM_TRAIN + NUM_TEST, dtype=np.int64) % NUM_CLASSES
    rng.shuffle(y)
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=NUM_CLASSES),
        }
    )
    splits = {
        "train": tf.data.Dataset.from_tensor_slices(
            {"image": x[:NUM_TRAIN], "label": y[:NUM_TRAIN]}
        ),
        "test": tf.data.Dataset.from_tensor_slices(
            {"image": x[NUM_TRAIN:], "label": y[NUM_TRAIN:]}
        ),
    }
    tfds.dataset_builders.store_as_tfds_dataset(
        name=NAME, version="1.0.0", features=features, split_datasets=splits, data_dir=data_dir
    )
    source = {
        "train": {_key(im): int(lab) for im, lab in zip(x[:NUM_TRAIN], y[:NUM_TRAIN])},
        "test": {_key(im): int(lab) for im, lab in zip(x[NUM_TRAIN:], y[NUM_TRAIN:])},
    }
    return data_dir, source


def _epoch(dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in dataset))
    return np.concatenate(xs), np.concatenate(ys)


def _raw(x01: np.ndarray) -> np.ndarray:
    """The uint8 pixels behind images scaled to [0, 1] (checked to be exact)."""
    raw = np.rint(x01 * 255.0).astype(np.uint8)
    np.testing.assert_array_equal(raw.astype(np.float32) / np.float32(255.0), x01)
    return raw


def test_shapes_dtypes_range_and_batch_sizes(stored):
    data_dir, _ = stored
    dataset = load_tfds(NAME, data_dir=data_dir, batch_size=16)
    spec_x, spec_y = dataset.element_spec
    assert spec_x.dtype == tf.float32 and tuple(spec_x.shape) == (None, 28, 28, 1)
    assert spec_y.dtype == tf.int64 and tuple(spec_y.shape) == (None,)
    batches = [(x.numpy(), y.numpy()) for x, y in dataset]
    assert [len(y) for _, y in batches] == [16, NUM_TRAIN - 16]
    for x, y in batches:
        assert x.dtype == np.float32 and x.shape[1:] == (28, 28, 1)
        assert y.dtype == np.int64 and y.shape == (x.shape[0],)
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert set(y.tolist()) <= set(range(NUM_CLASSES))
    x, _ = _epoch(dataset)
    assert x.min() == 0.0 and x.max() == 1.0  # scaled by 255, not per image
    assert km.data.load_tfds is load_tfds


def test_images_and_labels_match_the_stored_source(stored):
    data_dir, source = stored
    for split, n in (("train", NUM_TRAIN), ("test", NUM_TEST)):
        x, y = _epoch(load_tfds(NAME, split=split, data_dir=data_dir, batch_size=7))
        keys = [_key(im) for im in _raw(x)]
        assert len(keys) == n
        assert [source[split][k] for k in keys] == y.tolist()


def test_custom_value_range_maps_linearly_and_exactly(stored):
    data_dir, _ = stored
    kwargs = {"split": "train", "data_dir": data_dir, "batch_size": 8, "shuffle": False}
    x01, y01 = _epoch(load_tfds(NAME, **kwargs))
    x11, y11 = _epoch(load_tfds(NAME, value_range=(-1, 1), **kwargs))
    np.testing.assert_array_equal(y01, y11)  # same order without shuffling
    raw = _raw(x01).astype(np.float32)
    expected = raw / np.float32(255.0) * np.float32(2.0) - np.float32(1.0)
    np.testing.assert_allclose(x11, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(x11, raw / 127.5 - 1.0, rtol=0, atol=1e-6)
    assert x11.dtype == np.float32
    assert np.all(x11[raw == 0] == -1.0) and np.all(x11[raw == 255] == 1.0)
    assert x11.min() == -1.0 and x11.max() == 1.0


def test_every_example_once_per_epoch_and_reshuffled(stored):
    data_dir, source = stored
    dataset = load_tfds(NAME, data_dir=data_dir, batch_size=8, seed=3)
    epochs = []
    for _ in range(3):
        x, y = _epoch(dataset)
        keys = [_key(im) for im in _raw(x)]
        assert sorted(keys) == sorted(source["train"])  # each example exactly once
        assert [source["train"][k] for k in keys] == y.tolist()
        epochs.append(keys)
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]  # a new order every epoch


def test_shuffle_is_deterministic_for_a_seed(stored):
    data_dir, _ = stored

    def orders(seed, epochs=2):
        dataset = load_tfds(NAME, data_dir=data_dir, batch_size=8, seed=seed, shuffle=True)
        return [[_key(im) for im in _raw(_epoch(dataset)[0])] for _ in range(epochs)]

    first, again, other = orders(0), orders(0), orders(1)
    assert first == again
    assert first[0] != other[0]


def test_default_shuffle_only_for_train_splits(stored):
    data_dir, _ = stored

    def order(split, **kwargs):
        x, _ = _epoch(load_tfds(NAME, split=split, data_dir=data_dir, batch_size=64, **kwargs))
        return [_key(im) for im in _raw(x)]

    stored_train = order("train", shuffle=False)
    assert order("train", shuffle=False) == stored_train
    assert order("train") != stored_train  # default: train splits are shuffled
    assert sorted(order("train[:50%]")) == sorted(stored_train[: NUM_TRAIN // 2])
    stored_test = order("test")  # default: not shuffled, so stable
    assert order("test") == stored_test == order("test", shuffle=False)
    assert order("test", shuffle=True, seed=5) != stored_test


def test_versioned_name_and_feature_dicts(stored):
    data_dir, _ = stored
    x, y = _epoch(load_tfds(f"{NAME}:1.0.0", split="test", data_dir=data_dir))
    assert x.shape == (NUM_TEST, 28, 28, 1) and y.shape == (NUM_TEST,)
    dicts = load_tfds(NAME, split="test", data_dir=data_dir, batch_size=4, as_supervised=False)
    batch = next(iter(dicts))
    assert set(batch) == {"image", "label"}
    assert batch["image"].dtype == tf.float32 and batch["image"].shape == (4, 28, 28, 1)
    assert batch["label"].dtype == tf.int64 and batch["label"].shape == (4,)


def test_float_images_are_mapped_from_unit_interval(tmp_path):
    tfds.disable_progress_bar()
    rng = np.random.default_rng(1)
    x = rng.random((6, 4, 4, 1), dtype=np.float32)
    x[0, 0, 0, 0], x[0, 0, 1, 0] = 0.0, 1.0
    y = np.array([0, 1, 2, 0, 1, 2], dtype=np.int64)
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(shape=(4, 4, 1), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=3),
        }
    )
    tfds.dataset_builders.store_as_tfds_dataset(
        name="km_float_images",
        version="1.0.0",
        features=features,
        split_datasets={"train": tf.data.Dataset.from_tensor_slices({"image": x, "label": y})},
        data_dir=tmp_path,
    )
    x01, y01 = _epoch(load_tfds("km_float_images", data_dir=tmp_path, shuffle=False))
    x11, _ = _epoch(
        load_tfds("km_float_images", data_dir=tmp_path, shuffle=False, value_range=(-1.0, 1.0))
    )
    order = [int(np.argmax((x == im).all(axis=(1, 2, 3)))) for im in x01]
    np.testing.assert_array_equal(x01, x[order])
    np.testing.assert_array_equal(y01, y[order])
    np.testing.assert_allclose(x11, x[order] * 2.0 - 1.0, rtol=0, atol=1e-6)
    assert x11.min() == -1.0 and x11.max() == 1.0


def test_dataset_info(stored):
    data_dir, _ = stored
    info = dataset_info(NAME, data_dir=data_dir)
    assert info["num_classes"] == NUM_CLASSES
    assert info["input_shape"] == (28, 28, 1)
    assert info["num_examples"] == {"train": NUM_TRAIN, "test": NUM_TEST}
    assert info["image_key"] == "image" and info["label_key"] == "label"
    assert info["image_dtype"] == "uint8" and info["prepared"] is True
    assert info["version"] == "1.0.0" and info["class_names"] == ["0", "1", "2", "3"]
    # A registered dataset is described from its code, without data and offline.
    mnist = dataset_info("mnist", data_dir=data_dir)
    assert (mnist["num_classes"], mnist["input_shape"]) == (10, (28, 28, 1))
    assert mnist["prepared"] is False and mnist["num_examples"] == {}


def test_missing_dataset_fails_fast_with_a_helpful_message(tmp_path):
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as raised:
        load_tfds("mnist", data_dir=tmp_path, download=False)
    elapsed = time.monotonic() - start
    assert elapsed < 20.0
    message = str(raised.value)
    assert "'mnist'" in message and str(tmp_path) in message
    assert "download=True" in message and "tfds build" in message
    with pytest.raises(FileNotFoundError, match="mnist"):
        load_tfds("mnist:3.0.1", split="test", data_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing was written


def test_unknown_dataset_name(tmp_path):
    start = time.monotonic()
    with pytest.raises(ValueError, match="list_builders") as raised:
        load_tfds("km_no_such_dataset", data_dir=tmp_path)
    assert time.monotonic() - start < 20.0
    assert "km_no_such_dataset" in str(raised.value) and str(tmp_path) in str(raised.value)
    with pytest.raises(ValueError, match="Did you mean 'mnist'"):
        dataset_info("mnistt", data_dir=tmp_path)
    with pytest.raises(ValueError, match="mnist"):
        dataset_info("mnist:9.9.9", data_dir=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"batch_size": 0}, ValueError),
        ({"batch_size": "8"}, TypeError),
        ({"shuffle": "yes"}, TypeError),
        ({"download": None}, TypeError),
        ({"seed": -1}, ValueError),
        ({"value_range": (1.0, 0.0)}, ValueError),
        ({"value_range": None}, TypeError),
        ({"split": "validation"}, ValueError),
        ({"split": ""}, TypeError),
    ],
)
def test_invalid_arguments(stored, kwargs, error):
    data_dir, _ = stored
    with pytest.raises(error):
        load_tfds(NAME, data_dir=data_dir, **kwargs)


def test_name_must_be_a_string():
    with pytest.raises(TypeError, match="name"):
        load_tfds(None)
    with pytest.raises(TypeError, match="name"):
        dataset_info("  ")
