"""Fashion-MNIST from IDX files: a small fixture written here, and the real Debian files."""

import gzip
import struct

import numpy as np
import pytest

import keras_mwat as km
from keras_mwat.data import FashionMNISTData, load_fashion_mnist
from keras_mwat.data.fashion_mnist import DEFAULT_PATH, FILES, read_idx

N_TRAIN, N_TEST = 50, 20


def _idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    if magic is None:
        magic = 0x0800 | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(folder, key, array, magic=None, compress=True):
    name = FILES[key] if compress else FILES[key].removesuffix(".gz")
    payload = _idx_bytes(array, magic)
    (folder / name).write_bytes(gzip.compress(payload) if compress else payload)


@pytest.fixture()
def raw():
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "y_train": np.arange(N_TRAIN, dtype=np.uint8) % 10,  # 5 per class
        "x_test": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


@pytest.fixture()
def folder(tmp_path, raw):
    for key, array in raw.items():
        _write(tmp_path, key, array)
    return tmp_path


def test_loads_the_fixture_with_shapes_dtypes_and_range(folder, raw):
    data = load_fashion_mnist(path=folder)
    assert isinstance(data, FashionMNISTData) and isinstance(data, km.data.ImageSplits)
    assert data.x_train.shape == (N_TRAIN, 28, 28, 1) and data.x_test.shape == (N_TEST, 28, 28, 1)
    assert data.x_val.shape == (0, 28, 28, 1) and data.y_val.shape == (0,)
    for x, y in (data.train, data.validation, data.test):
        assert x.dtype == np.float32 and y.dtype == np.int64
    assert data.x_train.min() >= 0.0 and data.x_train.max() <= 1.0
    assert data.x_train.max() == 1.0 and data.x_train.min() == 0.0  # 255 and 0 occur
    assert data.num_classes == 10 and data.input_shape == (28, 28, 1)
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"


def test_pixels_and_labels_round_trip_exactly_in_file_order(folder, raw):
    data = load_fashion_mnist(path=str(folder))
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        expected = raw[f"x_{split}"].astype(np.float32) / np.float32(255)
        np.testing.assert_array_equal(x[..., 0], expected)
        np.testing.assert_array_equal(np.rint(x[..., 0] * 255).astype(np.uint8), raw[f"x_{split}"])
        np.testing.assert_array_equal(y, raw[f"y_{split}"].astype(np.int64))


def test_uncompressed_files_are_accepted(tmp_path, raw):
    for key, array in raw.items():
        _write(tmp_path, key, array, compress=False)
    data = load_fashion_mnist(path=tmp_path)
    np.testing.assert_array_equal(data.y_test, raw["y_test"])


def test_validation_split_is_stratified_disjoint_and_from_train(folder, raw):
    data = load_fashion_mnist(path=folder, validation_size=20, seed=3)
    assert (len(data.y_train), len(data.y_val)) == (30, 20)
    np.testing.assert_array_equal(np.bincount(data.y_val, minlength=10), [2] * 10)
    as_bytes = lambda x: {img.tobytes() for img in x}  # noqa: E731
    train, val = as_bytes(data.x_train), as_bytes(data.x_val)
    assert not train & val
    assert train | val == as_bytes(raw["x_train"].astype(np.float32)[..., None] / np.float32(255))
    again = load_fashion_mnist(path=folder, validation_size=20, seed=3)
    np.testing.assert_array_equal(again.y_val, data.y_val)
    np.testing.assert_array_equal(again.x_train, data.x_train)
    other = load_fashion_mnist(path=folder, validation_size=20, seed=4)
    assert as_bytes(other.x_val) != val
    few = load_fashion_mnist(path=folder, validation_size=3)  # 3 distinct classes
    assert len(set(few.y_val.tolist())) == 3 and len(few.y_train) == 47


def test_with_holdout_on_loaded_data(folder):
    data = load_fashion_mnist(path=folder).with_holdout(meta=10, early_stopping=20, seed=0)
    assert isinstance(data, FashionMNISTData)
    assert (len(data.y_train), len(data.y_meta), len(data.y_early_stopping)) == (20, 10, 20)
    np.testing.assert_array_equal(np.bincount(data.y_meta, minlength=10), [1] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_early_stopping, minlength=10), [2] * 10)
    assert "meta=10" in repr(data) and "early_stopping=20" in repr(data)


def test_missing_folder_error_names_the_folder_and_the_fixes(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError) as error:
        load_fashion_mnist(path=missing)
    message = str(error.value)
    assert str(missing) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "path=" in message and 'path="keras"' in message
    assert "make fashion-mnist" in message


