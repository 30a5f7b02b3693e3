"""Tests for the image-folder and CIFAR-10 loaders: trees, archives, odd images, the batch files."""

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skcohiclust.datasets import (
    CIFAR10_CLASSES,
    CIFAR10_ENV,
    DatasetNotFoundError,
    load_cifar10,
    load_image_folder,
)

SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpg.tar.gz"


def rgb_image(seed, size=(6, 5)):
    """A random (H, W, 3) uint8 image."""
    return np.random.default_rng(seed).integers(0, 256, size=(*size, 3), dtype=np.uint8)


def save(path, array, mode=None, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, format=fmt)
    return path


def make_tree(root, layout, size=(6, 5)):
    """Write lossless PNG images at the relative paths of ``layout``; return {relative path: (H, W, 3) array}."""
    written = {}
    for i, relative in enumerate(layout):
        array = rgb_image(i, size)
        save(root / relative, array)
        written[relative] = array
    return written


def chw(array):
    return array.transpose(2, 0, 1)


LAYOUT = ["cat/a.png", "cat/indoor/b.png", "dog/c.png", "dog/d.png", "eel/e.png"]


def test_class_folders_with_nested_subfolders(tmp_path):
    written = make_tree(tmp_path, LAYOUT)
    X, y, classes = load_image_folder(tmp_path)
    assert classes == ["cat", "dog", "eel"]
    assert X.shape == (5, 3, 6, 5) and X.dtype == np.uint8
    # sorted by class, then path; an image in a subfolder of a class belongs to it
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 2])
    for i, name in enumerate(sorted(LAYOUT)):
        np.testing.assert_array_equal(X[i], chw(written[name]))


def test_flat_folder_has_no_labels(tmp_path):
    written = make_tree(tmp_path, ["2.png", "1.png", "3.png"])
    X, y, classes = load_image_folder(str(tmp_path))
    assert y is None and classes == []
    np.testing.assert_array_equal(X, np.stack([chw(written[n]) for n in ["1.png", "2.png", "3.png"]]))


def test_one_wrapping_folder_is_looked_through(tmp_path):
    make_tree(tmp_path / "data" / "train", LAYOUT)
    X, y, classes = load_image_folder(tmp_path)
    assert classes == ["cat", "dog", "eel"] and len(y) == 5


def test_other_and_hidden_files_are_ignored(tmp_path):
    make_tree(tmp_path, LAYOUT)
    (tmp_path / "cat" / "notes.txt").write_text("not an image")
    (tmp_path / "dog" / ".hidden.png").write_bytes(b"junk")
    (tmp_path / ".cache").mkdir()
    save(tmp_path / ".cache" / "x.png", rgb_image(9))
    X, y, classes = load_image_folder(tmp_path)
    assert len(X) == 5 and classes == ["cat", "dog", "eel"]


def test_grey_rgba_palette_and_formats_become_rgb(tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, size=(6, 5), dtype=np.uint8)
    rgba = np.random.default_rng(2).integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
    save(tmp_path / "a" / "grey.png", grey, mode="L")
    save(tmp_path / "a" / "rgba.png", rgba, mode="RGBA")
    save(tmp_path / "b" / "bitmap.bmp", rgb_image(3))
    Image.fromarray(rgb_image(4)).convert("P").save(tmp_path / "b" / "palette.gif")
    save(tmp_path / "b" / "photo.jpg", rgb_image(5), fmt="JPEG")
    X, y, classes = load_image_folder(tmp_path)
    assert X.shape == (5, 3, 6, 5)
    np.testing.assert_array_equal(X[0], np.broadcast_to(grey, (3, 6, 5)))  # grey repeated on 3 channels
    np.testing.assert_array_equal(X[1], chw(rgba[..., :3]))  # alpha dropped
    np.testing.assert_array_equal(X[2], chw(rgb_image(3)))  # a.bmp, lossless
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 1])


def test_corrupt_file_is_named_or_skipped(tmp_path):
    make_tree(tmp_path, LAYOUT)
    bad = tmp_path / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        load_image_folder(tmp_path)
    with pytest.warns(UserWarning, match=r"1 unreadable file.*broken\.jpg"):
        X, y, classes = load_image_folder(tmp_path, errors="skip")
    assert len(X) == 5 and classes == ["cat", "dog", "eel"]


