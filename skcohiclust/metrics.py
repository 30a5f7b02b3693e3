"""External scores for flat and hierarchical clusterings.

* :func:`cluster_accuracy`: accuracy under the best one-to-one matching of
  clusters to classes (Hungarian algorithm).
* :func:`dendrogram_purity`: the mean purity of the lowest common ancestor of
  every pair of samples of one class (Heller & Ghahramani, 2005), exact and
  computed from per-node class counts.
* :func:`leaf_purity`: the size-weighted majority-class fraction of the leaves.

The hierarchical scores take the tree as a scipy linkage matrix whose
observations are the *leaves* (clusters), and the leaf of every sample, so
they apply to any hierarchical clusterer: ``CoHiClust.tree_`` with
``CoHiClust.labels_``; a full agglomerative tree with ``np.arange(n)``; a tree
over k-means centroids with the k-means labels.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.cluster.hierarchy import is_valid_linkage, leaves_list
from scipy.optimize import linear_sum_assignment

__all__ = ["cluster_accuracy", "dendrogram_purity", "leaf_purity"]


def cluster_accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    """Clustering accuracy: the fraction of samples right under the best cluster-to-class matching.

    Each cluster is matched to at most one class and each class to at most
    one cluster so that the number of matched samples is largest (Hungarian
    algorithm, :func:`scipy.optimize.linear_sum_assignment`).  The numbers of
    clusters and classes may differ: samples of an unmatched cluster count as
    errors, so more clusters than classes are penalised.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True classes (any hashable labels).
    y_pred : array-like of shape (n_samples,)
        Cluster labels (any hashable labels).

    Returns
    -------
    float
        Accuracy in ``[0, 1]``.

    Examples
    --------
    >>> from skcohiclust.metrics import cluster_accuracy
    >>> cluster_accuracy([0, 0, 1, 1], [5, 5, 3, 3])
    1.0
    >>> cluster_accuracy([0, 0, 0, 0], [0, 0, 1, 1])
    0.5
    """
    true_codes, pred_codes = _check_label_pair(y_true, y_pred, "y_pred")
    table = _contingency(true_codes, pred_codes)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / true_codes.shape[0])


def leaf_purity(y_true: ArrayLike, leaf_labels: ArrayLike) -> float:
    """Leaf purity: the size-weighted fraction of each leaf's majority class.

    Equal to ``sum over leaves of (count of the leaf's most frequent class) /
    n_samples``, the usual purity of the partition into leaves.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True classes (any hashable labels).
    leaf_labels : array-like of shape (n_samples,)
        Leaf (cluster) of every sample (any hashable labels).

    Returns
    -------
    float
        Leaf purity in ``(0, 1]``.

    Examples
    --------
    >>> from skcohiclust.metrics import leaf_purity
    >>> leaf_purity([0, 0, 1, 1, 1], [0, 0, 0, 1, 1])
    0.8
    """
    true_codes, leaf_codes = _check_label_pair(y_true, leaf_labels, "leaf_labels")
    table = _contingency(true_codes, leaf_codes)
    return float(table.max(axis=0).sum() / true_codes.shape[0])


def dendrogram_purity(y_true: ArrayLike, leaf_labels: ArrayLike, linkage: ArrayLike) -> float:
    """Dendrogram purity of a tree over leaf clusters (Heller & Ghahramani, 2005).

    For every pair of samples ``i < j`` of one true class ``c``, take the
    lowest common ancestor ``v`` of their leaves in the tree and its purity
    for ``c``: the fraction of the samples below ``v`` that belong to ``c``.
    Dendrogram purity is the mean of these purities over all such pairs, the
    definition used by DeepECT and TreeVAE.  Two samples in the same leaf
    have that leaf as their lowest common ancestor.

    The score is exact and computed per node from class counts: the pairs of
    class ``c`` whose lowest common ancestor is an internal node ``v`` with
    children ``a`` and ``b`` number ``n_c(a) * n_c(b)`` (the pairs within
    ``v`` minus the pairs within each child), and those of a leaf
    ``n_c(v) * (n_c(v) - 1) / 2``.  The class counts of all nodes come from
    one pass of prefix sums over the leaves in dendrogram order, so the cost
    is ``O(n_samples + n_leaves * (n_classes + log n_leaves))``, with no
    enumeration of pairs.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True classes (any hashable labels).
    leaf_labels : array-like of int, shape (n_samples,)
        Leaf of every sample, ``0..k-1``: the observation index of the leaf in
        ``linkage``.  For a tree whose leaves are the samples themselves,
        pass ``np.arange(n_samples)``.
    linkage : array-like of shape (k - 1, 4)
        Scipy linkage matrix over the ``k`` leaves (as ``CoHiClust.tree_`` or
        :func:`scipy.cluster.hierarchy.linkage` give it).  Only the first two
        columns (the tree) matter; the heights are ignored.  An empty matrix of
        shape ``(0, 4)`` is a tree of one leaf.

    Returns
    -------
    float
        Dendrogram purity in ``(0, 1]``, or ``nan`` when no two samples share
        a class: the mean over an empty set of pairs is undefined (this is what
        the definition gives; the score is then uninformative, not perfect).

    Raises
    ------
    ValueError
        If the lengths of ``y_true`` and ``leaf_labels`` differ, ``linkage``
        is not a valid linkage matrix, or a leaf label is not an integer in
        ``0..k-1``.

    References
    ----------
    K. A. Heller and Z. Ghahramani, "Bayesian hierarchical clustering",
    ICML 2005.  D. Mautz, C. Plant and C. Böhm, "DeepECT: The deep embedded
    cluster tree", Data Science and Engineering 5, 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from skcohiclust.metrics import dendrogram_purity
    >>> linkage = np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 3]])  # ((leaf 0, leaf 1), leaf 2)
    >>> round(dendrogram_purity([0, 0, 0, 1], [0, 1, 2, 2], linkage), 4)  # pairs: 1, 3/4, 3/4
    0.8333
    """
    true_codes, leaf_codes = _check_label_pair(y_true, leaf_labels, "leaf_labels", codes_for_pred=False)
    linkage = _check_linkage(linkage)
    n_leaves = linkage.shape[0] + 1
    leaf_codes = _check_leaf_labels(leaf_codes, n_leaves)
    n_classes = int(true_codes.max()) + 1

    leaf_counts = np.bincount(leaf_codes * n_classes + true_codes, minlength=n_leaves * n_classes)
    leaf_counts = leaf_counts.reshape(n_leaves, n_classes).astype(np.int64)
    # pairs of one class whose lowest common ancestor is a leaf, and their purity
    leaf_sizes = leaf_counts.sum(axis=1, keepdims=True)
    pairs = leaf_counts * (leaf_counts - 1) // 2
    weighted = (pairs * (leaf_counts / np.maximum(leaf_sizes, 1))).sum()
    n_pairs = pairs.sum()
    if n_leaves > 1:
        node_counts = _internal_node_class_counts(linkage, leaf_counts)
        child_counts = np.concatenate([leaf_counts, node_counts])[linkage[:, :2].astype(np.int64)]
        pairs = child_counts[:, 0] * child_counts[:, 1]  # (k - 1, n_classes)
        node_sizes = node_counts.sum(axis=1, keepdims=True)
        weighted = weighted + (pairs * (node_counts / np.maximum(node_sizes, 1))).sum()
        n_pairs = n_pairs + pairs.sum()
    if n_pairs == 0:
        return float("nan")
    return float(weighted / n_pairs)


# ---------------------------------------------------------------------- helpers
def _internal_node_class_counts(linkage: np.ndarray, leaf_counts: np.ndarray) -> np.ndarray:
    """Class counts below every internal node, row ``i`` for the node ``k + i``.

    The leaves below a node are contiguous in dendrogram order (scipy's
    :func:`~scipy.cluster.hierarchy.leaves_list`), from the leftmost leaf
    (reached by following first children) to the rightmost (second
    children).  Both are found for all nodes at once by pointer doubling,
    and the counts are differences of prefix sums over the ordered leaves.
    """
    n_leaves = leaf_counts.shape[0]
    children = linkage[:, :2].astype(np.int64)
    position = np.empty(n_leaves, dtype=np.int64)
    position[leaves_list(linkage)] = np.arange(n_leaves)
    first = _descend(children[:, 0], n_leaves)
    last = _descend(children[:, 1], n_leaves)
    prefix = np.zeros((n_leaves + 1, leaf_counts.shape[1]), dtype=np.int64)
    np.cumsum(leaf_counts[leaves_list(linkage)], axis=0, out=prefix[1:])
    return prefix[position[last] + 1] - prefix[position[first]]


def _descend(child: np.ndarray, n_leaves: int) -> np.ndarray:
    """Leaf reached from every internal node by always taking ``child``, by pointer doubling."""
    pointer = np.concatenate([np.arange(n_leaves), child])  # leaves point to themselves
    while True:
        jumped = pointer[pointer]
        if np.array_equal(jumped, pointer):
            return pointer[n_leaves:]
        pointer = jumped


def _check_label_pair(y_true, y_other, other_name: str, codes_for_pred: bool = True):
    """Validate two label vectors; return them as codes ``0..m-1`` (the second one only if asked)."""
    y_true = _as_1d(y_true, "y_true")
    y_other = _as_1d(y_other, other_name)
    if y_true.shape[0] != y_other.shape[0]:
        raise ValueError(
            f"y_true and {other_name} must have the same length, got {y_true.shape[0]} and {y_other.shape[0]}."
        )
    if y_true.shape[0] == 0:
        raise ValueError(f"y_true and {other_name} must not be empty.")
    true_codes = np.unique(y_true, return_inverse=True)[1].ravel()
    if codes_for_pred:
        return true_codes, np.unique(y_other, return_inverse=True)[1].ravel()
    return true_codes, y_other


def _as_1d(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of labels, got an array of shape {array.shape}.")
    return array


def _contingency(true_codes: np.ndarray, pred_codes: np.ndarray) -> np.ndarray:
    """Counts of (class, cluster) pairs: shape (n_classes, n_clusters)."""
    n_true, n_pred = int(true_codes.max()) + 1, int(pred_codes.max()) + 1
    return np.bincount(true_codes * n_pred + pred_codes, minlength=n_true * n_pred).reshape(n_true, n_pred)


def _check_linkage(linkage) -> np.ndarray:
    try:
        linkage = np.asarray(linkage, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"linkage must be a numeric scipy linkage matrix of shape (k - 1, 4): {exc}") from exc
    if linkage.ndim != 2 or linkage.shape[1] != 4:
        raise ValueError(f"linkage must be a scipy linkage matrix of shape (k - 1, 4), got shape {linkage.shape}.")
    if linkage.shape[0] == 0:
        return linkage
    if not np.all(np.isfinite(linkage)):
        raise ValueError("linkage must contain only finite values.")
    children = linkage[:, :2]
    formed = np.arange(linkage.shape[0]) + linkage.shape[0] + 1  # id of the node row i creates
    if np.any(children != np.floor(children)) or np.any(children < 0) or np.any(children >= formed[:, None]):
        raise ValueError(
            "linkage is not a valid linkage matrix: row i must join two integer cluster ids below k + i "
            "(leaves 0..k-1, then the nodes of earlier rows)."
        )
    try:
        is_valid_linkage(linkage, throw=True, name="linkage")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"linkage is not a valid scipy linkage matrix over k leaf clusters: {exc}") from exc
    return linkage


def _check_leaf_labels(leaf_labels: np.ndarray, n_leaves: int) -> np.ndarray:
    if leaf_labels.dtype.kind == "f" and np.all(leaf_labels == np.floor(leaf_labels)):
        leaf_labels = leaf_labels.astype(np.int64)
    if leaf_labels.dtype.kind not in "iu":
        raise ValueError(
            f"leaf_labels must be integers 0..{n_leaves - 1} (the leaves of the linkage), "
            f"got dtype {leaf_labels.dtype}."
        )
    if leaf_labels.min() < 0 or leaf_labels.max() >= n_leaves:
        raise ValueError(
            f"leaf_labels must lie in 0..{n_leaves - 1} (the linkage has {n_leaves} leaves), "
            f"got values from {leaf_labels.min()} to {leaf_labels.max()}."
        )
    return leaf_labels.astype(np.int64)
