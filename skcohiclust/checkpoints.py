"""Checkpoint files and the training state kept by a fitted estimator.

A checkpoint is one file, ``checkpoint.pt`` in the estimator's
``checkpoint_dir``, holding plain tensors and Python values only: the
network's ``state_dict``, the trainer's state (optimiser, random generators,
epoch, the objective's own state), the history, and *metadata* that a
resuming fit must match (method, architecture, input, settings and a
fingerprint of the data).  :class:`Trainer <skcohiclust.training.Trainer>`
decides what goes in them; this module writes and reads the files and checks
the metadata.

On disk the file is what ``torch.save`` writes, and it loads with
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

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_FORMAT",
    "CONTAINER_FORMAT",
    "CheckpointError",
    "TrainingState",
    "data_fingerprint",
    "run_metadata",
    "check_format",
    "check_metadata",
    "write_checkpoint",
    "read_checkpoint",
    "checkpoint_lock",
    "plain",
]

#: File name of the checkpoint inside ``checkpoint_dir``.
CHECKPOINT_NAME = "checkpoint.pt"
#: Version of the checkpoint layout; other versions are refused.
CHECKPOINT_FORMAT = 1
#: Settings that do not change the trajectory of training (not compared on resume).
COSMETIC_SETTINGS = ("verbose", "checkpoint_every")
#: The method of checkpoints written before the metadata named it: only CoHiClust wrote them.
_METHOD_OF_OLDER_FILES = "CoHiClust"


#: Version of the file layout (the wrapper around the training state).
CONTAINER_FORMAT = 1
_MARKER = "skcohiclust_checkpoint"
_WHAT_TO_DO = "delete it to start afresh, or use another checkpoint_dir"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used, or a checkpoint folder in use by another fit."""


def _digest(payload: bytes) -> str:
    return hashlib.blake2b(payload, digest_size=32).hexdigest()


def data_fingerprint(X: Any, n_rows: int = 64) -> str:
    """A cheap fingerprint of a data set: its shape, dtype and a sample of rows.

    Only ``n_rows`` evenly spaced rows are read, so a memory-mapped file is
    not read whole.  Two arrays that differ only outside those rows share a
    fingerprint: it guards against resuming on the wrong data by mistake,
    it is not a checksum.

    Parameters
    ----------
    X : array-like
        Anything with ``shape``, ``dtype`` and row indexing by an integer array.
    n_rows : int, default=64
        Rows to hash.

    Returns
    -------
    str
        Hexadecimal digest.
    """
    n = int(X.shape[0])
    rows = np.unique(np.linspace(0, max(n - 1, 0), num=min(n, n_rows)).round().astype(np.int64))
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((tuple(int(s) for s in X.shape), str(X.dtype))).encode())
    digest.update(np.ascontiguousarray(X[rows]).tobytes())
    return digest.hexdigest()


def run_metadata(
    X: Any,
    model_input_shape: tuple,
    backbone: str,
    network: torch.nn.Module,
    augmentation: Any,
    settings: dict,
    projection_dim: int,
    method: str,
    architecture: dict,
) -> dict:
    """What a checkpoint must match before it is loaded.

    Parameters
    ----------
    X : array-like
        The validated training data (only its shape, dtype and a few rows
        are read, see :func:`data_fingerprint`).
    model_input_shape : tuple of int
        Shape of one model input (``(C, H, W)`` or ``(d,)``).
    backbone : str
        Resolved backbone name (``"custom"`` for a module).
    network : ContrastiveNetwork
        The network (names the class of a custom backbone).
    augmentation : object
        The resolved augmentation (compared by ``repr``).
    settings : dict
        Every training setting; all but :data:`COSMETIC_SETTINGS` are compared.
    projection_dim : int
        Output size of the projection head.
    method : str
        The estimator's class name (``"CoHiClust"``, ``"ContrastiveClustering"``).
    architecture : dict
        The method's parameters that shape the network (``{"depth": 4}`` for
        CoHiClust), compared one by one.

    Returns
    -------
    dict
        Plain Python values, in the order they are checked.
    """
    if backbone == "custom":
        cls = type(network.backbone)
        backbone = f"custom:{cls.__module__}.{cls.__qualname__}"
    # the built-in CNN's working size is not in its weights' shapes, so it is compared by name
    working_size = getattr(network, "input_size", None)
    return plain(
        {
            "method": method,
            **architecture,
            "backbone": backbone,
            "projection_dim": projection_dim,
            "input_shape": tuple(X.shape[1:]),
            "model_input_shape": tuple(model_input_shape),
            **({"network_input_size": tuple(working_size)} if working_size is not None else {}),
            "dtype": str(X.dtype),
            "augmentation": repr(augmentation),
            "settings": {k: v for k, v in settings.items() if k not in COSMETIC_SETTINGS},
            "n_samples": int(X.shape[0]),
            "data": data_fingerprint(X),
        }
    )


