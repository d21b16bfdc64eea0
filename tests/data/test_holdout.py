"""holdout_split and ImageSplits.with_holdout: the paper's meta and early-stopping sets."""

import numpy as np
import pytest
import tensorflow as tf

from keras_mwat.data import EmbeddedData, holdout_split, load_embedded
from keras_mwat.data.holdout import _stratified_counts


def _data(counts, seed=0):
    """Unique ids as x (so samples can be traced) and labels with the given class counts."""
    y = np.repeat(np.arange(len(counts)), counts)
    y = y[np.random.default_rng(seed).permutation(len(y))]
    x = np.arange(len(y)) * 10 + y  # x encodes its own label: x % 10 == y
    return x, y


UNBALANCED = [5, 2, 89, 4, 17, 33, 2, 48]  # 200 samples, 8 classes


def _check_split(parts, x, y, sizes):
    rest, *held_out = parts
    assert [len(p[1]) for p in held_out] == list(sizes)
    assert len(rest[1]) == len(y) - sum(sizes)
    ids = [set(p[0].tolist()) for p in parts]
    assert sum(len(s) for s in ids) == len(y)  # no duplicates inside a set ...
    assert set().union(*ids) == set(x.tolist())  # ... disjoint and covering
    for px, py in parts:
        np.testing.assert_array_equal(px % 10, py)  # labels stay with their samples


@pytest.mark.parametrize(
    ("counts", "sizes"),
    [
        ([600] * 10, (1000, 1000)),
        ([600] * 10, (137, 59, 11)),
        (UNBALANCED, (40, 30)),
        (UNBALANCED, (23,)),
        ([3, 7, 11, 13], (11, 12, 7)),
    ],
)
def test_disjoint_covering_exact_and_stratified(counts, sizes):
    x, y = _data(counts)
    parts = holdout_split((x, y), sizes=sizes, seed=1)
    _check_split(parts, x, y, sizes)
    n = len(y)
    counts = np.asarray(counts)
    for (_, part_y), size in zip(parts, (n - sum(sizes), *sizes), strict=True):
        got = np.bincount(part_y, minlength=len(counts))
        share = counts * size / n
        assert np.all(np.abs(got - share) < 1), (got, share)  # floor or ceil of the share


def test_the_paper_sizes_on_balanced_data_are_exactly_proportional():
    x, y = _data([6000] * 10)
    rest, meta, early = holdout_split((x, y), sizes=(1000, 1000), seed=0)
    np.testing.assert_array_equal(np.bincount(meta[1]), [100] * 10)
    np.testing.assert_array_equal(np.bincount(early[1]), [100] * 10)
    np.testing.assert_array_equal(np.bincount(rest[1]), [5800] * 10)


def test_order_rest_keeps_input_order_held_out_is_mixed():
    x, y = _data([100] * 10)
    rest, meta = holdout_split((x, y), sizes=200, seed=0)
    assert np.all(np.diff(rest[0]) > 0)  # x increases with position in the input
    assert not np.all(np.diff(meta[0]) > 0)
    sorted_y = np.sort(y)  # input sorted by class: the held-out set must not be
    _, held = holdout_split((x, sorted_y), sizes=100, seed=0)
    assert len(np.unique(held[1][:20])) > 3


def test_seed_determinism_and_different_seeds_differ():
    x, y = _data(UNBALANCED)
    first = holdout_split((x, y), sizes=(40, 30), seed=5)
    again = holdout_split((x, y), sizes=(40, 30), seed=5)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    other = holdout_split((x, y), sizes=(40, 30), seed=6)
    assert set(other[1][0].tolist()) != set(first[1][0].tolist())


def test_unstratified_is_a_plain_random_split():
    x, y = _data([100] * 10)
    parts = holdout_split((x, y), sizes=(300, 200), seed=0, stratify=False)
    _check_split(parts, x, y, (300, 200))
    # Float labels are fine without stratification.
    rest, held = holdout_split((x, y.astype(np.float32)), sizes=5, stratify=False)
    assert len(held[1]) == 5 and held[1].dtype == np.float32


