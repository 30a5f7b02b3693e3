"""Losses of CoHiClust: NT-Xent, the hierarchical contrastive loss, the balance terms.

The tree terms are computed from a handful of *batch statistics* that are
plain sums over the samples of the batch (:class:`TreeBatchStatistics`).
Every pairwise Bhattacharyya similarity of a level is a dot product of the
vectors ``q_i = sqrt(P_l(x_i) + eps)``, so the sums over all pairs, over the
positive pairs and over the self-pairs need no ``(2B)**2`` matrix and cost
``O(B * 2**depth)``.  Being sums, the statistics of several processes combine
with one ``all_reduce``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .tree import column_levels, level_slice

__all__ = [
    "nt_xent",
    "TreeBatchStatistics",
    "tree_batch_statistics",
    "hierarchical_contrastive_loss",
    "balance_regularizer",
    "leaf_balance",
]

#: Added under the square root of the node probabilities (keeps gradients finite at 0).
SQRT_EPS = 1e-8
#: Lower bound of the batch-mean node probabilities inside the logarithm.
LOG_EPS = 1e-8


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross entropy (NT-Xent).

    Parameters
    ----------
    z1, z2 : torch.Tensor
        Projections of the two views, shape ``(B, dim)``; row ``i`` of both is
        the positive pair.
    temperature : float
        Softmax temperature.

    Returns
    -------
    torch.Tensor
        Scalar: mean over the ``2B`` views of the cross entropy of finding the
        other view among the ``2B - 1`` others.
    """
    batch = z1.shape[0]
    z = F.normalize(torch.cat((z1, z2)).float(), dim=1)
    logits = (z @ z.T) / temperature
    eye = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    index = torch.arange(batch, device=z.device)
    targets = torch.cat((index + batch, index))
    return F.cross_entropy(logits, targets)


@dataclass
class TreeBatchStatistics:
    """Sums over one batch from which the tree losses follow.

    All tensors are per column of the level-major node layout (see
    :mod:`skcohiclust.tree`).

    Attributes
    ----------
    sum_q : torch.Tensor
        ``sum_i q_i`` over all ``2B`` views.
    sum_q_squared : torch.Tensor
        ``sum_i q_i**2`` (the self-pairs).
    sum_positive : torch.Tensor
        ``sum_i q_i * q_{i+B}`` (one term per positive pair).
    sum_mass : torch.Tensor
        ``sum_i P(x_i)`` over all views (the regulariser's batch mass).
    n_pairs : int
        ``B``, the number of positive pairs.
    """

    sum_q: torch.Tensor
    sum_q_squared: torch.Tensor
    sum_positive: torch.Tensor
    sum_mass: torch.Tensor
    n_pairs: int


def tree_batch_statistics(
    node_prob_1: torch.Tensor, node_prob_2: torch.Tensor, node_mask: torch.Tensor | None = None
) -> TreeBatchStatistics:
    """Batch statistics of the node probabilities of two views.

    Parameters
    ----------
    node_prob_1, node_prob_2 : torch.Tensor
        Shape ``(B, 2**(depth + 1) - 2)``: node probabilities (level-major)
        of the first and second view of the same ``B`` samples.
    node_mask : torch.Tensor, optional
        Boolean per column; pruned nodes are zeroed and take no part.

    Returns
    -------
    TreeBatchStatistics
    """
    prob = torch.cat((node_prob_1, node_prob_2))
    prob = prob.to(torch.promote_types(prob.dtype, torch.float32))  # half precision -> float32
    if node_mask is not None:
        prob = prob * node_mask
    q = torch.sqrt(prob + SQRT_EPS)
    if node_mask is not None:
        q = q * node_mask
    batch = node_prob_1.shape[0]
    return TreeBatchStatistics(
        sum_q=q.sum(dim=0),
        sum_q_squared=(q * q).sum(dim=0),
        sum_positive=(q[:batch] * q[batch:]).sum(dim=0),
        sum_mass=prob.sum(dim=0),
        n_pairs=batch,
    )


@functools.lru_cache(maxsize=32)
def _column_levels(depth: int, device: torch.device) -> torch.Tensor:
    # built once per depth and device: repeat_interleave would synchronise a GPU on every step
    return column_levels(depth, device=device)


def _per_level(values: torch.Tensor, depth: int) -> torch.Tensor:
    levels = _column_levels(depth, values.device) - 1
    return torch.zeros(depth, dtype=values.dtype, device=values.device).index_add_(0, levels, values)


