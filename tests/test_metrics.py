"""Tests for skcohiclust.metrics: agreement with brute force, edge cases, validation."""

import itertools
import time

import numpy as np
import pytest
from scipy.cluster.hierarchy import linkage as scipy_linkage

from skcohiclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity


# ---------------------------------------------------------------------- brute force references
def _leaves_below(linkage, n_leaves):
    """Set of leaves below every node id (leaves first, then one per linkage row)."""
    below = [{leaf} for leaf in range(n_leaves)]
    for a, b in linkage[:, :2].astype(int):
        below.append(below[a] | below[b])
    return below


def brute_dendrogram_purity(y_true, leaf_labels, linkage):
    """Heller & Ghahramani's definition, pair by pair: mean purity of the lowest common ancestor."""
    y_true, leaf_labels = np.asarray(y_true), np.asarray(leaf_labels)
    n_leaves = len(linkage) + 1
    below = _leaves_below(np.asarray(linkage), n_leaves)
    purities = []
    for i, j in itertools.combinations(range(len(y_true)), 2):
        if y_true[i] != y_true[j]:
            continue
        # the lowest common ancestor: the smallest node holding both leaves
        lca = min((node for node in below if {leaf_labels[i], leaf_labels[j]} <= node), key=len)
        inside = np.isin(leaf_labels, list(lca))
        purities.append(np.mean(y_true[inside] == y_true[i]))
    return float(np.mean(purities)) if purities else float("nan")


def brute_accuracy(y_true, y_pred):
    """Best injective matching of clusters to classes, by trying all of them."""
    classes, clusters = np.unique(y_true), np.unique(y_pred)
    best = 0
    if len(clusters) <= len(classes):
        for perm in itertools.permutations(classes, len(clusters)):
            mapping = dict(zip(clusters, perm, strict=True))
            best = max(best, sum(mapping[p] == t for t, p in zip(y_true, y_pred, strict=True)))
    else:
        for perm in itertools.permutations(clusters, len(classes)):
            mapping = dict(zip(perm, classes, strict=True))
            best = max(best, sum(mapping.get(p) == t for t, p in zip(y_true, y_pred, strict=True)))
    return best / len(y_true)


def random_tree(rng, n_leaves):
    """A random linkage over n_leaves leaf clusters (empty for one leaf)."""
    if n_leaves == 1:
        return np.zeros((0, 4))
    method = rng.choice(["single", "average", "ward", "complete"])
    return scipy_linkage(rng.normal(size=(n_leaves, 2)), method=method)


# ---------------------------------------------------------------------- dendrogram purity
@pytest.mark.parametrize("seed", range(40))
def test_dendrogram_purity_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_leaves = int(rng.integers(1, 12))
    n_samples = int(rng.integers(2, 45))
    n_classes = int(rng.integers(1, 6))
    linkage = random_tree(rng, n_leaves)
    leaf_labels = rng.integers(0, n_leaves, n_samples)
    y_true = rng.integers(0, n_classes, n_samples)
    fast = dendrogram_purity(y_true, leaf_labels, linkage)
    slow = brute_dendrogram_purity(y_true, leaf_labels, linkage)
    if np.isnan(slow):
        assert np.isnan(fast)
    else:
        assert fast == pytest.approx(slow, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_dendrogram_purity_full_tree_one_sample_per_leaf(seed):
    """The usual agglomerative case: every sample is a leaf."""
    rng = np.random.default_rng(100 + seed)
    points = rng.normal(size=(30, 3))
    linkage = scipy_linkage(points, method="ward")
    y_true = rng.integers(0, 3, 30)
    fast = dendrogram_purity(y_true, np.arange(30), linkage)
    assert fast == pytest.approx(brute_dendrogram_purity(y_true, np.arange(30), linkage), abs=1e-12)


def test_dendrogram_purity_string_classes_and_empty_leaves():
    rng = np.random.default_rng(7)
    linkage = random_tree(rng, 8)
    leaf_labels = rng.choice([0, 2, 3, 7], 30)  # leaves 1, 4, 5, 6 hold no sample
    y_true = rng.choice(["cat", "dog", "eel"], 30)
    assert dendrogram_purity(y_true, leaf_labels, linkage) == pytest.approx(
        brute_dendrogram_purity(y_true, leaf_labels, linkage), abs=1e-12
    )


def test_dendrogram_purity_perfect_tree_is_one():
    # leaves 0, 1 hold class "a"; leaf 2 class "b"; leaf 3 class "c"
    linkage = scipy_linkage(np.array([[0.0], [0.1], [5.0], [9.0]]), method="single")
    leaf_labels = np.repeat([0, 1, 2, 3], 5)
    y_true = np.repeat(["a", "a", "b", "c"], 5)
    assert dendrogram_purity(y_true, leaf_labels, linkage) == 1.0


def test_dendrogram_purity_value_by_hand():
    # tree ((leaf 0, leaf 1), leaf 2); samples in leaves 0, 1, 2, 2 with classes 0, 0, 0, 1.
    # class-0 pairs: (s0, s1) LCA node {0, 1} = {s0, s1}, purity 1; (s0, s2) and (s1, s2) LCA root, purity 3/4
    linkage = np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 3]])
    assert dendrogram_purity([0, 0, 0, 1], [0, 1, 2, 2], linkage) == pytest.approx((1 + 0.75 + 0.75) / 3)
    # two samples of one class in one leaf: that leaf is their LCA (purity 1 here, not the root's 1/2)
    assert dendrogram_purity([0, 1, 1, 0], [0, 1, 2, 2], linkage) == pytest.approx((0.5 + 0.5) / 2)
    assert dendrogram_purity([0, 0, 1, 1], [0, 1, 2, 2], linkage) == 1.0


