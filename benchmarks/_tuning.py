"""Scoring and command-line helpers shared by the tuning scripts (``tune_views.py``, ``tune_tree.py``)."""

from __future__ import annotations

import ast

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import normalized_mutual_info_score

from skcohiclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity
from skcohiclust.neighbors import nearest_neighbors


def parse_settings(items) -> dict:
    """Estimator parameters from ``name=value`` strings, the values read as Python literals."""
    return {key: ast.literal_eval(value) for key, value in (item.split("=", 1) for item in items)}


def tree_scores(y, labels, linkage) -> dict:
    """ACC, NMI, DP and LP of a tree's leaves, rounded to 4 decimals."""
    return {
        "acc": round(cluster_accuracy(y, labels), 4),
        "nmi": round(normalized_mutual_info_score(y, labels), 4),
        "dp": round(dendrogram_purity(y, labels, linkage), 4),
        "lp": round(leaf_purity(y, labels), 4),
    }


def representation_scores(y, Z, n_init: int, n_neighbors: int = 20) -> dict:
    """How well the representation ``Z`` separates the classes.

    ACC and NMI of k-means (10 clusters, ``n_init`` starts) on the
    L2-normalised representation, and ``rep_knn``: the fraction of every
    sample's ``n_neighbors`` nearest neighbours (cosine) that share its
    class, a measure free of k-means' own variance.
    """
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    labels = KMeans(n_clusters=10, n_init=n_init, random_state=0).fit_predict(Z)
    table = nearest_neighbors(torch.from_numpy(np.ascontiguousarray(Z, dtype=np.float32)), n_neighbors).numpy()
    return {
        "rep_acc": round(cluster_accuracy(y, labels), 4),
        "rep_nmi": round(normalized_mutual_info_score(y, labels), 4),
        "rep_knn": round(float((y[table] == y[:, None]).mean()), 4),
    }
