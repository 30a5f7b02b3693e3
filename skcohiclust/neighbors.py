"""Nearest neighbours in the learned representation, for the tree phase's neighbour positives.

CoHiClust's positive pairs are two views of one sample.  With
``n_neighbors > 0`` the tree phase pairs each sample with a view of one of
its nearest neighbours instead, as SCAN (Van Gansbeke et al., ECCV 2020)
does for flat clusters: samples that the representation puts close
together are pulled into the same leaf, which a pair of views of a single
image cannot teach.  The neighbours are found by cosine similarity with
exact, chunked matrix products (no index structure, no Python loop over
samples).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["nearest_neighbors", "refresh_epochs", "MAX_CANDIDATES", "REFRESH_SAMPLES"]

#: Largest number of candidate neighbours searched; larger data sets search a random subset of this size.
MAX_CANDIDATES = 65536
#: Samples drawn between two minings of the neighbours under ``refresh_neighbors="auto"``: about 2,000
#: batches of 128, five epochs of CIFAR-10's 50,000 images (measured there; BENCHMARKS.md).
REFRESH_SAMPLES = 250_000
#: Largest similarity block (queries x candidates) computed at once: 64 MiB of float32.
BLOCK_FLOATS = 2**24


def nearest_neighbors(
    features: torch.Tensor,
    k: int,
    candidates: torch.Tensor | None = None,
    chunk: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The ``k`` most cosine-similar rows of every row, itself excluded.

    Parameters
    ----------
    features : torch.Tensor
        Shape ``(n, d)``.
    k : int
        Neighbours per row, ``1 <= k < number of candidates``.
    candidates : torch.Tensor, optional
        Long tensor of the row indices among which neighbours are searched
        (sorted, no repeats); default all rows.  A row is never its own
        neighbour, whether or not it is a candidate.
    chunk : int, optional
        Queries per matrix product (memory: ``chunk`` x candidates floats);
        by default as many as keep that block within :data:`BLOCK_FLOATS`.
    dtype : torch.dtype, default=torch.float32
        Precision of the similarity products; ``torch.bfloat16`` is about
        twice as fast where the hardware has it, and may reorder
        neighbours whose similarities differ in the third decimal.

    Returns
    -------
    torch.Tensor
        Long tensor of shape ``(n, k)``: row indices into ``features``, the
        most similar first.
    """
    n = features.shape[0]
    pool = torch.arange(n, device=features.device) if candidates is None else candidates.to(features.device)
    if not 1 <= k < len(pool):
        raise ValueError(f"k must be in [1, {len(pool) - 1}] for {len(pool)} candidates, got {k}.")
    if chunk is None:
        chunk = max(1, BLOCK_FLOATS // len(pool))
    unit = F.normalize(features.float(), dim=1).to(dtype)
    pool_unit = unit if candidates is None else unit[pool]
    out = torch.empty(n, k, dtype=torch.long, device=features.device)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sim = unit[start:stop] @ pool_unit.T
        # a row must not find itself: push its own column (where it is a candidate) below every cosine
        rows = torch.arange(start, stop, device=features.device)
        column = torch.searchsorted(pool, rows).clamp_max(len(pool) - 1)
        own = pool[column] == rows
        sim[torch.arange(stop - start, device=features.device)[own], column[own]] = -3.0
        out[start:stop] = pool[sim.topk(k, dim=1, sorted=True).indices]
    return out


def refresh_epochs(refresh_neighbors: int | str, n_samples: int) -> int:
    """Epochs between two minings of the neighbours; 0 for never after the first.

    Parameters
    ----------
    refresh_neighbors : int or "auto"
        An ``int`` is the answer itself.  ``"auto"``: the whole number of
        epochs nearest to :data:`REFRESH_SAMPLES` samples (at least one), so
        the neighbours are found again once the representation has been
        trained on about as many samples, however large the data set:
        every 5 epochs of 50,000 images, every 4 of 70,000, every epoch
        from 500,000, and on small data sets (digits' 1,797 images: every
        139 epochs) in practice never.
    n_samples : int
        Samples in an epoch.

    Returns
    -------
    int
    """
    if refresh_neighbors != "auto":
        return int(refresh_neighbors)
    return max(1, int(REFRESH_SAMPLES / max(1, n_samples) + 0.5))
