"""Loaders for the real image data available offline.

* :func:`load_digits_images`: scikit-learn's 1,797 handwritten 8x8 digits.
* :func:`load_fashion_mnist`: the 70,000 Fashion-MNIST images, read from the
  four standard IDX files wherever they lie (nothing is downloaded).
* :func:`load_idx`: a reader for any IDX file (the MNIST family's format),
  gzipped or plain.
* :func:`load_image_folder`: any tree of image files in the ImageFolder
  layout (one folder per class), or a flat folder, read from disk or
  straight out of a ``.tar``/``.tar.gz``/``.zip`` archive.
* :func:`load_cifar10`: CIFAR-10 from the files torchvision and Keras users
  already have (``cifar-10-batches-py``, or its ``cifar-10-python.tar.gz``),
  or from an ImageFolder tree or archive of it.

Where Fashion-MNIST is looked for, in order:

1. the ``data_home`` argument, when given (then nowhere else);
2. the folder named by the environment variable ``SKCOHICLUST_FASHION_MNIST``;
3. ``/usr/share/datasets/fashion-mnist/``, where Debian's package
   ``dataset-fashion-mnist`` installs the files.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np

from ._image_files import read_image_tree, split_classes

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_ENV",
    "FASHION_MNIST_ENV",
    "FASHION_MNIST_FILES",
    "DatasetNotFoundError",
    "load_digits_images",
    "load_fashion_mnist",
    "load_idx",
    "load_image_folder",
    "load_cifar10",
]

#: Environment variable naming a folder that holds the Fashion-MNIST files.
FASHION_MNIST_ENV = "SKCOHICLUST_FASHION_MNIST"

#: Where Debian's ``dataset-fashion-mnist`` package puts the files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The four standard files: ``{subset: (images, labels)}``.
FASHION_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

#: IDX type codes and their (big-endian) numpy types.
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"

#: Environment variable naming CIFAR-10's files: a folder or an archive (see :func:`load_cifar10`).
CIFAR10_ENV = "SKCOHICLUST_CIFAR10"

#: CIFAR-10's classes, in the order of its labels (also the sorted order of their names).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: The python-pickle batches of ``cifar-10-batches-py``, per subset.
_CIFAR10_BATCHES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
_CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR10_TARBALL = "cifar-10-python.tar.gz"


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not installed where it was looked for; the message says how to get it."""


def load_digits_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's handwritten digits as 8x8 images.

    Returns
    -------
    X : ndarray of shape (1797, 8, 8), float32
        Grey levels ``0..16``, as :func:`sklearn.datasets.load_digits` gives them.
    y : ndarray of shape (1797,), int64
        The digit, ``0..9``.

    Examples
    --------
    >>> from skcohiclust.datasets import load_digits_images
    >>> X, y = load_digits_images()
    >>> X.shape, y.shape
    ((1797, 8, 8), (1797,))
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32), digits.target.astype(np.int64)


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the format of MNIST and Fashion-MNIST), gzipped or plain.

    The file starts with two zero bytes, a type code (``0x08`` uint8,
    ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E``
    float64), the number of dimensions, then each dimension as a big-endian
    uint32, then the values, big-endian, in C order.  Gzip compression is
    recognised from the content, not the file name.

    Parameters
    ----------
    path : str or path-like
        The file.

    Returns
    -------
    ndarray
        The values in native byte order, with the stored shape.

    Raises
    ------
    ValueError
        If the file is not a well-formed IDX file (bad magic number, unknown
        type code, or a size that does not match the header).
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:2] == _GZIP_MAGIC:
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file: it must start with two zero bytes, got {data[:4]!r}.")
    code, n_dims = data[2], data[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(f"{path} has an unknown IDX type code 0x{code:02X}; known codes are {known}.")
    header = 4 + 4 * n_dims
    if len(data) < header:
        raise ValueError(f"{path} is truncated: its header announces {n_dims} dimensions.")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=n_dims, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path} holds {len(data)} bytes, but its header (shape {shape}, {dtype.name}) needs {expected}."
        )
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))  # a writable copy in native byte order


