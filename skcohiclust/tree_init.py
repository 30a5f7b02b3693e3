"""Data-dependent starts of the tree head: k-means clusters in a tree, or bisecting 2-means.

Deep clustering methods such as DEC start their cluster layer from k-means
on the pretrained representation.  Two tree analogues are here:

* :func:`clustered_tree` (the default start): k-means with as many clusters
  as the tree is to have leaves, the clusters arranged top-down (each node
  splits its clusters into the two groups that Ward's criterion puts
  furthest apart, each small enough for the depth left), every routing
  hyperplane the perpendicular bisector of its two groups' means, and the
  leaves no cluster needs masked.  Each cluster gets a leaf of its own,
  which a fixed-depth bisection cannot promise.
* :func:`bisecting_hyperplanes`: split the representations top-down, every
  node of a level at once, each split a 2-means (started along the node's
  principal direction); all ``2**depth`` leaves stay, to be pruned during
  training.

Training then starts from a tree that already follows the structure of the
representation, instead of from random hyperplanes that the tree loss would
first impose on the representation.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

__all__ = ["bisecting_hyperplanes", "clustered_tree", "split_clusters"]

#: Median absolute routing logit of a node's samples after initialisation (sigmoid(2) = 0.88).
INIT_LOGIT = 2.0
#: Routing logit inside a collapsed subtree: its one kept leaf gets sigmoid(6) = 0.9975 per level.
COLLAPSED_LOGIT = 3 * INIT_LOGIT
#: Up to this many clusters a node's split is found by trying every bipartition.
EXHAUSTIVE_MAX = 16
#: k-means restarts of :func:`clustered_tree`; the lowest-inertia one is kept.  Few restarts
#: often miss the best solution on contrastive features, and its leaves then start less pure
#: (BENCHMARKS.md, "k-means restarts of the tree start"); 50 on 20,000 rows take about 11 s.
KMEANS_N_INIT = 50


def _segment_mean(values, segment, n_segments, weights=None):
    weights = torch.ones_like(values[:, 0]) if weights is None else weights
    total = values.new_zeros(n_segments, values.shape[1]).index_add_(0, segment, values * weights[:, None])
    count = values.new_zeros(n_segments).index_add_(0, segment, weights)
    return total / count.clamp_min(1e-12)[:, None], count


def _segment_lower_median(values, segment, count):
    """Per segment, the lower median of ``values`` (as ``torch.median``); 0 for empty segments."""
    order = torch.argsort(values, stable=True)
    order = order[torch.argsort(segment[order], stable=True)]
    count = count.long()
    middle = (torch.cumsum(count, 0) - count + (count - 1).clamp_min(0) // 2).clamp_max(len(values) - 1)
    return torch.where(count > 0, values[order][middle], torch.zeros_like(middle, dtype=values.dtype))


def bisecting_hyperplanes(h: torch.Tensor, depth: int, generator: torch.Generator, n_iter: int = 20):
    """Routing hyperplanes of a tree of depth ``depth`` from bisecting 2-means on ``h``.

    Parameters
    ----------
    h : torch.Tensor
        Shape ``(n, d)``: representations of (a sample of) the training data.
    depth : int
        Depth of the tree.
    generator : torch.Generator
        Seeds the power iteration that finds each node's principal direction.
    n_iter : int, default=20
        Lloyd iterations per level.

    Returns
    -------
    weight : torch.Tensor
        Shape ``(2**depth - 1, d)``, one row per internal node (heap order).
    bias : torch.Tensor
        Shape ``(2**depth - 1,)``.  ``sigmoid(h @ weight.T + bias)`` is the
        probability of going left: left is the side of the first centroid.
    """
    h = h.double()
    n, dim = h.shape
    weight = h.new_zeros(2**depth - 1, dim)
    bias = h.new_zeros(2**depth - 1)
    node = torch.zeros(n, dtype=torch.long, device=h.device)
    for level in range(depth):
        width = 2**level
        mean, count = _segment_mean(h, node, width)
        centred = h - mean[node]
        direction = torch.randn(width, dim, generator=generator, dtype=h.dtype, device="cpu").to(h.device)
        for _ in range(10):  # power iteration for every node at once
            scores = (centred * direction[node]).sum(1, keepdim=True)
            direction = F.normalize(h.new_zeros(width, dim).index_add_(0, node, centred * scores), dim=1)
        scores = (centred * direction[node]).sum(1)
        left = scores >= 0
        for _ in range(n_iter):
            c_left, n_left = _segment_mean(h, node, width, left.to(h.dtype))
            c_right, n_right = _segment_mean(h, node, width, (~left).to(h.dtype))
            # an empty side keeps the node mean (its hyperplane then sends everything one way)
            c_left = torch.where(n_left[:, None] > 0, c_left, mean)
            c_right = torch.where(n_right[:, None] > 0, c_right, mean)
            d_left = ((h - c_left[node]) ** 2).sum(1)
            d_right = ((h - c_right[node]) ** 2).sum(1)
            new_left = d_left <= d_right
            if torch.equal(new_left, left):
                break
            left = new_left
        w = c_left - c_right
        b = -(w * (c_left + c_right)).sum(1) / 2
        logits = (h * w[node]).sum(1) + b[node]
        # scale each node so that its samples' median |logit| is INIT_LOGIT
        median = _segment_lower_median(logits.abs(), node, count)
        scale = torch.where(median > 0, INIT_LOGIT / median.clamp_min(1e-12), torch.ones_like(median))
        heap = slice(width - 1, 2 * width - 1)
        weight[heap] = w * scale[:, None]
        bias[heap] = b * scale
        node = 2 * node + (~(logits >= 0)).long()
    return weight.float(), bias.float()


def split_clusters(counts: np.ndarray, means: np.ndarray, capacity: int) -> np.ndarray:
    """Split clusters into two groups of at most ``capacity`` clusters, as far apart as Ward's criterion goes.

    The split maximises the between-group sum of squares
    ``n_A * n_B / (n_A + n_B) * |mean_A - mean_B|**2`` of the samples.  Up
    to :data:`EXHAUSTIVE_MAX` clusters every bipartition is tried (one
    vectorised pass); more clusters are ordered along the principal
    direction of their means and the best cut of that order is taken.

    Parameters
    ----------
    counts : numpy.ndarray
        Shape ``(k,)``, samples per cluster, ``k >= 2``.
    means : numpy.ndarray
        Shape ``(k, d)``, the cluster means.
    capacity : int
        Most clusters either group may hold (``2 * capacity >= k``).

    Returns
    -------
    numpy.ndarray
        Boolean, shape ``(k,)``: True for the clusters of the first group.
    """
    k = len(counts)
    if not 2 <= k <= 2 * capacity:
        raise ValueError(f"cannot split {k} clusters into two groups of at most {capacity}.")
    weighted = counts[:, None] * means
    if k <= EXHAUSTIVE_MAX:
        codes = np.arange(1, 2 ** (k - 1), dtype=np.int64)  # the last cluster is always in the second group
        groups = ((codes[:, None] >> np.arange(k)) & 1).astype(bool)
    else:
        centre = weighted.sum(0) / counts.sum()
        _, _, vt = np.linalg.svd(np.sqrt(counts)[:, None] * (means - centre), full_matrices=False)
        order = np.argsort(means @ vt[0], kind="stable")
        groups = np.zeros((k - 1, k), dtype=bool)
        groups[np.arange(1, k)[:, None] > np.arange(k)[None, :]] = True  # row i: the first i + 1 of the order
        groups = groups[:, np.argsort(order)]
    size = groups.sum(1)
    groups = groups[(size <= capacity) & (k - size <= capacity)]
    n_first = groups @ counts
    n_second = counts.sum() - n_first
    first = (groups @ weighted) / n_first[:, None]
    second = (weighted.sum(0) - groups @ weighted) / n_second[:, None]
    between = n_first * n_second / (n_first + n_second) * ((first - second) ** 2).sum(1)
    return groups[int(np.argmax(between))]


def clustered_tree(h: torch.Tensor, depth: int, n_leaves: int, seed: int):
    """Routing hyperplanes and a leaf mask from k-means clusters arranged into a tree.

    k-means (``n_leaves`` clusters, the best of :data:`KMEANS_N_INIT`
    starts) on ``h`` gives the leaves; the clusters are then divided
    top-down, each node's set into the two groups that
    :func:`split_clusters` finds (each small enough for the depth left), and
    a node's hyperplane is the perpendicular bisector of its two groups'
    sample means.  A node that holds one cluster before the last level
    becomes a collapsed subtree: its leftmost leaf is kept and the nodes
    below route everything to it; the other leaves of the subtree are
    masked.  The tree then starts with exactly ``n_leaves`` leaves, one per
    cluster, and its upper levels follow how the clusters group.

    Parameters
    ----------
    h : torch.Tensor
        Shape ``(n, d)``, ``n >= n_leaves``: representations of (a sample
        of) the training data.
    depth : int
        Depth of the tree.
    n_leaves : int
        Leaves to start with, ``1 <= n_leaves <= 2**depth``.
    seed : int
        Seeds k-means.

    Returns
    -------
    weight : torch.Tensor
        Shape ``(2**depth - 1, d)``, one row per internal node (heap order).
    bias : torch.Tensor
        Shape ``(2**depth - 1,)``; left is the side of the first group.
    leaf_mask : torch.Tensor
        Boolean, shape ``(2**depth,)``, with ``n_leaves`` True (fewer only
        when ``h`` has fewer distinct rows: empty clusters get no leaf).
    """
    if not 1 <= n_leaves <= min(2**depth, len(h)):
        raise ValueError(f"n_leaves must be in [1, {min(2**depth, len(h))}], got {n_leaves}.")
    x = h.detach().double().cpu().numpy()
    with warnings.catch_warnings():
        # fewer distinct rows than clusters: k-means then leaves clusters empty, dropped just below
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = KMeans(n_clusters=n_leaves, n_init=KMEANS_N_INIT, random_state=seed).fit_predict(x)
    _, labels = np.unique(labels, return_inverse=True)
    labels = labels.reshape(-1)
    n_leaves = int(labels.max()) + 1
    means, counts = (t.numpy() for t in _segment_mean(torch.from_numpy(x), torch.from_numpy(labels), n_leaves))
    weight = np.zeros((2**depth - 1, x.shape[1]))
    bias = np.zeros(2**depth - 1)
    leaf_mask = np.zeros(2**depth, dtype=bool)
    # a loop over at most 2**depth - 1 nodes, once per fit: not a hot path
    pending = [(0, 0, np.arange(n_leaves))]
    while pending:
        level, index, clusters = pending.pop()
        if len(clusters) == 1:
            leaf_mask[index * 2 ** (depth - level)] = True
            for below in range(level, depth):  # route to the leftmost leaf of the subtree
                bias[2**below - 1 + index * 2 ** (below - level)] = COLLAPSED_LOGIT
            continue
        first = split_clusters(counts[clusters], means[clusters], 2 ** (depth - level - 1))
        group_means = [
            (counts[g, None] * means[g]).sum(0) / counts[g].sum() for g in (clusters[first], clusters[~first])
        ]
        w = group_means[0] - group_means[1]
        b = -w @ (group_means[0] + group_means[1]) / 2
        logits = x[np.isin(labels, clusters)] @ w + b
        scale = INIT_LOGIT / max(float(np.median(np.abs(logits))), 1e-12)
        weight[2**level - 1 + index] = w * scale
        bias[2**level - 1 + index] = b * scale
        pending += [(level + 1, 2 * index, clusters[first]), (level + 1, 2 * index + 1, clusters[~first])]
    return torch.from_numpy(weight).float(), torch.from_numpy(bias).float(), torch.from_numpy(leaf_mask)
