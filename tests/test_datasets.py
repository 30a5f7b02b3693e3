"""Tests for skcohiclust.datasets: the IDX reader, the Fashion-MNIST search, the digits loader."""

import gzip
import shutil
import struct

import numpy as np
import pytest

from skcohiclust import datasets
from skcohiclust.datasets import (
    FASHION_MNIST_ENV,
    DatasetNotFoundError,
    load_digits_images,
    load_fashion_mnist,
    load_idx,
)

IDX_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path, array, compress):
    """Write ``array`` as an IDX file by the format's definition (big-endian header and values)."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


@pytest.mark.parametrize("compress", [True, False])
@pytest.mark.parametrize("dtype", list(IDX_CODES))
def test_load_idx_round_trip(tmp_path, dtype, compress):
    rng = np.random.default_rng(0)
    array = (rng.normal(size=(5, 4, 3)) * 100).astype(dtype)
    path = write_idx(tmp_path / "data.idx", array, compress)
    loaded = load_idx(path)
    assert loaded.dtype == np.dtype(dtype)  # native byte order
    assert loaded.dtype.byteorder in ("=", "|")
    assert loaded.shape == (5, 4, 3)
    np.testing.assert_array_equal(loaded, array)
    loaded[0] = 0  # a writable copy


def test_load_idx_gzip_is_recognised_from_content(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    path = write_idx(tmp_path / "labels-without-gz-suffix", labels, compress=True)
    np.testing.assert_array_equal(load_idx(str(path)), labels)


def test_load_idx_bad_magic(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match="not an IDX file"):
        load_idx(path)


def test_load_idx_unknown_type_code(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match="unknown IDX type code 0x07"):
        load_idx(path)


def test_load_idx_size_mismatch(tmp_path):
    path = tmp_path / "short.idx"
    path.write_bytes(b"\x00\x00\x08\x02" + struct.pack(">2I", 3, 4) + bytes(11))
    with pytest.raises(ValueError, match=r"holds 23 bytes.*needs 24"):
        load_idx(path)
    path.write_bytes(b"\x00\x00\x08\x03" + bytes(4))
    with pytest.raises(ValueError, match="truncated"):
        load_idx(path)


def _fake_fashion_mnist(folder, n_train=6, n_test=4, compress=True):
    """The four standard files with small random content; returns the arrays written."""
    rng = np.random.default_rng(1)
    arrays = {}
    for part, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, (n, 28, 28)).astype(np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        image_name, label_name = datasets.FASHION_MNIST_FILES[part]
        if not compress:
            image_name, label_name = image_name.removesuffix(".gz"), label_name.removesuffix(".gz")
        write_idx(folder / image_name, images, compress)
        write_idx(folder / label_name, labels, compress)
        arrays[part] = (images, labels)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_load_fashion_mnist_from_data_home(tmp_path, compress):
    arrays = _fake_fashion_mnist(tmp_path, compress=compress)
    X, y = load_fashion_mnist(data_home=tmp_path)
    assert X.shape == (10, 28, 28) and X.dtype == np.uint8
    assert y.shape == (10,) and y.dtype == np.int64
    np.testing.assert_array_equal(X, np.concatenate([arrays["train"][0], arrays["test"][0]]))
    np.testing.assert_array_equal(y, np.concatenate([arrays["train"][1], arrays["test"][1]]))
    X_train, y_train = load_fashion_mnist(data_home=str(tmp_path), subset="train")
    np.testing.assert_array_equal(X_train, arrays["train"][0])
    np.testing.assert_array_equal(y_train, arrays["train"][1])
    X_test, y_test = load_fashion_mnist(data_home=tmp_path, subset="test")
    np.testing.assert_array_equal(X_test, arrays["test"][0])
    np.testing.assert_array_equal(y_test, arrays["test"][1])


def test_load_fashion_mnist_from_environment_variable(tmp_path, monkeypatch):
    arrays = _fake_fashion_mnist(tmp_path)
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path))
    X, y = load_fashion_mnist(subset="test")
    np.testing.assert_array_equal(X, arrays["test"][0])
    np.testing.assert_array_equal(y, arrays["test"][1])


def test_load_fashion_mnist_missing_files_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv(FASHION_MNIST_ENV, str(tmp_path / "nowhere"))
    monkeypatch.setattr(datasets, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "not-installed")
    with pytest.raises(DatasetNotFoundError) as info:
        load_fashion_mnist()
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert FASHION_MNIST_ENV in message and "data_home" in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert str(tmp_path / "nowhere") in message
    assert isinstance(info.value, FileNotFoundError)


def test_load_fashion_mnist_incomplete_data_home(tmp_path):
    """An explicit data_home is the only place looked at; one missing file is an error."""
    _fake_fashion_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_home"):
        load_fashion_mnist(data_home=tmp_path)


def test_load_fashion_mnist_mismatched_counts(tmp_path):
    _fake_fashion_mnist(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8), compress=True)
    with pytest.raises(ValueError, match="4 images but .* 3 labels"):
        load_fashion_mnist(data_home=tmp_path, subset="test")


def test_load_fashion_mnist_bad_subset(tmp_path):
    with pytest.raises(ValueError, match="subset must be 'all', 'train' or 'test'"):
        load_fashion_mnist(data_home=tmp_path, subset="validation")


@pytest.mark.skipif(
    not all(
        (datasets.FASHION_MNIST_SYSTEM_DIR / name).is_file()
        for pair in datasets.FASHION_MNIST_FILES.values()
        for name in pair
    ),
    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist(monkeypatch):
    monkeypatch.delenv(FASHION_MNIST_ENV, raising=False)
    X, y = load_fashion_mnist()
    assert X.shape == (70_000, 28, 28) and X.dtype == np.uint8
    assert y.shape == (70_000,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), np.full(10, 7000))
    assert X.min() == 0 and X.max() == 255
    X_test, y_test = load_fashion_mnist(subset="test")
    np.testing.assert_array_equal(X_test, X[60_000:])
    np.testing.assert_array_equal(np.bincount(y_test), np.full(10, 1000))


def test_real_fashion_mnist_through_a_copied_folder(tmp_path):
    """data_home also takes a user folder holding the real (gzipped) files."""
    source = datasets.FASHION_MNIST_SYSTEM_DIR
    if not (source / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    for name in datasets.FASHION_MNIST_FILES["test"]:
        shutil.copy(source / name, tmp_path / name)
    X, y = load_fashion_mnist(data_home=tmp_path, subset="test")
    assert X.shape == (10_000, 28, 28) and y.shape == (10_000,)


def test_load_digits_images():
    X, y = load_digits_images()
    assert X.shape == (1797, 8, 8) and X.dtype == np.float32
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 16.0
    np.testing.assert_array_equal(np.unique(y), np.arange(10))
    from sklearn.datasets import load_digits

    np.testing.assert_array_equal(X, load_digits().images.astype(np.float32))