def load_fashion_mnist(
    data_home: str | os.PathLike | None = None, subset: str = "all"
) -> tuple[np.ndarray, np.ndarray]:
    """The Fashion-MNIST images (Zalando's 28x28 grey clothing, 10 classes).

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        Folder holding the standard files (``train-images-idx3-ubyte.gz``,
        ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
        ``t10k-labels-idx1-ubyte.gz``, or the two of the ``subset`` asked
        for; uncompressed files without ``.gz`` do as well).  ``None`` looks in the folder named by the environment
        variable ``SKCOHICLUST_FASHION_MNIST``, then in
        ``/usr/share/datasets/fashion-mnist/`` (Debian's
        ``dataset-fashion-mnist`` package).
    subset : {"all", "train", "test"}, default="all"
        ``"train"`` (60,000), ``"test"`` (10,000) or ``"all"`` (the 70,000
        of both, training images first), the protocol of the clustering
        literature.

    Returns
    -------
    X : ndarray of shape (n, 28, 28), uint8
        The images, grey levels ``0..255``.
    y : ndarray of shape (n,), int64
        The classes, ``0..9`` (T-shirt/top, trouser, pullover, dress, coat,
        sandal, shirt, sneaker, bag, ankle boot).

    Raises
    ------
    DatasetNotFoundError
        If no searched folder holds the files; the message says how to get them.
    ValueError
        If ``subset`` is not one of the accepted values.
    """
    if subset not in ("all", "train", "test"):
        raise ValueError(f"subset must be 'all', 'train' or 'test', got {subset!r}.")
    parts = ["train", "test"] if subset == "all" else [subset]
    folder = _find_fashion_mnist(data_home, [name for part in parts for name in FASHION_MNIST_FILES[part]])
    images, labels = [], []
    for part in parts:
        image_file, label_file = (_existing(folder, name) for name in FASHION_MNIST_FILES[part])
        images.append(load_idx(image_file))
        labels.append(load_idx(label_file).astype(np.int64))
        if images[-1].shape[0] != labels[-1].shape[0]:
            raise ValueError(
                f"{image_file} holds {images[-1].shape[0]} images but {label_file} holds {labels[-1].shape[0]} labels."
            )
    X = images[0] if len(images) == 1 else np.concatenate(images)
    y = labels[0] if len(labels) == 1 else np.concatenate(labels)
    return X, y


def _existing(folder: Path, name: str):
    """``folder / name``, or its uncompressed twin; None if neither exists."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _places_to_search(data_home, env: str, default: tuple[str, Path]) -> list[tuple[str, Path]]:
    """``(what, path)`` in search order: ``data_home`` alone if given, else ``$env`` (if set), then ``default``."""
    if data_home is not None:
        return [("data_home", Path(data_home))]
    places = [(f"${env}", Path(os.environ[env]))] if os.environ.get(env) else []
    return [*places, default]


def _find_fashion_mnist(data_home, names) -> Path:
    """The first folder searched that holds all ``names`` (gzipped or not)."""
    candidates = _places_to_search(data_home, FASHION_MNIST_ENV, ("the Debian location", FASHION_MNIST_SYSTEM_DIR))
    for _, folder in candidates:
        if all(_existing(folder, name) is not None for name in names):
            return folder
    searched = "; ".join(f"{what}: {folder}" for what, folder in candidates)
    needed = ", ".join(names)
    every = ", ".join(name for pair in FASHION_MNIST_FILES.values() for name in pair)
    raise DatasetNotFoundError(
        f"Fashion-MNIST was not found: no folder holds {needed} (searched {searched}). To get it, either install "
        f"Debian's package ('apt-get update && apt-get install dataset-fashion-mnist', which puts the files in "
        f"{FASHION_MNIST_SYSTEM_DIR}/), or put the four files {every} (from "
        f"https://github.com/zalandoresearch/fashion-mnist) in one folder and pass it as data_home= or set the "
        f"environment variable {FASHION_MNIST_ENV} to it."
    )


def load_image_folder(
    path: str | os.PathLike, image_size: int | tuple[int, int] | None = None, errors: str = "raise"
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Images from a folder tree or an archive of one, in the ImageFolder layout.

    One folder per class, the images of a class anywhere below its folder
    (torchvision's ``ImageFolder`` layout); or a flat folder of images with
    no labels.  A folder that holds nothing but one folder is looked
    through, so an archive that wraps its tree in one folder
    (``train/cat/0001.jpg``) reads as the tree inside.  Archives
    (``.tar``, ``.tar.gz``/``.tgz``, ``.tar.bz2``, ``.tar.xz``, ``.zip``)
    are read in one pass, without unpacking them to disk.  Every common
    format Pillow reads is accepted (by file name: see
    :data:`skcohiclust._image_files.IMAGE_EXTENSIONS`); other files and
    hidden files are ignored.  Images are converted to RGB: grey images are
    repeated over the three channels, an alpha channel is dropped.

    Parameters
    ----------
    path : str or path-like
        The folder or the archive.
    image_size : int, tuple of int or None, default=None
        ``(H, W)`` (or one int for square images) to resize every image to,
        bilinearly.  ``None`` keeps the stored size, which must then be the
        same for every image.
    errors : {"raise", "skip"}, default="raise"
        What an unreadable image file does: raise a ``ValueError`` naming the
        file, or be skipped, with one warning that lists the skipped files.

    Returns
    -------
    X : ndarray of shape (n, 3, H, W), uint8
        The images, sorted by class then path.
    y : ndarray of shape (n,), int64, or None
        The class of each image, an index into ``class_names``; None for a
        flat folder.
    class_names : list of str
        The class folders' names, sorted (empty for a flat folder).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If there is no image, a file cannot be decoded (``errors="raise"``),
        the images differ in size without ``image_size``, or an argument is
        out of range.

    Examples
    --------
    >>> from skcohiclust.datasets import load_image_folder
    >>> X, y, classes = load_image_folder("cifar10-train-jpg.tar.gz")  # doctest: +SKIP
    >>> X.shape, classes[:2]  # doctest: +SKIP
    ((50000, 3, 32, 32), ['airplane', 'automobile'])
    """
    size = _check_image_size(image_size)
    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}.")
    names, images = read_image_tree(path, size, errors)
    return _labelled(names, images)