def test_sizes_must_agree_unless_resized(tmp_path):
    save(tmp_path / "a" / "small.png", rgb_image(0, (6, 5)))
    save(tmp_path / "b" / "large.png", rgb_image(1, (12, 20)))
    with pytest.raises(ValueError, match="differ in size.*image_size"):
        load_image_folder(tmp_path)
    X, y, _ = load_image_folder(tmp_path, image_size=(8, 9))
    assert X.shape == (2, 3, 8, 9)
    X, _, _ = load_image_folder(tmp_path, image_size=7)
    assert X.shape == (2, 3, 7, 7)
    # a resize to the stored size leaves the pixels as they are
    X, _, _ = load_image_folder(tmp_path / "a", image_size=(6, 5))
    np.testing.assert_array_equal(X[0], chw(rgb_image(0, (6, 5))))


@pytest.mark.parametrize("bad", [0, -3, (4,), (4, 0), 2.5, "big", True])
def test_bad_image_size(tmp_path, bad):
    make_tree(tmp_path, LAYOUT)
    with pytest.raises(ValueError, match="image_size"):
        load_image_folder(tmp_path, image_size=bad)


def test_bad_arguments_and_empty_trees(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_folder(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no image files"):
        load_image_folder(tmp_path)
    make_tree(tmp_path, LAYOUT)
    with pytest.raises(ValueError, match="errors must be"):
        load_image_folder(tmp_path, errors="ignore")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="neither a folder nor an archive"):
        load_image_folder(tmp_path / "file.txt")


def test_loose_images_beside_class_folders_are_left_out_with_a_warning(tmp_path):
    make_tree(tmp_path, LAYOUT + ["stray.png"])
    with pytest.warns(UserWarning, match="stray.png"):
        X, y, classes = load_image_folder(tmp_path)
    assert len(X) == len(y) == 5 and classes == ["cat", "dog", "eel"]


def write_tar(folder, path, mode, arcname="train"):
    with tarfile.open(path, mode) as archive:
        archive.add(folder, arcname=arcname)
    return path


def write_zip(folder, path):
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, "train/" + file.relative_to(folder).as_posix())
        archive.writestr("__MACOSX/train/cat/._a.png", b"resource fork")
    return path


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "tgz", "tar.bz2", "tar.xz", "zip"])
def test_archives_read_as_the_folder(tmp_path, kind):
    folder = tmp_path / "tree"
    make_tree(folder, LAYOUT)
    expected = load_image_folder(folder)
    path = tmp_path / f"images.{kind}"
    if kind == "zip":
        write_zip(folder, path)
    else:
        mode = {"tar": "w", "tar.gz": "w:gz", "tgz": "w:gz", "tar.bz2": "w:bz2", "tar.xz": "w:xz"}[kind]
        write_tar(folder, path, mode)
    X, y, classes = load_image_folder(path)
    np.testing.assert_array_equal(X, expected[0])
    np.testing.assert_array_equal(y, expected[1])
    assert classes == expected[2]
    # nothing was unpacked beside the archive
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["tree", path.name])


def test_truncated_archive_is_a_clear_error(tmp_path):
    folder = tmp_path / "tree"
    make_tree(folder, LAYOUT)
    path = write_tar(folder, tmp_path / "images.tar.gz", "w:gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"images\.tar\.gz"):
        load_image_folder(path)


# ----------------------------------------------------------------------------- CIFAR-10
def cifar_batches(n_per_batch=4):
    """Synthetic batches in the format of ``cifar-10-batches-py``: {file name: (images, labels)}."""
    batches = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        rng = np.random.default_rng(i)
        images = rng.integers(0, 256, size=(n_per_batch, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n_per_batch).tolist()
        batches[name] = (images, labels)
    return batches


def write_cifar_folder(folder, batches):
    folder.mkdir(parents=True)
    for name, (images, labels) in batches.items():
        record = {"batch_label": name, "labels": labels, "data": images.reshape(len(images), -1), "filenames": []}
        (folder / name).write_bytes(pickle.dumps(record, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASSES)}, protocol=2))
    return folder


def expected_cifar(batches, subset):
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    chosen = names["train"] + names["test"] if subset == "all" else names[subset]
    return np.concatenate([batches[n][0] for n in chosen]), np.concatenate([batches[n][1] for n in chosen])


