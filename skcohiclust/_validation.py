"""Checks of what a fit is given that scikit-learn's ``validate_data`` does not make.

Each check raises a ``ValueError`` that names the parameter or the problem,
before anything large is allocated: values of ``X`` beyond the float32 range
the network computes in, a ``random_state`` numpy cannot seed from, and a
tree too deep for the memory of the device it would train on.
"""

from __future__ import annotations

import numbers
import os

import numpy as np
import torch
from sklearn.utils import check_random_state

__all__ = ["MAX_DEPTH", "check_float32_range", "seed_from", "tree_memory_bytes", "check_tree_fits_memory"]

#: The deepest tree accepted at all (2**30 leaves); the memory check usually refuses far less.
MAX_DEPTH = 30

#: Representation sizes of the built-in backbones (for the memory estimate, before the network exists).
_REPRESENTATION_DIM = {"auto": 256, "cnn": 96, "mlp": 256, "resnet18": 512, "resnet34": 512, "resnet50": 2048}
#: Assumed for a user's module that does not declare ``output_dim``.
_DEFAULT_REPRESENTATION_DIM = 512
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_GIB = 2.0**30


def check_float32_range(X: np.ndarray) -> None:
    """Refuse float64 values that float32, which the network computes in, cannot hold.

    Parameters
    ----------
    X : numpy.ndarray
        Validated, finite data.

    Raises
    ------
    ValueError
        If some ``|x|`` exceeds float32's largest value (about 3.4e38).
    """
    if X.dtype != np.float64 or X.size == 0:
        return
    largest = float(np.max(np.abs(X)))
    if largest > _FLOAT32_MAX:
        raise ValueError(
            f"X holds values too large for float32, which CoHiClust computes in (largest |x| = {largest:.3g}, "
            f"float32 holds up to {_FLOAT32_MAX:.3g}); rescale X, e.g. with StandardScaler."
        )


def seed_from(random_state) -> int:
    """The integer seed of a fit, drawn from ``random_state``.

    Parameters
    ----------
    random_state : int, numpy.random.RandomState or None
        As scikit-learn takes it.

    Returns
    -------
    int
        In ``[0, 2**31 - 2)``.

    Raises
    ------
    ValueError
        If numpy cannot seed from ``random_state``; the message names it.
    """
    try:
        return int(check_random_state(random_state).randint(0, 2**31 - 2))
    except (ValueError, TypeError) as exc:
        raise ValueError(
            f"random_state must be None, an int in [0, 2**32 - 1] or a numpy RandomState, got {random_state!r} ({exc})."
        ) from None


def tree_memory_bytes(depth: int, n_samples: int, batch_size: int, representation_dim: int) -> int:
    """Rough bytes that a tree of ``depth`` needs, beyond the backbone.

    The parts that grow with ``2**depth``: the routing weights of the
    ``2**depth - 1`` internal nodes with their gradient and Adam's two
    moments; the node probabilities of a batch (two views of each sample)
    with the square roots, masks and gradients computed from them (about
    eight float32 copies); and the leaf probabilities of every training
    sample, computed once at the end of ``fit`` (and one copy).

    Parameters
    ----------
    depth : int
        Tree depth.
    n_samples : int
        Training samples.
    batch_size : int
        Samples per batch.
    representation_dim : int
        Size of the representation the tree routes on.

    Returns
    -------
    int
    """
    leaves = 2**depth
    head = 4 * representation_dim * leaves * 4
    batch = 8 * 2 * min(batch_size, n_samples) * (2 * leaves) * 4
    leaf_table = 2 * n_samples * leaves * 4
    return head + batch + leaf_table


def _device_memory_bytes(device: torch.device) -> int | None:
    """Total memory of ``device`` in bytes; None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return None


def check_tree_fits_memory(depth: int, n_samples: int, batch_size: int, backbone, device: torch.device) -> None:
    """Refuse a tree too large for the memory of ``device``, before any of it is allocated.

    Parameters
    ----------
    depth : int
        Tree depth (already checked to be in ``[1, MAX_DEPTH]``).
    n_samples : int
        Training samples.
    batch_size : int
        Samples per batch.
    backbone : str or torch.nn.Module
        The backbone parameter (its representation size enters the estimate).
    device : torch.device
        Where training runs.

    Raises
    ------
    ValueError
        If :func:`tree_memory_bytes` exceeds the device's total memory; the
        message names ``depth`` and the sizes.
    """
    if isinstance(backbone, torch.nn.Module):
        dim = getattr(backbone, "output_dim", None)
        dim = int(dim) if isinstance(dim, numbers.Integral) and dim > 0 else _DEFAULT_REPRESENTATION_DIM
    else:
        dim = _REPRESENTATION_DIM.get(backbone, _DEFAULT_REPRESENTATION_DIM)
    needed = tree_memory_bytes(depth, n_samples, batch_size, dim)
    total = _device_memory_bytes(device)
    if total is not None and needed > total:
        raise ValueError(
            f"depth={depth} makes a tree of {2**depth:,} leaves, which needs about {needed / _GIB:,.1f} GiB for "
            f"{n_samples:,} samples (routing weights, batch statistics and leaf probabilities grow as 2**depth), "
            f"more than the {total / _GIB:,.1f} GiB of memory of {device.type}; choose a smaller depth "
            "(n_clusters leaves need only depth >= log2(n_clusters))."
        )
