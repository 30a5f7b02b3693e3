"""Reading the fitted tree: level partitions, tree similarity and export.

Pure numpy functions over the state a fitted :class:`~skcohiclust.CoHiClust`
keeps: ``leaves`` (the heap position ``0..2**depth-1`` of every active leaf,
in cluster-label order, i.e. left to right), ``depth``, the leaf
probabilities of samples, ``node_mass_`` and the linkage matrix ``tree_``.
The estimator's methods are thin wrappers over them.

Levels
------
Level 0 is the root, level ``depth`` holds the leaves.  The clusters of level
``l`` are the nodes of that level with at least one active leaf below,
numbered ``0..m-1`` from left to right.  A sample's level-``l`` label is the
ancestor of its leaf (the most probable active leaf), so the partitions
nest: every level-``l`` cluster is a union of level-``l + 1`` clusters.  The
level-``l`` partition of the leaf clusters is exactly what
``scipy.cluster.hierarchy.fcluster(tree_, level_cut_height(depth, l),
criterion="distance")`` returns.

This module knows nothing about scikit-learn or torch.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from .tree import level_slice

__all__ = [
    "check_level",
    "level_nodes",
    "leaf_to_level",
    "level_probabilities",
    "level_sizes",
    "bhattacharyya_similarity",
    "lca_similarity",
    "ordered_linkage",
    "linkage_to_newick",
    "tree_to_dict",
]

#: The kinds of similarity :func:`skcohiclust.CoHiClust.similarity` offers.
SIMILARITY_KINDS = ("bhattacharyya", "lca")


def check_level(level: int, depth: int) -> int:
    """Validate a tree level.

    Parameters
    ----------
    level : int
        The level asked for.
    depth : int
        Depth of the tree.

    Returns
    -------
    int
        ``level`` as a Python int.

    Raises
    ------
    ValueError
        If ``level`` is not an int in ``[0, depth]``.
    """
    ok = isinstance(level, numbers.Integral) and not isinstance(level, bool) and 0 <= level <= depth
    if not ok:
        raise ValueError(
            f"level must be an int in [0, {depth}] (0 is the root, {depth} = depth are the leaves); got {level!r}."
        )
    return int(level)


def level_nodes(leaves: ArrayLike, depth: int, level: int) -> np.ndarray:
    """Positions, within their level, of the active nodes of ``level``.

    Parameters
    ----------
    leaves : array-like of int, shape (n_clusters,)
        Heap position (``0..2**depth-1``) of every active leaf, ascending.
    depth : int
        Depth of the tree.
    level : int
        A level in ``0..depth``.

    Returns
    -------
    numpy.ndarray
        Sorted positions ``0..2**level-1`` of the nodes with an active leaf
        below; entry ``c`` is the node of level label ``c``.
    """
    return _level_partition(leaves, depth, level)[0]


def leaf_to_level(leaves: ArrayLike, depth: int, level: int) -> np.ndarray:
    """Level-``level`` label of every leaf cluster.

    Parameters
    ----------
    leaves : array-like of int, shape (n_clusters,)
        Heap position of every active leaf, ascending.
    depth : int
        Depth of the tree.
    level : int
        A level in ``0..depth``.

    Returns
    -------
    numpy.ndarray of int, shape (n_clusters,)
        Entry ``k`` is the label, at ``level``, of the ancestor of cluster
        ``k``: contiguous ``0..m-1``, non-decreasing in ``k``.
    """
    return _level_partition(leaves, depth, level)[1]


def _level_partition(leaves, depth: int, level: int):
    """:func:`level_nodes` and :func:`leaf_to_level` of ``level``, from one pass over the leaves."""
    level = check_level(level, depth)
    ancestors = np.asarray(leaves, dtype=np.int64) >> (depth - level)
    positions, mapping = np.unique(ancestors, return_inverse=True)
    return positions, mapping.reshape(-1).astype(np.intp)


def level_probabilities(proba: ArrayLike, leaves: ArrayLike, depth: int, level: int) -> np.ndarray:
    """Probability of every active node of ``level``: the sum over its leaves.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_clusters)
        Leaf-cluster probabilities (rows sum to 1).
    leaves : array-like of int, shape (n_clusters,)
        Heap position of every active leaf, ascending.
    depth : int
        Depth of the tree.
    level : int
        A level in ``0..depth``.

    Returns
    -------
    numpy.ndarray of shape (n_samples, m)
        Column ``c`` is the level-``level`` cluster ``c``; rows sum to 1.
    """
    proba = np.asarray(proba)
    mapping = leaf_to_level(leaves, depth, level)
    # the clusters of one node are contiguous, since the leaves are in order
    starts = np.flatnonzero(np.r_[True, mapping[1:] != mapping[:-1]])
    return np.add.reduceat(proba, starts, axis=1)


def level_sizes(labels: ArrayLike, leaves: ArrayLike, depth: int, level: int) -> np.ndarray:
    """Number of samples in every cluster of ``level``.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        Leaf-cluster labels.
    leaves : array-like of int, shape (n_clusters,)
        Heap position of every active leaf, ascending.
    depth : int
        Depth of the tree.
    level : int
        A level in ``0..depth``.

    Returns
    -------
    numpy.ndarray of int, shape (m,)
    """
    mapping = leaf_to_level(leaves, depth, level)
    return np.bincount(mapping[np.asarray(labels, dtype=np.intp)], minlength=mapping.max() + 1)


def _sqrt_levels(proba, leaves, depth: int) -> np.ndarray:
    """``sqrt(P_l)`` of levels ``1..depth`` side by side, scaled by ``1/sqrt(depth)``."""
    proba = np.asarray(proba, dtype=np.float64)
    total = proba.sum(axis=1, keepdims=True)
    proba = proba / np.where(total > 0, total, 1.0)
    parts = [np.sqrt(level_probabilities(proba, leaves, depth, level)) for level in range(1, depth + 1)]
    return np.concatenate(parts, axis=1) / np.sqrt(depth)


def bhattacharyya_similarity(
    proba_x: ArrayLike, proba_y: ArrayLike | None, leaves: ArrayLike, depth: int
) -> np.ndarray:
    """Tree similarity of CoHiClust: the Bhattacharyya coefficient averaged over levels.

    ``s(x, y) = 1/depth * sum_{l=1..depth} sum_i sqrt(P_l^i(x) * P_l^i(y))``,
    where ``P_l^i`` is the probability of node ``i`` of level ``l`` computed
    from the (masked, renormalised) leaf probabilities.  Each level's term is
    in ``[0, 1]`` and is 1 when ``x`` and ``y`` have the same distribution
    over that level, so ``s(x, x) = 1``.  One matrix product, no loop over
    pairs.

    Parameters
    ----------
    proba_x : array-like of shape (n_x, n_clusters)
        Leaf-cluster probabilities of the first samples.
    proba_y : array-like of shape (n_y, n_clusters) or None
        Of the second samples; ``None`` uses ``proba_x`` (and returns an
        exactly symmetric matrix).
    leaves : array-like of int, shape (n_clusters,)
        Heap position of every active leaf, ascending.
    depth : int
        Depth of the tree.

    Returns
    -------
    numpy.ndarray of float64, shape (n_x, n_y)
        Values in ``[0, 1]``.
    """
    qx = _sqrt_levels(proba_x, leaves, depth)
    if proba_y is None:
        similarity = qx @ qx.T
        similarity += similarity.T
        similarity *= 0.5
    else:
        similarity = qx @ _sqrt_levels(proba_y, leaves, depth).T
    return np.clip(similarity, 0.0, 1.0, out=similarity)


def lca_similarity(labels_x: ArrayLike, labels_y: ArrayLike, leaves: ArrayLike, depth: int) -> np.ndarray:
    """Level of the lowest common ancestor of two samples' leaves, over ``depth``.

    1 for two samples in the same leaf, 0 when their paths part at the
    root.  Levels are those of the full binary tree (a node left with one
    active subtree by pruning still counts as a level).

    Parameters
    ----------
    labels_x : array-like of int, shape (n_x,)
        Leaf-cluster labels of the first samples.
    labels_y : array-like of int, shape (n_y,)
        Of the second samples.
    leaves : array-like of int, shape (n_clusters,)
        Heap position of every active leaf, ascending.
    depth : int
        Depth of the tree.

    Returns
    -------
    numpy.ndarray of float64, shape (n_x, n_y)
        Values in ``{0, 1/depth, ..., 1}``.
    """
    leaves = np.asarray(leaves, dtype=np.int64)
    px = leaves[np.asarray(labels_x, dtype=np.intp)]
    py = leaves[np.asarray(labels_y, dtype=np.intp)]
    # the paths agree on the leading bits of the positions: LCA level = depth - bit_length(px ^ py)
    differing_bits = np.frexp((px[:, None] ^ py[None, :]).astype(np.float64))[1]
    return (depth - differing_bits) / depth


def _format_length(value: float) -> str:
    return f"{value:.6g}"


def _newick_name(name: str) -> str:
    name = str(name)
    if not name or any(c in name for c in " \t\n()[]':;,"):
        # quoted label, with embedded quotes doubled, as the Newick standard has it
        return "'" + name.replace("'", "''") + "'"
    return name


def ordered_linkage(linkage: ArrayLike) -> np.ndarray:
    """The linkage matrix with each merge's children in left-to-right order.

    Linkages from other tools often store the smaller node id first; here the
    child holding the smaller leaf cluster comes first (``CoHiClust.tree_`` is
    already in this order), so that ``scipy.cluster.hierarchy.dendrogram``
    draws the leaf clusters ``0, 1, ..., k-1`` from left to right, as they
    sit in the tree.  The tree itself (merges, heights, counts) is unchanged.

    Parameters
    ----------
    linkage : array-like of shape (k - 1, 4)
        Scipy linkage matrix.

    Returns
    -------
    numpy.ndarray of float64, shape (k - 1, 4)
    """
    linkage = np.array(linkage, dtype=np.float64).reshape(-1, 4)
    k = linkage.shape[0] + 1
    first = np.empty(2 * k - 1, dtype=np.int64)
    first[:k] = np.arange(k)
    for i, (a, b) in enumerate(linkage[:, :2].astype(np.int64)):
        if first[b] < first[a]:
            linkage[i, :2] = (b, a)
        first[k + i] = min(first[a], first[b])
    return linkage


def linkage_to_newick(linkage: ArrayLike, leaf_names: Sequence[str]) -> str:
    """Newick string of a scipy linkage matrix, branch lengths from the heights.

    Leaves stand at height 0; the branch above a node is its parent's height
    minus its own.  Children are written left to right (by the smallest leaf
    below them); internal nodes are unnamed.

    Parameters
    ----------
    linkage : array-like of shape (k - 1, 4)
        Scipy linkage matrix over ``k`` observations.
    leaf_names : sequence of str, length k
        Name of each observation; names with Newick's special characters
        are quoted.

    Returns
    -------
    str
        E.g. ``"((c0:1,c1:1):1.25,c2:2.25);"``; ``"c0;"`` for one leaf.
    """
    linkage = ordered_linkage(linkage)
    k = linkage.shape[0] + 1
    if len(leaf_names) != k:
        raise ValueError(f"leaf_names must hold {k} names (one per cluster), got {len(leaf_names)}.")
    text = [_newick_name(name) for name in leaf_names]
    height = [0.0] * k
    for a, b, h, _ in linkage:
        a, b = int(a), int(b)
        text.append(f"({text[a]}:{_format_length(h - height[a])},{text[b]}:{_format_length(h - height[b])})")
        height.append(float(h))
    return text[-1] + ";"


def tree_to_dict(leaves: ArrayLike, depth: int, node_mass: ArrayLike, leaf_sizes: ArrayLike) -> dict:
    """The active part of the tree as a nested, JSON-serialisable dict.

    Every node with an active leaf below is kept, including nodes that
    pruning left with a single child (so each node keeps its level; the
    linkage matrix collapses such nodes instead).

    Parameters
    ----------
    leaves : array-like of int, shape (n_clusters,)
        Heap position of every active leaf, ascending.
    depth : int
        Depth of the tree.
    node_mass : array-like of shape (2**(depth + 1) - 2,)
        Mean probability of every node of levels ``1..depth``, level-major.
    leaf_sizes : array-like of int, shape (n_clusters,)
        Training samples per leaf cluster.

    Returns
    -------
    dict
        The root.  Every node has ``"id"`` (heap index: node ``j`` of level
        ``l`` is ``2**l - 1 + j``), ``"level"``, ``"position"`` (``j``),
        ``"label"`` (its cluster label at its level, as
        ``labels_at_level(level)`` numbers them; for a leaf, its cluster),
        ``"size"`` (training samples below), ``"mass"`` (mean probability),
        ``"leaf"`` (bool) and ``"children"`` (list of nodes, left to right).
    """
    leaves = np.asarray(leaves, dtype=np.int64)
    node_mass = np.asarray(node_mass, dtype=np.float64)
    leaf_sizes = np.asarray(leaf_sizes, dtype=np.int64)
    previous = None
    for level in range(depth, -1, -1):
        positions, mapping = _level_partition(leaves, depth, level)
        sizes = np.bincount(mapping, weights=leaf_sizes, minlength=len(positions)).astype(np.int64)
        mass = node_mass[level_slice(level)][positions] if level > 0 else np.ones(1)
        nodes = [
            {
                "id": int(2**level - 1 + p),
                "level": level,
                "position": int(p),
                "label": c,
                "size": int(sizes[c]),
                "mass": float(mass[c]),
                "leaf": level == depth,
                "children": [],
            }
            for c, p in enumerate(positions)
        ]
        if previous is not None:
            parent_label = np.searchsorted(positions, previous[1] >> 1)
            for child, parent in zip(previous[0], parent_label, strict=True):
                nodes[parent]["children"].append(child)
        previous = (nodes, positions)
    return previous[0][0]