def test_dendrogram_purity_one_cluster():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    # one leaf: every same-class pair has the whole set as LCA; pairs: 3 of class 0, 1 of class 1
    expected = (3 * 3 / 6 + 1 * 2 / 6) / 4
    assert dendrogram_purity(y_true, np.zeros(6, dtype=int), np.zeros((0, 4))) == pytest.approx(expected)
    # a one-leaf linkage given as an empty list of rows
    assert dendrogram_purity(y_true, np.zeros(6, dtype=int), np.empty((0, 4))) == pytest.approx(expected)


def test_dendrogram_purity_singleton_classes():
    """Classes with one sample contribute no pair; they only dilute the purity of the nodes above them."""
    linkage = np.array([[0, 1, 1.0, 2]])
    # class 0: two samples in leaf 0 with a singleton class 1 -> purity 2/3
    value = dendrogram_purity([0, 0, 1, 2], [0, 0, 0, 1], linkage)
    assert value == pytest.approx(2 / 3)
    assert value == pytest.approx(brute_dendrogram_purity([0, 0, 1, 2], [0, 0, 0, 1], linkage))


def test_dendrogram_purity_no_same_class_pair_is_nan():
    """Every class a singleton: the mean over no pair is undefined, so nan (as the definition gives)."""
    linkage = np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 3]])
    assert np.isnan(dendrogram_purity([0, 1, 2], [0, 1, 2], linkage))


def test_dendrogram_purity_invariant_to_label_names_and_child_order():
    rng = np.random.default_rng(3)
    linkage = random_tree(rng, 6)
    leaf_labels = rng.integers(0, 6, 50)
    y_true = rng.integers(0, 4, 50)
    reference = dendrogram_purity(y_true, leaf_labels, linkage)
    renamed = np.array([10, 30, 20, 0])[y_true]
    assert dendrogram_purity(renamed, leaf_labels, linkage) == pytest.approx(reference, abs=1e-15)
    swapped = linkage.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    assert dendrogram_purity(y_true, leaf_labels, swapped) == pytest.approx(reference, abs=1e-15)


def chain_linkage(n_leaves):
    """The deepest tree: leaf 0 joins leaf 1, then each further leaf joins the last node."""
    rows = np.arange(n_leaves - 1)
    first = np.where(rows == 0, 0, n_leaves + rows - 1)
    return np.column_stack([first, rows + 1, rows + 1.0, rows + 2.0]).astype(np.float64)


def test_chain_linkage_matches_brute_force():
    rng = np.random.default_rng(11)
    linkage = chain_linkage(9)
    leaf_labels, y_true = rng.integers(0, 9, 40), rng.integers(0, 3, 40)
    assert dendrogram_purity(y_true, leaf_labels, linkage) == pytest.approx(
        brute_dendrogram_purity(y_true, leaf_labels, linkage), abs=1e-12
    )


def test_dendrogram_purity_is_fast_on_fashion_mnist_scale():
    rng = np.random.default_rng(0)
    n = 70_000
    y_true = rng.integers(0, 10, n)
    # 10 leaf clusters (a CoHiClust tree), and trees with a leaf per sample: balanced-ish and a 70,000-deep chain
    trees = [scipy_linkage(rng.normal(size=(10, 2)), method="ward"), scipy_linkage(rng.normal(size=(3000, 2)))]
    trees.append(chain_linkage(n))
    for linkage in trees:
        n_leaves = len(linkage) + 1
        leaf_labels = rng.integers(0, n_leaves, n) if n_leaves < n else rng.permutation(n)
        start = time.perf_counter()
        value = dendrogram_purity(y_true, leaf_labels, linkage)
        assert time.perf_counter() - start < 3.0
        assert 0.0 < value <= 1.0


