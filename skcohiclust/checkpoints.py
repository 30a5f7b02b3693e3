"""Checkpoint files and the training state kept by a fitted estimator.

A checkpoint is one file, ``checkpoint.pt`` in the estimator's
``checkpoint_dir``, holding plain tensors and Python values only (it loads
with ``torch.load(weights_only=True)``): the network's ``state_dict``, the
trainer's state (optimiser, random generators, epoch, the objective's own
state), the history, and *metadata* that a resuming fit must match (method,
architecture, input, settings and a fingerprint of the data).  This module
writes and reads such files and checks the metadata; :class:`Trainer
<skcohiclust.training.Trainer>` decides what goes in them.
"""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np
import torch

__all__ = [
    "CHECKPOINT_NAME",
    "CHECKPOINT_FORMAT",
    "TrainingState",
    "data_fingerprint",
    "run_metadata",
    "check_format",
    "check_metadata",
    "write_checkpoint",
    "read_checkpoint",
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


def data_fingerprint(X, n_rows: int = 64) -> str:
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
    X, model_input_shape, backbone, network, augmentation, settings, projection_dim, method, architecture
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
    return plain(
        {
            "method": method,
            **architecture,
            "backbone": backbone,
            "projection_dim": projection_dim,
            "input_shape": tuple(X.shape[1:]),
            "model_input_shape": tuple(model_input_shape),
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


def write_checkpoint(state: dict, path) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file, flushed to disk, then a rename.

    Parameters
    ----------
    state : dict
        Plain tensors and Python values.
    path : str or path
        The checkpoint file; its directory is created if needed.
    """
    os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_checkpoint(path, device) -> dict:
    """Read a checkpoint file with ``weights_only=True``, its tensors on ``device``.

    Parameters
    ----------
    path : str or path
    device : torch.device

    Returns
    -------
    dict

    Raises
    ------
    ValueError
        If the file cannot be read (truncated, or not a checkpoint).
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated or foreign file
        raise ValueError(
            f"could not read the checkpoint {path} ({type(exc).__name__}: {exc}); "
            "delete it or use another checkpoint_dir."
        ) from exc


def check_format(state: dict, where: str) -> None:
    """Raise a ValueError if a checkpoint's layout is not :data:`CHECKPOINT_FORMAT`."""
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


def plain(value):
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