def hierarchical_contrastive_loss(stats: TreeBatchStatistics, depth: int) -> torch.Tensor:
    """CoHiClust's hierarchical contrastive loss from batch statistics.

    For each level ``l``, with ``s_l`` the Bhattacharyya coefficient,
    ``-mean_{positive pairs} s_l + mean_{negative pairs} s_l``, summed over
    levels ``1..depth``.  Negative pairs are the ordered pairs of distinct
    views that are not two views of one sample: ``2B(2B - 2)`` of them.

    Parameters
    ----------
    stats : TreeBatchStatistics
        From :func:`tree_batch_statistics`.
    depth : int
        Depth of the tree.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    batch = stats.n_pairs
    if batch < 2:
        raise ValueError("the hierarchical contrastive loss needs at least 2 samples per batch.")
    all_pairs = _per_level(stats.sum_q * stats.sum_q, depth)
    self_pairs = _per_level(stats.sum_q_squared, depth)
    positive = _per_level(stats.sum_positive, depth)
    negative = all_pairs - self_pairs - 2.0 * positive
    n_views = 2 * batch
    positive_mean = positive / batch
    negative_mean = negative / (n_views * (n_views - 2))
    return (negative_mean - positive_mean).sum()


def balance_regularizer(stats: TreeBatchStatistics, depth: int, node_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Balance regulariser that keeps both children of every node in use.

    ``R = sum over sibling pairs of -2**(-l) * (log m_left + log m_right) / 2``
    where ``m`` are the batch-mean node probabilities and ``l`` is the level
    of the two siblings (1 for the root's children), as in the published
    code.  Pairs with a pruned child are left out.

    Parameters
    ----------
    stats : TreeBatchStatistics
        From :func:`tree_batch_statistics`.
    depth : int
        Depth of the tree.
    node_mask : torch.Tensor, optional
        Boolean per column of the level-major layout.

    Returns
    -------
    torch.Tensor
        Scalar, not yet multiplied by the objective's weight ``2**(-depth)``.
    """
    mean_mass = stats.sum_mass / (2 * stats.n_pairs)
    pairs = torch.log(mean_mass.clamp_min(LOG_EPS)).reshape(-1, 2)
    child_level = _column_levels(depth, pairs.device)[0::2]
    weight = torch.pow(2.0, -child_level.to(pairs.dtype))
    if node_mask is not None:
        weight = weight * node_mask.reshape(-1, 2).all(dim=1)
    return -(weight * pairs.mean(dim=1)).sum()


def leaf_balance(stats: TreeBatchStatistics, depth: int, node_mask: torch.Tensor | None = None) -> torch.Tensor:
    """How far the batch's leaf mass is from uniform over the active leaves.

    ``KL(m || u) = sum over active leaves of m_k * log(K * m_k)``, where ``m``
    is the batch-mean leaf probability and ``u`` the uniform distribution
    over the ``K`` active leaves: zero when every leaf takes an equal share,
    as SCAN's entropy term asks of flat clusters.  The paper's
    :func:`balance_regularizer` balances the two children of every node:
    in a full tree its optimum is equal leaves too, but in a tree with
    pruned or collapsed subtrees its optimum depends on the tree's shape
    (for the 10 leaves a k-means start arranged on Fashion-MNIST, shares
    from 0.084 to 0.126), and its weight ``2**-depth`` is small.

    Parameters
    ----------
    stats : TreeBatchStatistics
        From :func:`tree_batch_statistics`, given the same ``node_mask``.
    depth : int
        Depth of the tree.
    node_mask : torch.Tensor, optional
        Boolean per column of the level-major layout; its last level is the
        leaf mask.

    Returns
    -------
    torch.Tensor
        Scalar, ``>= 0`` up to rounding.
    """
    mass = stats.sum_mass[level_slice(depth)]  # masked leaves hold 0 (tree_batch_statistics zeroes them)
    active = torch.ones_like(mass, dtype=torch.bool) if node_mask is None else node_mask[level_slice(depth)].bool()
    share = mass / mass.sum().clamp_min(LOG_EPS)
    n_active = active.sum().to(share.dtype)
    return torch.where(active, share * torch.log((share * n_active).clamp_min(LOG_EPS)), torch.zeros_like(share)).sum()