def test_one_hot_labels_and_image_arrays():
    x, y = _data([30] * 4)
    images = np.broadcast_to(x[:, None, None, None], (len(x), 2, 2, 1)).astype(np.float32)
    one_hot = np.eye(4, dtype=np.float32)[y]
    rest, held = holdout_split((images, one_hot), sizes=20, seed=0)
    assert held[0].shape == (20, 2, 2, 1) and held[1].shape == (20, 4)
    np.testing.assert_array_equal(held[1].sum(axis=0), [5] * 4)
    np.testing.assert_array_equal(held[0][:, 0, 0, 0] % 10, held[1].argmax(axis=1))
    assert held[0].flags.writeable  # copies, not views


def test_small_sets_and_rare_classes():
    x, y = _data([10] * 5)
    _, held = holdout_split((x, y), sizes=3, seed=0)  # fewer samples than classes
    assert len(set(held[1].tolist())) == 3
    x, y = _data([50, 1, 50])
    rest, held = holdout_split((x, y), sizes=101)  # one non-empty set: nothing to stratify
    assert len(held[1]) == 101 and len(rest[1]) == 0
    parts = holdout_split((x, y), sizes=10, stratify=False)
    _check_split(parts, x, y, (10,))


def test_edge_sizes():
    x, y = _data([10] * 3)
    rest, held = holdout_split((x, y), sizes=0)
    assert len(held[1]) == 0 and len(rest[1]) == 30
    rest, a, b = holdout_split((x, y), sizes=(15, 15))
    assert len(rest[1]) == 0 and np.bincount(a[1]).tolist() == [5, 5, 5]
    assert holdout_split((x, y), sizes=[3]).__len__() == 2


def _collect(dataset):
    xs, ys = [], []
    for x, y in dataset.as_numpy_iterator():
        xs.append(np.atleast_1d(x))
        ys.append(np.atleast_1d(y))
    return np.concatenate(xs), np.concatenate(ys)


@pytest.mark.parametrize("batch_size", [None, 32])
def test_dataset_input_matches_array_input(batch_size):
    x, y = _data([60] * 5)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if batch_size:
        dataset = dataset.batch(batch_size)
    parts = holdout_split(dataset, sizes=(50, 25), seed=2)
    expected = holdout_split((x, y), sizes=(50, 25), seed=2)
    assert all(isinstance(p, tf.data.Dataset) for p in parts)
    for part, (ex, ey) in zip(parts, expected, strict=True):
        px, py = _collect(part)
        np.testing.assert_array_equal(px, ex)
        np.testing.assert_array_equal(py, ey)
        rank = part.element_spec[1].shape.rank
        assert rank == (1 if batch_size else 0)
    if batch_size:  # re-batched with the input's batch size
        assert [len(b[1]) for b in parts[1].as_numpy_iterator()] == [32, 18]


@pytest.mark.parametrize(
    ("data", "kwargs", "error", "match"),
    [
        (_data([10] * 3), {"sizes": (20, 11)}, ValueError, "31 held-out samples.*30"),
        (_data([10] * 3), {"sizes": (5, -1)}, ValueError, r"sizes=\(5, -1\)"),
        (_data([10] * 3), {"sizes": -3}, ValueError, "sizes"),
        (_data([10] * 3), {"sizes": (2.5,)}, TypeError, "sizes"),
        (_data([10] * 3), {"sizes": ()}, TypeError, "sizes"),
        (_data([10] * 3), {"sizes": "10"}, TypeError, "sizes"),
        (_data([10] * 3), {"seed": -1}, ValueError, "seed=-1"),
        (_data([10] * 3), {"stratify": "yes"}, TypeError, "stratify"),
        # A class with a single sample cannot keep its proportion in two sets.
        (_data([50, 1, 50]), {"sizes": (10, 10)}, ValueError, "class 1 has only 1 sample"),
        (_data([50, 1, 50]), {"sizes": 10}, ValueError, "stratify=False"),
    ],
)
def test_errors(data, kwargs, error, match):
    with pytest.raises(error, match=match):
        holdout_split(data, **kwargs)


def test_input_errors():
    x, y = _data([10] * 3)
    with pytest.raises(TypeError, match="data"):
        holdout_split(x, sizes=3)
    with pytest.raises(ValueError, match="as many samples"):
        holdout_split((x, y[:-1]), sizes=3)
    with pytest.raises(TypeError, match="integer class indices"):
        holdout_split((x, y + 0.5), sizes=3)
    infinite = tf.data.Dataset.from_tensor_slices((x, y)).repeat()
    with pytest.raises(ValueError, match="infinite"):
        holdout_split(infinite, sizes=3)
    with pytest.raises(ValueError, match="empty"):
        holdout_split(tf.data.Dataset.from_tensor_slices((x[:0], y[:0])), sizes=0)
    one_hot = tf.data.Dataset.from_tensor_slices((x, np.eye(3)[y])).batch(4)
    with pytest.raises(ValueError, match="one-hot"):
        holdout_split(one_hot, sizes=3)
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        holdout_split(tf.data.Dataset.from_tensor_slices(x), sizes=3)


