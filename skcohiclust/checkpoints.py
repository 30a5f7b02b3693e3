"""Checkpoint files: written atomically with a checksum, read safely, one writer per folder.

A checkpoint file is what ``torch.save`` writes, and it loads with
``torch.load(path, weights_only=True)``: a dict holding a format marker, the
BLAKE2b digest of the payload, and the payload, the training state
serialised by ``torch.save``, as a uint8 tensor (older torch releases refuse
plain ``bytes`` with ``weights_only=True``).  :func:`read_checkpoint` loads only
tensors and plain containers (``weights_only=True`` twice: a file from
elsewhere cannot run code), checks the digest (a flipped byte in a tensor
would otherwise load silently as a wrong weight), and turns every failure
into a :class:`CheckpointError` (a ``ValueError``) that names the file and
says what to do.  :func:`checkpoint_lock` keeps two fits from writing one
folder at the same time.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import io
import os
import pickle
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["CheckpointError", "read_checkpoint", "write_checkpoint", "checkpoint_lock", "CONTAINER_FORMAT"]

#: Version of the file layout (the wrapper around the training state).
CONTAINER_FORMAT = 1
_MARKER = "skcohiclust_checkpoint"
_WHAT_TO_DO = "delete it to start afresh, or use another checkpoint_dir"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, or a checkpoint folder in use by another fit."""


def _digest(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=32).hexdigest()


def write_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically, with a checksum.

    The state is serialised with ``torch.save`` into memory, wrapped with its
    digest, written to a temporary file in the same folder, flushed to disk
    and renamed over ``path``: a crash at any moment leaves the old file or
    the new one, never a mix.

    Parameters
    ----------
    state : dict
        Tensors and plain Python values (what ``torch.load(weights_only=True)``
        accepts).
    path : str or path-like
        The checkpoint file; its folder must exist.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        packed = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
        with open(tmp, "wb") as handle:
            torch.save({_MARKER: CONTAINER_FORMAT, "blake2b": _digest(payload), "payload": packed}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _torch_load(source, map_location, path: str) -> Any:
    """``torch.load(weights_only=True)`` whose failures name ``path`` and say what to do."""
    try:
        with warnings.catch_warnings():  # torch's note on a foreign pickle protocol: the error below says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise CheckpointError(
                f"could not read the checkpoint {path}: it is not a skcohiclust checkpoint, or is corrupted "
                "(it holds something other than tensors and plain Python values, and was not loaded: loading it "
                f"could run code); {_WHAT_TO_DO}. ({_first_line(exc)})"
            ) from None
        raise CheckpointError(
            f"could not read the checkpoint {path}: it is corrupted ({_first_line(exc)}); {_WHAT_TO_DO}."
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
        if isinstance(exc, OSError) and not os.path.isfile(path):
            raise CheckpointError(
                f"could not read the checkpoint {path} ({_first_line(exc)}); {_WHAT_TO_DO}."
            ) from None
        raise CheckpointError(
            f"could not read the checkpoint {path}: the file is truncated or corrupted ({_first_line(exc)}); "
            f"{_WHAT_TO_DO}."
        ) from None


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = None) -> dict:
    """Load a checkpoint written by :func:`write_checkpoint`, safely.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file.
    map_location : str, torch.device or None, default=None
        Where the tensors go (as in ``torch.load``).

    Returns
    -------
    dict
        The training state.  A file written by skcohiclust 0.1.0 (the state
        saved directly, without a digest) is read too.

    Raises
    ------
    CheckpointError
        If the file is truncated, corrupted (its digest does not match),
        foreign (not a skcohiclust checkpoint, or holding Python objects
        other than tensors and plain containers) or of a newer layout.  The
        message names the file and what to do.
    """
    path = os.fspath(path)
    outer = _torch_load(path, "cpu", path)
    if isinstance(outer, dict) and _MARKER in outer:
        if outer[_MARKER] != CONTAINER_FORMAT:
            raise CheckpointError(
                f"could not read the checkpoint {path}: it has layout {outer[_MARKER]!r}, this version reads "
                f"layout {CONTAINER_FORMAT} (written by another version of skcohiclust?); {_WHAT_TO_DO}."
            )
        packed = outer.get("payload")
        ok = isinstance(packed, torch.Tensor) and packed.dtype == torch.uint8 and packed.ndim == 1
        payload = packed.numpy().tobytes() if ok else b""
        if not ok or outer.get("blake2b") != _digest(payload):
            raise CheckpointError(
                f"could not read the checkpoint {path}: it is corrupted (its checksum does not match its "
                f"contents); {_WHAT_TO_DO}."
            )
        state = _torch_load(io.BytesIO(payload), map_location, path)
    else:  # a state saved directly (skcohiclust 0.1.0), or a foreign file
        state = _torch_load(path, map_location, path) if map_location not in (None, "cpu") else outer
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(
            f"could not read the checkpoint {path}: it is not a skcohiclust checkpoint (it holds a "
            f"{type(state).__name__} without a checkpoint format); {_WHAT_TO_DO}."
        )
    return state


def _try_lock(fd: int) -> bool:
    """Take an exclusive lock on ``fd`` without waiting; False if another holder has it."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


@contextlib.contextmanager
def checkpoint_lock(directory: str | os.PathLike | None) -> Iterator[None]:
    """Hold ``directory`` for one fit: a second fit writing there at the same time is refused.

    On POSIX systems the lock is an exclusive ``flock`` on the folder itself
    (no lock file is left behind, and the operating system releases it when
    the process ends, even by ``kill -9``); on Windows it is a byte lock on a
    file ``checkpoint.lock`` in the folder.  The folder is created if
    needed.  Temporary files left by a writer that died mid-write are
    removed once the lock is held (no other writer can own them then).

    Parameters
    ----------
    directory : str, path-like or None
        The ``checkpoint_dir``; ``None`` locks nothing.

    Raises
    ------
    CheckpointError
        If another fit, in this process or another, holds the folder.
    """
    if directory is None:
        yield
        return
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        fd = os.open(os.path.join(directory, "checkpoint.lock"), os.O_RDWR | os.O_CREAT)
    else:
        fd = os.open(directory, os.O_RDONLY)
    try:
        if not _try_lock(fd):
            raise CheckpointError(
                f"checkpoint_dir {directory} is in use by another fit (in this process or another) that "
                "writes its checkpoints there; wait for it to finish, or give this fit another checkpoint_dir."
            )
        for stale in glob.glob(os.path.join(glob.escape(directory), "*.pt.tmp-*")):
            with contextlib.suppress(OSError):
                os.remove(stale)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