def _labelled(names, images):
    """``(X, y, class_names)`` from decoded images and their relative paths (see :func:`split_classes`)."""
    classes, keep, class_names = split_classes(names)
    if classes is None:
        return images, None, []
    index = {name: i for i, name in enumerate(class_names)}
    y = np.array([index[c] for c, k in zip(classes, keep, strict=True) if k], dtype=np.int64)
    return (images if keep.all() else images[keep]), y, class_names


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        size = (image_size, image_size)
    else:
        size = tuple(image_size) if isinstance(image_size, (tuple, list)) else ()
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"image_size must be None, a positive int or (H, W) of positive ints, got {image_size!r}.")
    return tuple(int(s) for s in size)


def load_cifar10(data_home: str | os.PathLike | None = None, subset: str = "all") -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10: 32x32 colour photographs of 10 classes, from files already on disk.

    Read from any of the forms it is kept in (nothing is downloaded):

    * the ``cifar-10-batches-py`` folder that torchvision (``root/cifar-10-batches-py``)
      and Keras (``~/.keras/datasets/cifar-10-batches-py``) unpack, or the
      ``cifar-10-python.tar.gz`` they download, read without unpacking;
    * a tree of image files in the ImageFolder layout (a folder per class),
      or a ``.tar``/``.tar.gz``/``.zip`` of one (see :func:`load_image_folder`);
      ``train/`` and ``test/`` folders above the class folders are
      recognised and select the subset.

    The batch files are Python pickles: they are read with an unpickler
    that accepts nothing but numpy arrays and plain containers, so a
    tampered file cannot run code.

    Parameters
    ----------
    data_home : str, path-like or None, default=None
        The folder holding ``cifar-10-batches-py`` or ``cifar-10-python.tar.gz``,
        that folder or file itself, or an image tree or archive.  ``None``
        looks at the path in the environment variable ``SKCOHICLUST_CIFAR10``,
        then in ``~/.keras/datasets``.
    subset : {"all", "train", "test"}, default="all"
        The 50,000 training images, the 10,000 test images, or both
        (training first), the protocol of the clustering literature.  An
        image tree without ``train/``/``test/`` folders is read whole
        whatever the subset, except that ``"test"`` then finds nothing.

    Returns
    -------
    X : ndarray of shape (n, 3, 32, 32), uint8
        The images, RGB.
    y : ndarray of shape (n,), int64
        The classes, indices into :data:`CIFAR10_CLASSES` (for an image tree:
        into its sorted class folder names, the same order for CIFAR-10's
        own names).

    Raises
    ------
    DatasetNotFoundError
        If no searched place holds CIFAR-10; the message says where to put it.
    ValueError
        If ``subset`` is not accepted, or the files found are malformed.
    """
    if subset not in ("all", "train", "test"):
        raise ValueError(f"subset must be 'all', 'train' or 'test', got {subset!r}.")
    keras = ("the Keras location", Path.home() / ".keras" / "datasets")
    candidates = _places_to_search(data_home, CIFAR10_ENV, keras)
    for what, place in candidates:
        explicit = (what, place) != keras
        if place.is_dir():
            if (place / _CIFAR10_FOLDER).is_dir():
                return _cifar10_batches_from_folder(place / _CIFAR10_FOLDER, subset)
            if (place / "data_batch_1").is_file() or (place / "test_batch").is_file():
                return _cifar10_batches_from_folder(place, subset)
            if (place / _CIFAR10_TARBALL).is_file():
                return _cifar10_batches_from_tarball(place / _CIFAR10_TARBALL, subset)
            if explicit:
                return _cifar10_from_image_tree(place, subset)
        elif place.is_file() and explicit:
            if _holds_cifar10_batches(place):
                return _cifar10_batches_from_tarball(place, subset)
            return _cifar10_from_image_tree(place, subset)
    searched = "; ".join(f"{what}: {place}" for what, place in candidates)
    raise DatasetNotFoundError(
        f"CIFAR-10 was not found (searched {searched}). Put torchvision's or Keras' '{_CIFAR10_FOLDER}' folder (or "
        f"the '{_CIFAR10_TARBALL}' file from https://www.cs.toronto.edu/~kriz/cifar.html) in a folder and pass it "
        f"as data_home=, or pass an ImageFolder tree or archive of the images; or set the environment variable "
        f"{CIFAR10_ENV} to any of these."
    )


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: a tampered batch file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in a protocol-2 pickle
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch file")
        if module == "numpy.core.multiarray" and hasattr(np, "_core"):  # the original files' name; numpy 2 moved it
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _cifar10_batch(data: bytes, where: str):
    """Images ``(n, 3, 32, 32)`` and labels of one pickled batch."""
    try:
        batch = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except Exception as exc:  # anything malformed: say which file
        raise ValueError(f"{where} is not a CIFAR-10 batch file ({type(exc).__name__}: {exc}).") from exc
    if len(images) != len(labels) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise ValueError(f"{where} is not a CIFAR-10 batch file: {len(images)} images, {len(labels)} labels.")
    return images, labels


def _stack_batches(batches):
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def _subset_names(subset):
    return [name for part in (("train", "test") if subset == "all" else (subset,)) for name in _CIFAR10_BATCHES[part]]


def _cifar10_batches_from_folder(folder: Path, subset):
    batches = []
    for name in _subset_names(subset):
        path = folder / name
        if not path.is_file():
            raise DatasetNotFoundError(f"{folder} lacks the CIFAR-10 batch file {name} (subset={subset!r}).")
        batches.append(_cifar10_batch(path.read_bytes(), str(path)))
    return _stack_batches(batches)


def _holds_cifar10_batches(path: Path) -> bool:
    """Whether an archive is CIFAR-10's python tarball (its first member is ``cifar-10-batches-py``)."""
    if not path.name.lower().endswith((".tar", ".tar.gz", ".tgz")):
        return False
    try:
        with tarfile.open(path, mode="r|*") as archive:
            first = next(iter(archive), None)
    except (tarfile.TarError, OSError, EOFError):
        return False
    return first is not None and first.name.lstrip("./").startswith(_CIFAR10_FOLDER)


