"""Soft binary tree math: node probabilities, leaf masks, pruning and export.

Nodes are numbered in heap order: node 0 is the root and node ``n`` has the
children ``2n + 1`` (left) and ``2n + 2`` (right).  A tree of depth ``D`` has
``2**D - 1`` internal nodes, each holding the probability ``sigma_n`` of going
left, and ``2**D`` leaves.

Node probabilities of levels ``1..D`` are kept side by side in one tensor of
``2**(D + 1) - 2`` columns ("level-major" order): level ``l`` occupies the
columns ``2**l - 2 .. 2**(l + 1) - 3``, its nodes from left to right.  Siblings
are therefore always the adjacent columns ``(2c, 2c + 1)``.

This module knows nothing about scikit-learn.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "n_internal_nodes",
    "n_node_columns",
    "level_slice",
    "column_levels",
    "node_probabilities",
    "leaf_probabilities",
    "node_active_mask",
    "masked_leaf_probabilities",
    "leaf_ancestors",
    "prune_least_used",
    "drop_empty_leaves",
    "level_cut_height",
    "linkage_from_leaf_mask",
    "tree_of_active_leaves",
]


def n_internal_nodes(depth: int) -> int:
    """Number of internal (routing) nodes of a complete binary tree.

    Parameters
    ----------
    depth : int
        Depth of the tree (the root is at level 0, the leaves at ``depth``).

    Returns
    -------
    int
        ``2**depth - 1``.
    """
    return 2**depth - 1


def n_node_columns(depth: int) -> int:
    """Number of node-probability columns of levels ``1..depth`` together.

    Parameters
    ----------
    depth : int
        Depth of the tree.

    Returns
    -------
    int
        ``2**(depth + 1) - 2``.
    """
    return 2 ** (depth + 1) - 2


def level_slice(level: int) -> slice:
    """Columns of level ``level`` (1-based) in the level-major node layout.

    Parameters
    ----------
    level : int
        A level in ``1..depth``.

    Returns
    -------
    slice
        The columns holding the ``2**level`` nodes of that level.
    """
    return slice(2**level - 2, 2 ** (level + 1) - 2)


def column_levels(depth: int, device=None) -> torch.Tensor:
    """Level (1-based) of every column of the level-major node layout.

    Parameters
    ----------
    depth : int
        Depth of the tree.
    device : torch.device, optional
        Device of the returned tensor.

    Returns
    -------
    torch.Tensor
        Long tensor of shape ``(2**(depth + 1) - 2,)``.
    """
    levels = torch.arange(1, depth + 1, device=device)
    return torch.repeat_interleave(levels, 2**levels)


def node_probabilities(left_prob: torch.Tensor, depth: int) -> torch.Tensor:
    """Probabilities of reaching every node of levels ``1..depth``.

    ``P(root) = 1``, ``P(left child) = P(n) * sigma_n`` and
    ``P(right child) = P(n) * (1 - sigma_n)``, computed one level at a time
    (a loop over ``depth`` levels, never over nodes).

    Parameters
    ----------
    left_prob : torch.Tensor
        Shape ``(n, 2**depth - 1)``: probability of going left at each
        internal node, in heap order.
    depth : int
        Depth of the tree.

    Returns
    -------
    torch.Tensor
        Shape ``(n, 2**(depth + 1) - 2)``, level-major; the columns of each
        level sum to 1 for every sample.
    """
    if left_prob.shape[-1] != n_internal_nodes(depth):
        raise ValueError(
            f"left_prob has {left_prob.shape[-1]} columns; a tree of depth "
            f"{depth} has {n_internal_nodes(depth)} internal nodes."
        )
    n = left_prob.shape[0]
    parent = left_prob.new_ones(n, 1)
    levels = []
    for level in range(depth):
        sigma = left_prob[:, 2**level - 1 : 2 ** (level + 1) - 1]
        parent = torch.stack((parent * sigma, parent * (1.0 - sigma)), dim=-1)
        parent = parent.reshape(n, 2 ** (level + 1))
        levels.append(parent)
    return torch.cat(levels, dim=1)


def leaf_probabilities(left_prob: torch.Tensor, depth: int) -> torch.Tensor:
    """Probabilities of the ``2**depth`` leaves, left to right.

    Parameters
    ----------
    left_prob : torch.Tensor
        Shape ``(n, 2**depth - 1)``, see :func:`node_probabilities`.
    depth : int
        Depth of the tree.

    Returns
    -------
    torch.Tensor
        Shape ``(n, 2**depth)``; rows sum to 1.
    """
    return node_probabilities(left_prob, depth)[:, level_slice(depth)]


def node_active_mask(leaf_mask: torch.Tensor, depth: int) -> torch.Tensor:
    """Which nodes of levels ``1..depth`` still have an active leaf below.

    Parameters
    ----------
    leaf_mask : torch.Tensor
        Boolean tensor of shape ``(2**depth,)``; ``True`` for active leaves.
    depth : int
        Depth of the tree.

    Returns
    -------
    torch.Tensor
        Boolean tensor in the level-major node layout.
    """
    masks = []
    for level in range(1, depth + 1):
        masks.append(leaf_mask.reshape(2**level, -1).any(dim=1))
    return torch.cat(masks)


def masked_leaf_probabilities(leaf_prob: torch.Tensor, leaf_mask: torch.Tensor) -> torch.Tensor:
    """Leaf probabilities restricted to the active leaves, renormalised.

    Parameters
    ----------
    leaf_prob : torch.Tensor
        Shape ``(n, 2**depth)``.
    leaf_mask : torch.Tensor
        Boolean, shape ``(2**depth,)``.

    Returns
    -------
    torch.Tensor
        Shape ``(n, n_active)``: rows sum to 1.  Should every active leaf
        underflow to zero for a sample, that row is uniform.
    """
    active = leaf_prob[:, leaf_mask]
    total = active.sum(dim=1, keepdim=True)
    uniform = torch.full_like(active, 1.0 / max(active.shape[1], 1))
    return torch.where(total > 0, active / total.clamp_min(torch.finfo(active.dtype).tiny), uniform)


def leaf_ancestors(depth: int, level: int) -> np.ndarray:
    """Index, within its level, of the ancestor at ``level`` of every leaf.

    Parameters
    ----------
    depth : int
        Depth of the tree.
    level : int
        A level in ``0..depth``.

    Returns
    -------
    numpy.ndarray
        Shape ``(2**depth,)``: leaf ``j`` lies below node ``j >> (depth - level)``
        of that level.
    """
    if not 0 <= level <= depth:
        raise ValueError(f"level must be in [0, {depth}], got {level}.")
    return np.arange(2**depth) >> (depth - level)


def prune_least_used(leaf_prob: torch.Tensor, leaf_mask: torch.Tensor, n_leaves: int) -> torch.Tensor:
    """Mask leaves one at a time, the least used first, until ``n_leaves`` remain.

    This is the paper's pruning criterion applied without retraining: the
    usage of a leaf is its mean probability over the samples once masked
    leaves are removed and the rest renormalised; after each removal the
    usage is measured again.

    Parameters
    ----------
    leaf_prob : torch.Tensor
        Shape ``(n, 2**depth)``: raw leaf probabilities of the samples.
    leaf_mask : torch.Tensor
        Boolean, shape ``(2**depth,)``: the leaves active now.
    n_leaves : int
        Number of leaves to keep; at least 1 and at most the active count.

    Returns
    -------
    torch.Tensor
        The new boolean leaf mask.
    """
    mask = leaf_mask.clone()
    n_active = int(mask.sum())
    if not 1 <= n_leaves <= n_active:
        raise ValueError(f"n_leaves must be in [1, {n_active}], got {n_leaves}.")
    tiny = torch.finfo(leaf_prob.dtype).tiny
    for _ in range(n_active - n_leaves):
        kept = leaf_prob * mask
        kept = kept / kept.sum(dim=1, keepdim=True).clamp_min(tiny)
        usage = kept.mean(dim=0).masked_fill(~mask, float("inf"))
        mask[int(torch.argmin(usage))] = False
    return mask


def drop_empty_leaves(leaf_prob: torch.Tensor, leaf_mask: torch.Tensor) -> torch.Tensor:
    """Mask the active leaves that no sample is assigned to.

    Masking a leaf that wins no argmax does not change any assignment, so the
    partition stays as it is while its labels become contiguous.

    Parameters
    ----------
    leaf_prob : torch.Tensor
        Shape ``(n, 2**depth)``.
    leaf_mask : torch.Tensor
        Boolean, shape ``(2**depth,)``.

    Returns
    -------
    torch.Tensor
        The new boolean leaf mask; never empty.
    """
    assigned = torch.argmax(leaf_prob.masked_fill(~leaf_mask, -1.0), dim=1)
    used = torch.zeros_like(leaf_mask)
    used[assigned] = True
    return used & leaf_mask


def level_cut_height(depth: int, level: int) -> float:
    """Height at which to cut :func:`linkage_from_leaf_mask`'s tree for ``level``.

    ``scipy.cluster.hierarchy.fcluster(Z, t, criterion="distance")`` with this
    ``t`` returns the partition into the nodes of ``level``.

    Parameters
    ----------
    depth : int
        Depth of the tree.
    level : int
        A level in ``0..depth``.

    Returns
    -------
    float
        ``depth - level + 0.75``.
    """
    if not 0 <= level <= depth:
        raise ValueError(f"level must be in [0, {depth}], got {level}.")
    return depth - level + 0.75


def linkage_from_leaf_mask(leaf_mask, depth: int, node_mass=None) -> np.ndarray:
    """Scipy linkage matrix of the active part of the tree.

    The observations of the linkage are the active leaves, numbered
    ``0..k-1`` from left to right.  A node whose two subtrees both hold an
    active leaf becomes one merge; a node with one active subtree is
    collapsed into it.  A merge at level ``l`` gets a height in
    ``[depth - l, depth - l + 0.5)``: heights grow towards the root, are
    distinct (so ``fcluster(..., "maxclust")`` can cut at any ``k``), and
    within a level the node of smaller mass merges lower.

    Parameters
    ----------
    leaf_mask : array-like of bool, shape (2**depth,)
        Active leaves.
    depth : int
        Depth of the tree.
    node_mass : array-like, shape (2**(depth + 1) - 2,), optional
        Mean probability of each node (level-major); orders the heights
        within a level.  Without it, nodes further left merge lower.

    Returns
    -------
    numpy.ndarray
        float64 array of shape ``(k - 1, 4)``: left and right child ids,
        height, number of leaf clusters below.  Empty for ``k == 1``.
    """
    leaf_mask = np.asarray(leaf_mask, dtype=bool)
    n_active = int(leaf_mask.sum())
    # current[j]: the cluster standing for the subtree of node j of the level being built
    # (a leaf id, or -(key + 2) for a merge not yet numbered); counts[j] = 0 means no active leaf
    current = np.full(leaf_mask.shape[0], -1, dtype=np.int64)
    current[leaf_mask] = np.arange(n_active)
    counts = leaf_mask.astype(np.int64)
    merges = []  # (height, left_id, right_id, count, merge_key)
    for level in range(depth - 1, -1, -1):
        left, right = current[0::2], current[1::2]
        left_n, right_n = counts[0::2], counts[1::2]
        width = 2**level
        if node_mass is not None:
            mass = np.asarray(node_mass, dtype=np.float64)[level_slice(level + 1)]
            parent_mass = mass[0::2] + mass[1::2]
            rank = np.argsort(np.argsort(parent_mass, kind="stable"), kind="stable")
        else:
            rank = np.arange(width)
        both = (left_n > 0) & (right_n > 0)
        nxt = np.where(left_n > 0, left, right)
        for j in np.flatnonzero(both):
            height = (depth - level) + 0.5 * rank[j] / width
            key = len(merges)
            merges.append((height, left[j], right[j], left_n[j] + right_n[j], key))
            nxt[j] = -(key + 2)  # placeholder resolved once merges are ordered
        current, counts = nxt, left_n + right_n
    merges.sort(key=lambda m: m[0])
    cluster_of_key = {m[4]: n_active + i for i, m in enumerate(merges)}

    def resolve(cluster):
        return cluster_of_key[-cluster - 2] if cluster < 0 else cluster

    linkage = np.empty((len(merges), 4), dtype=np.float64)
    for i, (height, a, b, count, _) in enumerate(merges):
        a, b = resolve(a), resolve(b)
        linkage[i] = (a, b, height, count)  # left subtree first: dendrogram draws the tree's own order
    return linkage


def tree_of_active_leaves(active_prob: torch.Tensor, leaf_mask, depth: int):
    """The hard clusters, node masses and linkage of a tree from its active leaves' probabilities.

    Parameters
    ----------
    active_prob : torch.Tensor
        Shape ``(n, k)``: raw probabilities of the ``k`` active leaves (the
        columns of ``leaf_mask``, left to right); renormalised here.
    leaf_mask : array-like of bool, shape (2**depth,)
        Active leaves, ``k`` of them.
    depth : int
        Depth of the tree.

    Returns
    -------
    labels : numpy.ndarray
        Most probable active leaf of every sample, ``0..k-1``.
    node_mass : numpy.ndarray
        Mean renormalised probability of every node of levels ``1..depth``
        (level-major).
    linkage : numpy.ndarray
        :func:`linkage_from_leaf_mask` of the tree, ordered by ``node_mass``.
    """
    leaf_mask = np.asarray(leaf_mask, dtype=bool)
    proba = masked_leaf_probabilities(active_prob, torch.ones(active_prob.shape[1], dtype=torch.bool))
    leaf_mass = np.zeros(2**depth)
    leaf_mass[leaf_mask] = proba.double().mean(dim=0).numpy()
    node_mass = np.concatenate([leaf_mass.reshape(2**level, -1).sum(axis=1) for level in range(1, depth + 1)])
    return proba.argmax(dim=1).numpy(), node_mass, linkage_from_leaf_mask(leaf_mask, depth, node_mass)