class TrainingState:
    """What training needs, besides the network, to continue exactly.

    Optimiser state, random generator states, epoch counter, the
    objective's state (for CoHiClust the pruning mask as training left it
    and the neighbour table), and the seed.  It holds no reference to the
    training data.  Pickling stores it as bytes (``torch.save``);
    unpickling puts its tensors on the CPU, and the trainer moves them
    where the network is.

    Parameters
    ----------
    state : dict
        From :meth:`Trainer.training_state <skcohiclust.training.Trainer.training_state>`.
    """

    def __init__(self, state: dict):
        self.state = state

    @property
    def epoch(self) -> int:
        """Epochs trained so far."""
        return int(self.state["epoch"])

    def __getstate__(self):
        buffer = io.BytesIO()
        torch.save(self.state, buffer)
        return {"payload": buffer.getvalue()}

    def __setstate__(self, data):
        self.state = torch.load(io.BytesIO(data["payload"]), map_location="cpu", weights_only=True)

    def __repr__(self) -> str:
        return f"TrainingState(epoch={self.epoch})"


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


def check_format(state: dict, where: str) -> None:
    """Raise a ValueError if a checkpoint's layout is not :data:`CHECKPOINT_FORMAT`.

    Parameters
    ----------
    state : dict
        The checkpoint's contents (its ``"format"`` key is checked).
    where : str
        How to name the checkpoint in the message.
    """
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{where} has checkpoint format {state.get('format')!r}, this version reads format "
            f"{CHECKPOINT_FORMAT}; delete it or use another checkpoint_dir."
        )


#: Metadata keys that describe the data rather than the model.
_DATA_KEYS = ("n_samples", "data")


def check_metadata(saved: dict, current: dict, where: str) -> None:
    """Raise a ValueError naming the first key on which a checkpoint and this run disagree.

    Parameters
    ----------
    saved : dict
        The checkpoint's metadata.
    current : dict
        This run's (:func:`run_metadata`).
    where : str
        How to name the checkpoint in the message.
    """
    saved_method = saved.get("method", _METHOD_OF_OLDER_FILES)
    if "method" in current and saved_method != current["method"]:
        raise ValueError(
            f"{where} was written by {saved_method}, not {current['method']}; use another checkpoint_dir, "
            "or delete the checkpoint to start afresh."
        )
    for key, value in current.items():
        if key == "method":
            continue
        if key not in saved:
            raise ValueError(f"{where} does not record {key!r}; delete it or use another checkpoint_dir.")
        old = saved[key]
        if old == value:
            continue
        if key in _DATA_KEYS:
            raise ValueError(
                f"{where} was written by a fit on other data ({saved.get('n_samples')} samples of shape "
                f"{saved.get('input_shape')}, fingerprint {str(saved.get('data'))[:12]}) than this fit "
                f"({current.get('n_samples')} samples of shape {current.get('input_shape')}, fingerprint "
                f"{str(current.get('data'))[:12]}); use another checkpoint_dir, or delete the checkpoint "
                "to start afresh."
            )
        if key == "settings":
            diff = ", ".join(
                f"{name}={old.get(name)!r} there, {value.get(name)!r} here"
                for name in sorted(set(old) | set(value))
                if old.get(name) != value.get(name)
            )
            raise ValueError(
                f"{where} was written with other training settings ({diff}); use the same parameters, "
                "another checkpoint_dir, or warm_start=True on the fitted model to train further."
            )
        raise ValueError(
            f"{where} was written for {key}={old!r}, but this model has {key}={value!r}; use the matching "
            "parameters and data, another checkpoint_dir, or delete the checkpoint."
        )


def plain(value: Any) -> Any:
    """Plain Python data (loadable with ``torch.load(weights_only=True)``): numpy scalars become numbers.

    Parameters
    ----------
    value : object
        Nested dicts, lists and tuples of scalars; anything else becomes its ``repr``.

    Returns
    -------
    object
    """
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return repr(value)
