"""Tests of the embedded MNIST dataset (keras_mwat.data.embedded)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from keras_mwat.data import EmbeddedData, load_embedded
from keras_mwat.data.embedded import _allocate


@pytest.fixture(scope="module")
def data() -> EmbeddedData:
    return load_embedded()


def _hashes(x: np.ndarray) -> list[str]:
    return [hashlib.sha1(np.ascontiguousarray(row).tobytes()).hexdigest() for row in x]


def test_default_split_sizes_and_stratification(data):
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (3500, 500, 1000)
    assert len(data.x_train) == 3500 and len(data.x_val) == 500 and len(data.x_test) == 1000
    np.testing.assert_array_equal(np.bincount(data.y_train, minlength=10), [350] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_val, minlength=10), [50] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_test, minlength=10), [100] * 10)


def test_splits_are_disjoint_and_cover_the_source(data):
    train, val, test = (set(_hashes(x)) for x in (data.x_train, data.x_val, data.x_test))
    assert len(train) == 3500 and len(val) == 500 and len(test) == 1000
    assert not train & val and not train & test and not val & test


def test_labels_match_images_after_the_shuffle(data):
    from keras_mwat.data.embedded import _load_source

    x_all, y_all = _load_source()
    label_of = dict(zip(_hashes(x_all), y_all.tolist(), strict=True))
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        assert [label_of[h] for h in _hashes(x)] == y.tolist()


def test_splits_are_shuffled_not_sorted(data):
    for y in (data.y_train, data.y_val, data.y_test):
        assert np.any(np.diff(y) < 0)


def test_dtypes_shapes_and_value_range(data):
    for x, y in (data.train, data.validation, data.test):
        assert x.dtype == np.float32 and x.shape[1:] == (28, 28, 1)
        assert y.dtype == np.int64 and y.shape == (x.shape[0],)
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert data.x_train.max() == 1.0  # scaled by 255, not by the maximum of each image
    assert EmbeddedData.num_classes == 10 and data.num_classes == 10
    assert data.input_shape == (28, 28, 1)
    assert data.value_range == (0.0, 1.0)


def test_determinism(data):
    again = load_embedded()
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(data, name), getattr(again, name))
    other = load_embedded(seed=1)
    assert not np.array_equal(other.y_train, data.y_train)
    assert set(_hashes(other.x_test)) != set(_hashes(data.x_test))


def test_arrays_are_writable_copies(data):
    copy = load_embedded()
    copy.x_train[0] = 0.5  # must not corrupt the in-process cache
    assert not np.array_equal(load_embedded().x_train[0], copy.x_train[0])


def test_frozen(data):
    with pytest.raises(AttributeError):
        data.x_train = data.x_val


@pytest.mark.parametrize(
    ("validation_size", "test_size"), [(0, 0), (505, 1001), (1, 4998), (4991, 8)]
)
def test_other_sizes_stay_stratified_and_disjoint(validation_size, test_size):
    data = load_embedded(validation_size=validation_size, test_size=test_size, seed=3)
    assert len(data.y_val) == validation_size and len(data.y_test) == test_size
    assert len(data.y_train) == 5000 - validation_size - test_size
    for y, n in ((data.y_val, validation_size), (data.y_test, test_size)):
        counts = np.bincount(y, minlength=10)
        assert counts.max() - counts.min() <= 1 and counts.sum() == n
    total = (
        np.bincount(data.y_train, minlength=10)
        + np.bincount(data.y_val, minlength=10)
        + np.bincount(data.y_test, minlength=10)
    )
    np.testing.assert_array_equal(total, [500] * 10)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"validation_size": -1}, ValueError, "validation_size=-1"),
        ({"test_size": -5}, ValueError, "test_size=-5"),
        ({"validation_size": 2.5}, TypeError, "validation_size"),
        ({"test_size": "10"}, TypeError, "test_size"),
        ({"validation_size": 2500, "test_size": 2500}, ValueError, "validation_size=2500"),
        ({"validation_size": 4000, "test_size": 1000}, ValueError, "test_size=1000"),
        ({"seed": -1}, ValueError, "seed=-1"),
    ],
)
def test_invalid_arguments_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_embedded(**kwargs)


def _collect(dataset):
    xs, ys = [], []
    for x, y in dataset:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return xs, ys


def test_train_dataset_batches_and_epoch_coverage(data):
    tiny = data.subset(train=300, validation=50, test=70)
    dataset = tiny.train_dataset(batch_size=64, seed=0)
    xs, ys = _collect(dataset)
    assert [len(y) for y in ys] == [64, 64, 64, 64, 44]
    assert all(x.shape[1:] == (28, 28, 1) and x.dtype == np.float32 for x in xs)
    assert all(y.dtype == np.int64 for y in ys)
    epoch1 = _hashes(np.concatenate(xs))
    assert sorted(epoch1) == sorted(_hashes(tiny.x_train))  # each sample exactly once
    # Labels still belong to their images after the shuffle.
    label_of = dict(zip(_hashes(tiny.x_train), tiny.y_train.tolist(), strict=True))
    assert [label_of[h] for h in epoch1] == np.concatenate(ys).tolist()
    # Reshuffled every epoch, reproducible for a given seed.
    epoch2 = _hashes(np.concatenate(_collect(dataset)[0]))
    assert sorted(epoch2) == sorted(epoch1) and epoch2 != epoch1
    replay = _hashes(np.concatenate(_collect(tiny.train_dataset(batch_size=64, seed=0))[0]))
    assert replay == epoch1


def test_train_dataset_options(data):
    tiny = data.subset(train=300, validation=0, test=0)
    xs, ys = _collect(tiny.train_dataset(batch_size=64, drop_remainder=True))
    assert [len(y) for y in ys] == [64] * 4
    xs, _ = _collect(tiny.train_dataset(batch_size=128, shuffle=False))
    np.testing.assert_array_equal(np.concatenate(xs), tiny.x_train)
    assert tiny.train_dataset().element_spec[0].shape.as_list() == [None, 28, 28, 1]
    with pytest.raises(ValueError, match="batch_size=0"):
        tiny.train_dataset(batch_size=0)
    with pytest.raises(TypeError, match="shuffle"):
        tiny.train_dataset(shuffle="yes")


def test_validation_and_test_datasets_keep_order(data):
    tiny = data.subset(train=10, validation=50, test=70)
    xs, ys = _collect(tiny.validation_dataset(batch_size=32))
    assert [len(y) for y in ys] == [32, 18]
    np.testing.assert_array_equal(np.concatenate(xs), tiny.x_val)
    np.testing.assert_array_equal(np.concatenate(ys), tiny.y_val)
    xs, ys = _collect(tiny.test_dataset(batch_size=128))
    assert [len(y) for y in ys] == [70]
    np.testing.assert_array_equal(np.concatenate(ys), tiny.y_test)


def test_subset(data):
    tiny = data.subset(train=200, validation=20, test=35, seed=1)
    assert isinstance(tiny, EmbeddedData)
    assert (len(tiny.y_train), len(tiny.y_val), len(tiny.y_test)) == (200, 20, 35)
    np.testing.assert_array_equal(np.bincount(tiny.y_train, minlength=10), [20] * 10)
    np.testing.assert_array_equal(np.bincount(tiny.y_val, minlength=10), [2] * 10)
    counts = np.bincount(tiny.y_test, minlength=10)
    assert counts.sum() == 35 and counts.max() - counts.min() <= 1
    # Drawn from the right split.
    assert set(_hashes(tiny.x_train)) <= set(_hashes(data.x_train))
    assert set(_hashes(tiny.x_val)) <= set(_hashes(data.x_val))
    assert set(_hashes(tiny.x_test)) <= set(_hashes(data.x_test))
    # Deterministic for a seed.
    np.testing.assert_array_equal(data.subset(train=200, seed=1).x_train, tiny.x_train)
    # None keeps a split whole; asking for more than there is keeps it whole too.
    whole = data.subset(train=7, test=10_000)
    np.testing.assert_array_equal(whole.x_val, data.x_val)
    np.testing.assert_array_equal(whole.y_test, data.y_test)
    assert len(whole.y_train) == 7 and len(set(whole.y_train.tolist())) == 7
    empty = data.subset(train=0)
    assert empty.x_train.shape == (0, 28, 28, 1) and empty.y_train.dtype == np.int64
    assert data.subset().x_train is not data.x_train


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"train": -1}, ValueError, "train=-1"),
        ({"validation": -3}, ValueError, "validation=-3"),
        ({"test": 1.5}, TypeError, "test"),
        ({"seed": -2}, ValueError, "seed=-2"),
    ],
)
def test_subset_invalid_arguments(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        data.subset(**kwargs)


def test_allocate_is_proportional_and_bounded():
    rng = np.random.default_rng(0)
    counts = np.array([5, 1, 90, 4])
    for n in range(0, 101):
        alloc = _allocate(counts, n, rng)
        assert alloc.sum() == n
        assert np.all(alloc <= counts) and np.all(alloc >= 0)
        assert np.all(np.abs(alloc - counts * n / counts.sum()) < 1)


def test_repr_is_short(data):
    text = repr(data)
    assert "train=3500" in text and "validation=500" in text and len(text) < 200


def test_load_is_cached():
    from keras_mwat.data.embedded import _load_source

    load_embedded()
    assert _load_source.cache_info().currsize == 1
    first = _load_source()
    assert _load_source() is first
    assert not first[0].flags.writeable and not first[1].flags.writeable
