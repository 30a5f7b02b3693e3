"""Reading trees of image files, from a folder or straight out of a tar or zip archive.

:func:`read_image_tree` walks the files once (an archive is streamed, never
unpacked to disk), decodes every image with Pillow to RGB, and returns them
with their paths relative to the tree's root; :func:`split_classes` turns
those paths into the ImageFolder layout's classes.  The public entry point is
:func:`skcohiclust.datasets.load_image_folder`.
"""

from __future__ import annotations

import io
import os
import tarfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np

__all__ = ["IMAGE_EXTENSIONS", "ARCHIVE_SUFFIXES", "read_image_tree", "split_classes", "is_archive"]

#: File name endings read as images (case does not matter); other files are ignored.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
#: File name endings read as archives.
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")


def is_archive(path) -> bool:
    """Whether ``path`` names a tar or zip archive (by its name)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES)


def _is_image_name(name: str) -> bool:
    parts = PurePosixPath(name).parts
    # hidden files and folders (.DS_Store, ._resource forks) and macOS zip metadata are not images
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return False
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _archive_members(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(relative name, bytes)`` of every image file in an archive, in the archive's order."""
    if str(path).lower().endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir() and _is_image_name(info.filename):
                    yield info.filename, archive.read(info)
        return
    # "r|*" streams: one pass over a compressed tar, whatever its compression
    with tarfile.open(path, mode="r|*") as archive:
        for member in archive:
            if member.isfile() and _is_image_name(member.name):
                yield member.name, archive.extractfile(member).read()


def _folder_members(root: Path) -> Iterator[tuple[str, bytes]]:
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        for name in sorted(files):
            full = Path(folder) / name
            relative = full.relative_to(root).as_posix()
            if _is_image_name(relative):
                yield relative, full.read_bytes()


def _decode(data: bytes, size) -> np.ndarray:
    """One image as an ``(H, W, 3)`` uint8 array (RGB; alpha dropped, grey repeated)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        if size is not None and image.size != (size[1], size[0]):
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def read_image_tree(path, image_size=None, errors: str = "raise") -> tuple[list[str], np.ndarray]:
    """Decode every image file under a folder or in an archive.

    Parameters
    ----------
    path : str or path-like
        A folder, or a ``.tar`` (optionally ``.gz``, ``.bz2``, ``.xz``) or
        ``.zip`` archive.
    image_size : tuple of int or None, default=None
        ``(H, W)`` to resize every image to; ``None`` keeps the sizes, which
        must then agree.
    errors : {"raise", "skip"}, default="raise"
        What a file Pillow cannot read does: raise a ``ValueError`` naming
        it, or be left out with one warning listing what was left out.

    Returns
    -------
    names : list of str
        Paths relative to ``path`` (``/``-separated), sorted.
    images : numpy.ndarray
        Shape ``(n, 3, H, W)``, uint8, in the order of ``names``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If no image file is found, a file cannot be decoded (with
        ``errors="raise"``), or the images differ in size and no
        ``image_size`` is given.
    """
    from PIL import UnidentifiedImageError

    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist: pass a folder of images or a .tar/.tar.gz/.zip of one.")
    if root.is_dir():
        members = _folder_members(root)
    elif is_archive(root):
        members = _archive_members(root)
    else:
        raise ValueError(f"{root} is neither a folder nor an archive ending in one of {ARCHIVE_SUFFIXES}.")
    decoded, skipped = {}, []
    try:
        for name, data in members:
            try:
                decoded[name] = _decode(data, image_size)
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                if errors == "raise":
                    raise ValueError(
                        f"cannot read the image {root / name} ({type(exc).__name__}: {exc}); remove or replace "
                        "it, or pass errors='skip' to leave unreadable files out."
                    ) from exc
                skipped.append(name)
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(f"cannot read the archive {root} ({type(exc).__name__}: {exc}); is it complete?") from exc
    if skipped:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        warnings.warn(
            f"{len(skipped)} unreadable file(s) under {root} were skipped: {shown}", UserWarning, stacklevel=3
        )
    if not decoded:
        raise ValueError(f"no image files found in {root} (looked for names ending in {', '.join(IMAGE_EXTENSIONS)}).")
    names = sorted(decoded)
    shapes = {decoded[name].shape for name in names}
    if len(shapes) > 1:
        first = decoded[names[0]].shape
        other = next(name for name in names if decoded[name].shape != first)
        raise ValueError(
            f"the images under {root} differ in size: {names[0]} is {first[1]}x{first[0]} (WxH), {other} is "
            f"{decoded[other].shape[1]}x{decoded[other].shape[0]}; pass image_size=(H, W) to resize them all."
        )
    images = np.empty((len(names), *next(iter(shapes))), dtype=np.uint8)
    for i, name in enumerate(names):
        images[i] = decoded.pop(name)  # frees each decoded image as it is copied
    return names, np.ascontiguousarray(images.transpose(0, 3, 1, 2))


def split_classes(names: list[str]) -> tuple[list[str] | None, np.ndarray, list[str]]:
    """Classes of the ImageFolder layout from the relative paths of the images.

    A folder that holds nothing but one folder is looked through
    (``train/cat/1.jpg`` has the class ``cat``, as archives often wrap their
    tree in one folder), so a tree of a single class reads as unlabelled.
    Images directly in the (looked-through) root are unlabelled when there
    are no class folders; beside class folders they are left out, with a
    warning.  Each class takes every image under its folder, at any depth.

    Parameters
    ----------
    names : list of str
        ``/``-separated relative paths, sorted.

    Returns
    -------
    classes : list of str or None
        Class of each image (None when the tree is flat: no labels).
    keep : numpy.ndarray of bool
        Which of ``names`` belong to the data set.
    class_names : list of str
        Sorted class names (empty when the tree is flat).
    """
    parts = [PurePosixPath(name).parts for name in names]
    depth = 0
    # one wrapping folder and nothing beside it: look through it (train/cat/1.jpg has the class cat)
    while all(len(p) > depth + 1 for p in parts) and len({p[depth] for p in parts}) == 1:
        depth += 1
    inner = [p[depth:] for p in parts]
    if all(len(p) == 1 for p in inner):
        return None, np.ones(len(names), dtype=bool), []
    keep = np.array([len(p) > 1 for p in inner])
    if not keep.all():
        loose = [name for name, k in zip(names, keep, strict=True) if not k]
        warnings.warn(
            f"{len(loose)} image(s) lie directly beside the class folders and are not read: {', '.join(loose[:5])}",
            UserWarning,
            stacklevel=3,
        )
    classes = [p[0] if len(p) > 1 else None for p in inner]
    return classes, keep, sorted({c for c in classes if c is not None})