def test_dendrogram_purity_validation():
    linkage = np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 3]])
    with pytest.raises(ValueError, match="same length"):
        dendrogram_purity([0, 1, 1], [0, 1], linkage)
    with pytest.raises(ValueError, match=r"leaf_labels must lie in 0\.\.2"):
        dendrogram_purity([0, 1], [0, 3], linkage)
    with pytest.raises(ValueError, match="leaf_labels must lie"):
        dendrogram_purity([0, 1], [-1, 0], linkage)
    with pytest.raises(ValueError, match="leaf_labels must be integers"):
        dendrogram_purity([0, 1], [0.5, 1.0], linkage)
    with pytest.raises(ValueError, match="shape"):
        dendrogram_purity([0, 1], [0, 1], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="linkage"):  # cluster 4 used before it is formed
        dendrogram_purity([0, 1], [0, 1], np.array([[0, 4, 1.0, 2], [2, 3, 2.0, 3]]))
    with pytest.raises(ValueError, match="linkage"):  # leaf 0 used twice
        dendrogram_purity([0, 1], [0, 1], np.array([[0, 1, 1.0, 2], [0, 3, 2.0, 3]]))
    with pytest.raises(ValueError, match="linkage"):  # a single row must join leaves 0 and 1
        dendrogram_purity([0, 1], [0, 1], np.array([[0, 5, 1.0, 2]]))
    with pytest.raises(ValueError, match="excessive observations"):  # counts samples, not leaves
        dendrogram_purity([0, 1], [0, 1], np.array([[0, 1, 1.0, 2], [2, 3, 2.0, 30]]))
    with pytest.raises(ValueError, match="1-D"):
        dendrogram_purity([[0, 1]], [0, 1], linkage)
    with pytest.raises(ValueError, match="not be empty"):
        dendrogram_purity([], [], linkage)


# ---------------------------------------------------------------------- leaf purity
@pytest.mark.parametrize("seed", range(10))
def test_leaf_purity_matches_definition(seed):
    rng = np.random.default_rng(seed)
    leaf_labels = rng.integers(0, 7, 60)
    y_true = rng.integers(0, 4, 60)
    expected = sum(np.bincount(y_true[leaf_labels == leaf]).max() for leaf in np.unique(leaf_labels)) / 60
    assert leaf_purity(y_true, leaf_labels) == pytest.approx(expected, abs=1e-15)


def test_leaf_purity_edge_cases():
    assert leaf_purity([0, 0, 1, 1, 1], [0, 0, 0, 1, 1]) == pytest.approx(0.8)
    assert leaf_purity([0, 0, 1, 1], [0, 0, 0, 0]) == 0.5  # one cluster: majority share
    assert leaf_purity([0, 1, 2, 3], [0, 1, 2, 3]) == 1.0  # one sample per leaf
    with pytest.raises(ValueError, match="same length"):
        leaf_purity([0, 1], [0])


# ---------------------------------------------------------------------- accuracy
@pytest.mark.parametrize("seed", range(15))
def test_cluster_accuracy_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_classes, n_clusters = int(rng.integers(1, 5)), int(rng.integers(1, 6))
    y_true = rng.integers(0, n_classes, 25)
    y_pred = rng.integers(0, n_clusters, 25)
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(brute_accuracy(y_true, y_pred), abs=1e-15)


def test_cluster_accuracy_more_clusters_than_classes():
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    y_pred = np.array([0, 0, 1, 1, 2, 2, 2, 3])  # 4 clusters, 2 classes: only two clusters can be matched
    assert cluster_accuracy(y_true, y_pred) == pytest.approx(5 / 8)
    # splitting every class in two halves the accuracy at best
    assert cluster_accuracy([0, 0, 1, 1], [0, 1, 2, 3]) == 0.5


def test_cluster_accuracy_fewer_clusters_than_classes():
    assert cluster_accuracy([0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 1, 1]) == pytest.approx(4 / 6)


def test_cluster_accuracy_permutation_invariance():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, rng.integers(0, 5, 200))
    reference = cluster_accuracy(y_true, y_pred)
    permutation = rng.permutation(5)
    assert cluster_accuracy(y_true, permutation[y_pred]) == reference
    assert cluster_accuracy(y_true, np.array(list("abcde"))[y_pred]) == reference
    assert cluster_accuracy(permutation[y_true], y_pred) == reference
    assert cluster_accuracy(y_true, permutation[y_true]) == 1.0


def test_cluster_accuracy_validation():
    with pytest.raises(ValueError, match="same length"):
        cluster_accuracy([0, 1, 2], [0, 1])
    with pytest.raises(ValueError, match="1-D"):
        cluster_accuracy(np.zeros((2, 2)), np.zeros((2, 2)))


@pytest.mark.parametrize("seed", range(3))
def test_dendrogram_purity_agrees_with_clustpy(seed):
    """An independent implementation (ClustPy's, a dense O(k^2) parent matrix), when it is installed."""
    hierarchical_metrics = pytest.importorskip("clustpy.metrics.external")
    rng = np.random.default_rng(200 + seed)
    n_leaves = 12
    linkage = random_tree(rng, n_leaves)
    leaf_labels = np.concatenate([np.arange(n_leaves), rng.integers(0, n_leaves, 300)])  # no leaf empty
    y_true = rng.integers(0, 5, leaf_labels.shape[0])
    theirs = hierarchical_metrics.dendrogram_purity(linkage, y_true, leaf_labels)
    assert dendrogram_purity(y_true, leaf_labels, linkage) == pytest.approx(theirs, abs=1e-12)