def test_one_missing_file_is_named(folder):
    (folder / FILES["y_test"]).unlink()
    with pytest.raises(FileNotFoundError, match="missing t10k-labels-idx1-ubyte.gz") as error:
        load_fashion_mnist(path=folder)
    assert "train-images" not in str(error.value).split("To fix it")[0]


def test_corrupt_magic_number(folder, raw):
    _write(folder, "x_train", raw["x_train"], magic=0x08000803)  # leading byte not zero
    with pytest.raises(ValueError, match="bad magic number 0x08000803"):
        load_fashion_mnist(path=folder)


def test_labels_file_in_place_of_images_is_rejected(folder, raw):
    _write(folder, "x_test", raw["y_test"])  # a valid IDX file of the wrong kind
    with pytest.raises(ValueError, match=r"expected magic number 2051 \(0x00000803"):
        load_fashion_mnist(path=folder)


def test_not_an_idx_file(folder):
    (folder / FILES["y_train"]).write_bytes(gzip.compress(b"<html>not found</html>"))
    with pytest.raises(ValueError, match="bad magic number"):
        load_fashion_mnist(path=folder)


def test_truncated_file(folder, raw):
    payload = _idx_bytes(raw["x_train"])[:-7]
    (folder / FILES["x_train"]).write_bytes(gzip.compress(payload))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_fashion_mnist(path=folder)


def test_corrupt_gzip(folder):
    data = (folder / FILES["x_test"]).read_bytes()
    (folder / FILES["x_test"]).write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a valid gzip file"):
        load_fashion_mnist(path=folder)


def test_image_and_label_counts_must_match(folder, raw):
    _write(folder, "y_test", raw["y_test"][:-1])
    with pytest.raises(ValueError, match="holds 20 images but .* holds 19 labels"):
        load_fashion_mnist(path=folder)


def test_labels_out_of_range(folder, raw):
    _write(folder, "y_train", np.full(N_TRAIN, 10, dtype=np.uint8))
    with pytest.raises(ValueError, match="labels are 0..9"):
        load_fashion_mnist(path=folder)


def test_read_idx_other_dtypes(tmp_path):
    values = (np.arange(12).reshape(3, 4) - 5).astype(">i4")  # IDX is big-endian
    path = tmp_path / "ints.idx"
    path.write_bytes(struct.pack(">I", 0x00000C02) + struct.pack(">2I", 3, 4) + values.tobytes())
    array = read_idx(path)
    assert array.dtype == np.int32 and array.dtype.isnative
    np.testing.assert_array_equal(array, values)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"validation_size": -1}, ValueError, "validation_size=-1"),
        ({"validation_size": 50}, ValueError, "validation_size=50"),
        ({"validation_size": 1.5}, TypeError, "validation_size"),
        ({"seed": -1}, ValueError, "seed=-1"),
        ({"path": 3}, TypeError, "path=3"),
    ],
)
def test_invalid_arguments(folder, kwargs, error, match):
    kwargs.setdefault("path", folder)
    with pytest.raises(error, match=match):
        load_fashion_mnist(**kwargs)


@pytest.mark.skipif(
    not all((DEFAULT_PATH / name).is_file() for name in FILES.values()),
    reason="Debian's dataset-fashion-mnist is not installed (make fashion-mnist)",
)
def test_the_real_debian_files():
    data = load_fashion_mnist()  # the default folder
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (60000, 0, 10000)
    np.testing.assert_array_equal(np.bincount(data.y_train, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(data.y_test, minlength=10), [1000] * 10)
    assert data.x_train.dtype == np.float32 and data.x_train.shape[1:] == (28, 28, 1)
    assert data.x_train.min() == 0.0 and data.x_train.max() == 1.0
    # Known answers from the published files: the first test image is an ankle boot, the
    # first training image too; every pixel is a multiple of 1/255.
    assert data.class_names[data.y_test[0]] == "Ankle boot" and data.y_train[0] == 9
    pixels = data.x_test[:100] * 255
    np.testing.assert_allclose(pixels, np.rint(pixels), atol=1e-4)
    paper = data.with_holdout(meta=1000, early_stopping=1000, seed=0)
    assert (len(paper.y_train), len(paper.y_meta), len(paper.y_early_stopping)) == (
        58000,
        1000,
        1000,
    )
    np.testing.assert_array_equal(np.bincount(paper.y_meta, minlength=10), [100] * 10)
    np.testing.assert_array_equal(np.bincount(paper.y_train, minlength=10), [5800] * 10)