def test_joint_rounding_meets_every_sum_randomised():
    rng = np.random.default_rng(0)
    for _ in range(200):
        counts = rng.integers(3, 40, size=rng.integers(2, 8))
        n = int(counts.sum())
        sizes = [int(s) for s in rng.integers(0, n // 3, 2)]
        sizes.append(n - sum(sizes))
        alloc = _stratified_counts(np.arange(len(counts)), counts, sizes, rng)
        np.testing.assert_array_equal(alloc.sum(axis=1), counts)
        np.testing.assert_array_equal(alloc.sum(axis=0), sizes)
        share = counts[:, None] * np.asarray(sizes)[None, :] / n
        assert np.all(np.abs(alloc - share) < 1) and np.all(alloc >= 0)


@pytest.fixture(scope="module")
def embedded():
    return load_embedded()


def test_with_holdout_keeps_the_class_and_the_other_splits(embedded):
    data = embedded.with_holdout(meta=1000, early_stopping=500, seed=0)
    assert isinstance(data, EmbeddedData) and data.has_holdout and not embedded.has_holdout
    assert (len(data.y_train), len(data.y_meta), len(data.y_early_stopping)) == (2000, 1000, 500)
    np.testing.assert_array_equal(np.bincount(data.y_meta), [100] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_early_stopping), [50] * 10)
    np.testing.assert_array_equal(data.x_val, embedded.x_val)
    np.testing.assert_array_equal(data.y_test, embedded.y_test)
    as_bytes = lambda x: {img.tobytes() for img in x}  # noqa: E731
    train, meta, early = as_bytes(data.x_train), as_bytes(data.x_meta), as_bytes(data.x_early_stopping)
    assert not train & meta and not train & early and not meta & early
    assert train | meta | early == as_bytes(embedded.x_train)
    assert data.meta[0] is data.x_meta and data.early_stopping[1] is data.y_early_stopping
    text = repr(data)
    assert "train=2000" in text and "meta=1000" in text and "early_stopping=500" in text


def test_with_holdout_datasets_and_subset(embedded):
    data = embedded.subset(train=300, validation=20, test=20).with_holdout(
        meta=100, early_stopping=50, seed=1
    )
    meta_x, meta_y = _collect(data.meta_dataset(batch_size=64, seed=0))
    assert sorted(meta_y.tolist()) == sorted(data.y_meta.tolist()) and len(meta_x) == 100
    early_x, early_y = _collect(data.early_stopping_dataset(batch_size=64))
    np.testing.assert_array_equal(early_y, data.y_early_stopping)  # fixed order
    smaller = data.subset(train=100)
    assert len(smaller.y_train) == 100 and len(smaller.y_meta) == 100


def test_without_holdout_the_sets_are_empty(embedded):
    assert embedded.x_meta.shape == (0, 28, 28, 1) and embedded.y_meta.dtype == np.int64
    assert embedded.early_stopping[0].dtype == np.float32 and "meta" not in repr(embedded)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"meta": -1}, ValueError, "meta=-1"),
        ({"early_stopping": 2.5}, TypeError, "early_stopping"),
        ({"meta": 3000, "early_stopping": 501}, ValueError, "meta=3000, early_stopping=501"),
    ],
)
def test_with_holdout_errors(embedded, kwargs, error, match):
    with pytest.raises(error, match=match):
        embedded.with_holdout(**kwargs)


def test_image_splits_is_a_base_class(embedded):
    from keras_mwat.data import ImageSplits

    with pytest.raises(TypeError, match="base class"):
        ImageSplits(*embedded.train, *embedded.validation, *embedded.test)
    with pytest.raises(ValueError, match="x_meta.*y_meta"):
        EmbeddedData(*embedded.train, *embedded.validation, *embedded.test, x_meta=embedded.x_val)


def test_with_holdout_twice_is_an_error(embedded):
    once = embedded.with_holdout(meta=100, early_stopping=0)
    with pytest.raises(ValueError, match="already has held-out sets"):
        once.with_holdout(meta=100, early_stopping=100)
