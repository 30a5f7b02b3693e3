"""Loaders for the real image data available offline.

* :func:`load_digits_images`: scikit-learn's 1,797 handwritten 8x8 digits.
* :func:`load_fashion_mnist`: the 70,000 Fashion-MNIST images, read from the
  four standard IDX files wherever they lie (nothing is downloaded).
* :func:`load_idx`: a reader for any IDX file (the MNIST family's format),
  gzipped or plain.

Where Fashion-MNIST is looked for, in order:

1. the ``data_home`` argument, when given (then nowhere else);
2. the folder named by the environment variable ``SKCOHICLUST_FASHION_MNIST``;
3. ``/usr/share/datasets/fashion-mnist/``, where Debian's package
   ``dataset-fashion-mnist`` installs the files.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = [
    "FASHION_MNIST_ENV",
    "FASHION_MNIST_FILES",
    "DatasetNotFoundError",
    "load_digits_images",
    "load_fashion_mnist",
    "load_idx",
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


def _find_fashion_mnist(data_home, names) -> Path:
    """The first folder searched that holds all ``names`` (gzipped or not)."""
    if data_home is not None:
        candidates = [("data_home", Path(data_home))]
    else:
        candidates = []
        if os.environ.get(FASHION_MNIST_ENV):
            candidates.append((f"${FASHION_MNIST_ENV}", Path(os.environ[FASHION_MNIST_ENV])))
        candidates.append(("the Debian location", FASHION_MNIST_SYSTEM_DIR))
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