@pytest.mark.parametrize("subset", ["all", "train", "test"])
def test_cifar10_batches_folder_and_tarball(tmp_path, subset):
    batches = cifar_batches()
    folder = write_cifar_folder(tmp_path / "root" / "cifar-10-batches-py", batches)
    X_expected, y_expected = expected_cifar(batches, subset)
    for data_home in (tmp_path / "root", folder):  # torchvision's root, or the folder itself
        X, y = load_cifar10(data_home, subset=subset)
        assert X.dtype == np.uint8 and X.shape == (len(y_expected), 3, 32, 32) and y.dtype == np.int64
        np.testing.assert_array_equal(X, X_expected)
        np.testing.assert_array_equal(y, y_expected)
    tarball = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(folder, arcname="cifar-10-batches-py")
    for data_home in (tarball, tmp_path):  # the file, or the folder holding it
        X, y = load_cifar10(data_home, subset=subset)
        np.testing.assert_array_equal(X, X_expected)
        np.testing.assert_array_equal(y, y_expected)


def test_cifar10_batch_file_cannot_run_code(tmp_path):
    folder = write_cifar_folder(tmp_path / "cifar-10-batches-py", cifar_batches())
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Payload(), "labels": [0]}, protocol=2))
    with pytest.raises(ValueError, match="test_batch.*not allowed"):
        load_cifar10(folder, subset="test")
    assert not marker.exists()


def test_cifar10_malformed_or_missing_batches(tmp_path):
    folder = write_cifar_folder(tmp_path / "cifar-10-batches-py", cifar_batches())
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="data_batch_3 is not a CIFAR-10 batch file"):
        load_cifar10(folder, subset="train")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_3"):
        load_cifar10(folder)
    np.testing.assert_array_equal(load_cifar10(folder, subset="test")[1], cifar_batches()["test_batch"][1])


def test_cifar10_from_an_image_tree_with_train_and_test(tmp_path):
    train = make_tree(tmp_path / "cifar" / "train", ["cat/1.png", "airplane/1.png", "truck/2.png"], size=(32, 32))
    test = make_tree(tmp_path / "cifar" / "test", ["cat/1.png", "dog/9.png"], size=(32, 32))
    X, y = load_cifar10(tmp_path, subset="all")
    # training images first, each split sorted; classes indexed by the sorted folder names
    order = [train["airplane/1.png"], train["cat/1.png"], train["truck/2.png"], test["cat/1.png"], test["dog/9.png"]]
    np.testing.assert_array_equal(X, np.stack([chw(a) for a in order]))
    np.testing.assert_array_equal(y, [0, 1, 3, 1, 2])  # airplane, cat, dog, truck
    X_test, y_test = load_cifar10(tmp_path, subset="test")
    assert len(X_test) == 2
    archive = write_tar(tmp_path / "cifar", tmp_path / "cifar.tar", "w", arcname="cifar")
    np.testing.assert_array_equal(load_cifar10(archive, subset="train")[0], X[:3])


def test_cifar10_not_found_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(CIFAR10_ENV, raising=False)
    with pytest.raises(DatasetNotFoundError, match=f"cifar-10-batches-py.*{CIFAR10_ENV}"):
        load_cifar10()
    write_cifar_folder(tmp_path / "elsewhere" / "cifar-10-batches-py", cifar_batches())
    monkeypatch.setenv(CIFAR10_ENV, str(tmp_path / "elsewhere"))
    assert load_cifar10(subset="test")[0].shape == (4, 3, 32, 32)
    keras = write_cifar_folder(tmp_path / ".keras" / "datasets" / "cifar-10-batches-py", cifar_batches(2))
    monkeypatch.delenv(CIFAR10_ENV)
    assert load_cifar10(subset="test")[0].shape == (2, 3, 32, 32), keras
    with pytest.raises(ValueError, match="subset"):
        load_cifar10(subset="validation")


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CIFAR10.is_file(), reason="the shared CIFAR-10 archive is not beside the checkout")
def test_real_cifar10_archive():
    X, y = load_cifar10(SHARED_CIFAR10)
    assert X.shape == (50000, 3, 32, 32) and X.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y), [5000] * 10)
    assert 100 < X.mean() < 150  # natural photographs, not blank or saturated
    # and the same through the generic loader, reading the JPEGs straight from the archive
    _, y2, classes = load_image_folder(SHARED_CIFAR10)
    assert classes == list(CIFAR10_CLASSES)
    np.testing.assert_array_equal(y, y2)


def test_decoding_happens_from_memory(tmp_path):
    # an in-memory round trip of a JPEG gives what Pillow gives for the file itself
    path = save(tmp_path / "a" / "x.jpg", rgb_image(7, (16, 16)), fmt="JPEG")
    X, _, _ = load_image_folder(tmp_path)
    with Image.open(io.BytesIO(path.read_bytes())) as image:
        np.testing.assert_array_equal(X[0], chw(np.asarray(image.convert("RGB"))))