def _cifar10_batches_from_tarball(path: Path, subset):
    wanted = {f"{_CIFAR10_FOLDER}/{name}": name for name in _subset_names(subset)}
    found = {}
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                name = wanted.get(member.name.lstrip("./"))
                if name is not None and member.isfile():
                    found[name] = _cifar10_batch(archive.extractfile(member).read(), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"cannot read the archive {path} ({type(exc).__name__}: {exc}); is it complete?") from exc
    missing = [name for name in wanted.values() if name not in found]
    if missing:
        raise DatasetNotFoundError(f"{path} lacks the CIFAR-10 batch files {missing} (subset={subset!r}).")
    return _stack_batches([found[name] for name in _subset_names(subset)])


def _cifar10_from_image_tree(path: Path, subset):
    """An ImageFolder tree or archive; ``train``/``test`` folders above the classes pick the subset."""
    names, images = read_image_tree(path)
    split = np.array([_split_of(name) for name in names], dtype=object)
    wanted = ("train", "test") if subset == "all" else (subset,)
    has_splits = any(s is not None for s in split)
    if has_splits:
        order = np.concatenate([np.flatnonzero(split == part) for part in wanted]).astype(np.int64)
    else:
        order = np.arange(len(names)) if subset != "test" else np.zeros(0, dtype=np.int64)
    if len(order) == 0:
        raise DatasetNotFoundError(f"{path} holds no {subset} images (no '{subset}' folder above the class folders).")
    # drop the split folder from each path, so train/cat and test/cat are one class
    inner = [_without_split(names[i]) for i in order]
    whole = len(order) == len(names) and bool((order == np.arange(len(names))).all())
    X, y, _ = _labelled(inner, images if whole else images[order])
    if y is None:
        raise ValueError(f"{path} has no class folders; CIFAR-10 needs one folder per class.")
    return X, y


def _split_of(name: str):
    folders = name.split("/")[:-2]  # above the class folder
    return next((f for f in folders if f in ("train", "test")), None)


def _without_split(name: str) -> str:
    parts = name.split("/")
    return "/".join([p for p in parts[:-2] if p not in ("train", "test")] + parts[-2:])
