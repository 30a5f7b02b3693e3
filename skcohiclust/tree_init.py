"""Data-dependent initialisation of the tree head by bisecting 2-means.

Deep clustering methods such as DEC start their cluster layer from k-means
on the pretrained representation.  The tree analogue used here: split the
representations of the training data top-down, every node of a level at
once, each split a 2-means (started along the node's principal direction);
the routing hyperplane of a node is the perpendicular bisector of its two
centroids.  Training then starts from a tree that already follows the
structure of the representation, instead of from random hyperplanes that
the tree loss would first impose on the representation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bisecting_hyperplanes"]

#: Median absolute routing logit of a node's samples after initialisation (sigmoid(2) = 0.88).
INIT_LOGIT = 2.0


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
