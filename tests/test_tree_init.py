"""The data-dependent starts of the tree head: bisecting 2-means and k-means clusters in a tree."""

import itertools

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from skcohiclust import tree
from skcohiclust.tree_init import INIT_LOGIT, bisecting_hyperplanes, clustered_tree, split_clusters


def _blobs(n_per, centres, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([c + 0.1 * torch.randn(n_per, len(c), generator=g) for c in torch.tensor(centres)])


def test_root_split_separates_two_blobs_with_the_chosen_sharpness():
    h = _blobs(50, [[5.0, 0.0], [-5.0, 0.0]])
    weight, bias = bisecting_hyperplanes(h, 1, torch.Generator().manual_seed(0))
    logits = h @ weight.T + bias
    left = logits[:, 0] > 0
    assert left[:50].all() != left[50:].any()  # each blob goes one way, the two blobs different ways
    assert torch.isclose(logits.abs().median(), torch.tensor(INIT_LOGIT), rtol=1e-4)


def test_four_blobs_fill_the_four_leaves_of_a_depth_two_tree():
    h = _blobs(40, [[6.0, 6.0], [6.0, -6.0], [-6.0, 6.0], [-6.0, -6.0]], seed=1)
    weight, bias = bisecting_hyperplanes(h, 2, torch.Generator().manual_seed(0))
    leaves = tree.leaf_probabilities(torch.sigmoid(h @ weight.T + bias), 2).argmax(1)
    per_blob = leaves.reshape(4, 40)
    assert all(len(torch.unique(row)) == 1 for row in per_blob)
    assert len(torch.unique(per_blob[:, 0])) == 4


def test_deep_trees_with_empty_nodes_stay_finite_and_repeatable():
    h = torch.randn(30, 8, generator=torch.Generator().manual_seed(2))
    a = bisecting_hyperplanes(h, 6, torch.Generator().manual_seed(3))
    b = bisecting_hyperplanes(h, 6, torch.Generator().manual_seed(3))
    assert a[0].shape == (63, 8) and a[1].shape == (63,)
    assert torch.isfinite(a[0]).all() and torch.isfinite(a[1]).all()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def _between(counts, means, first):
    n_a, n_b = counts[first].sum(), counts[~first].sum()
    mean_a = (counts[first, None] * means[first]).sum(0) / n_a
    mean_b = (counts[~first, None] * means[~first]).sum(0) / n_b
    return n_a * n_b / (n_a + n_b) * ((mean_a - mean_b) ** 2).sum()


@pytest.mark.parametrize("k, capacity", [(2, 1), (3, 2), (5, 3), (7, 4), (9, 8)])
def test_split_clusters_finds_the_best_bipartition_within_capacity(k, capacity):
    rng = np.random.default_rng(k)
    counts = rng.integers(1, 60, k).astype(float)
    means = rng.normal(size=(k, 3))
    first = split_clusters(counts, means, capacity)
    assert 1 <= first.sum() <= capacity and k - first.sum() <= capacity
    best = max(
        _between(counts, means, np.array(bits, dtype=bool))
        for bits in itertools.product((False, True), repeat=k)
        if 0 < sum(bits) <= capacity and k - sum(bits) <= capacity
    )
    assert np.isclose(_between(counts, means, first), best)


def test_split_clusters_of_many_clusters_cuts_along_their_spread_within_capacity():
    rng = np.random.default_rng(0)
    means = np.concatenate([rng.normal(-5.0, 0.1, (12, 4)), rng.normal(5.0, 0.1, (18, 4))])
    counts = np.full(30, 10.0)
    first = split_clusters(counts, means, 16)  # more clusters than the exhaustive search takes
    assert first.sum() in (14, 16)  # no group over 16: the 18 far ones cannot all stay together
    assert set(first[:12]) == {bool(first[0])}  # the 12 near ones stay together
    with pytest.raises(ValueError, match="at most 4"):
        split_clusters(np.ones(9), rng.normal(size=(9, 2)), 4)


def _route(h, weight, bias, mask, depth):
    leaf = tree.leaf_probabilities(torch.sigmoid(h @ weight.T + bias), depth)
    return tree.masked_leaf_probabilities(leaf[:, mask], torch.ones(int(mask.sum()), dtype=torch.bool))


def test_clustered_tree_gives_each_blob_its_own_leaf_and_masks_the_rest():
    centres = [[8.0, 0.0], [-8.0, 0.0], [0.0, 8.0], [0.0, -8.0], [8.0, 8.0]]
    h = _blobs(40, centres, seed=3)
    weight, bias, mask = clustered_tree(h, 3, 5, seed=0)
    assert mask.dtype == torch.bool and int(mask.sum()) == 5
    proba = _route(h, weight, bias, mask, 3)
    assert torch.allclose(proba.sum(1), torch.ones(len(h)))
    blobs = np.repeat(np.arange(5), 40)
    assert adjusted_rand_score(blobs, proba.argmax(1).numpy()) == 1.0
    # a leaf that stands for a whole subtree gets nearly all of its mass: little is left on masked leaves
    raw = tree.leaf_probabilities(torch.sigmoid(h @ weight.T + bias), 3)
    assert raw[:, ~mask].sum(1).max() < 0.01
    linkage = tree.linkage_from_leaf_mask(mask.numpy(), 3)
    assert linkage.shape == (4, 4)


def test_clustered_tree_start_does_not_depend_on_the_kmeans_seed():
    # 16 blobs on a grid, large and small ones alternating: single k-means++ starts merge two
    # blobs and split another on every one of ten seeds, and three restarts on most of them
    rng = np.random.default_rng(0)
    centres = np.array([[i, j] for i in range(4) for j in range(4)], dtype=float) * 3
    sizes = np.array([200, 20] * 8)
    h = torch.from_numpy(
        np.concatenate([c + 0.5 * rng.standard_normal((n, 2)) for c, n in zip(centres, sizes, strict=True)])
    )
    blobs = np.repeat(np.arange(16), sizes)
    leaves = []
    for seed in range(4):
        weight, bias, mask = clustered_tree(h.float(), 4, 16, seed=seed)
        leaves.append(_route(h.float(), weight, bias, mask, 4).argmax(1).numpy())
    for other in leaves[1:]:
        assert adjusted_rand_score(leaves[0], other) == 1.0
    # the hyperplanes (bisectors of group means) cut the small blobs' edges a little
    assert adjusted_rand_score(blobs, leaves[0]) > 0.95


def test_clustered_tree_edge_sizes():
    h = _blobs(10, [[3.0, 0.0], [-3.0, 0.0], [0.0, 3.0], [0.0, -3.0]], seed=4)
    weight, bias, mask = clustered_tree(h, 2, 4, seed=0)  # every leaf used
    assert mask.all()
    weight, bias, mask = clustered_tree(h, 2, 1, seed=0)  # one cluster: everything to one leaf
    assert int(mask.sum()) == 1
    assert torch.allclose(_route(h, weight, bias, mask, 2), torch.ones(len(h), 1))
    with pytest.raises(ValueError, match="n_leaves"):
        clustered_tree(h, 2, 5, seed=0)
    a = clustered_tree(h, 3, 5, seed=1)
    b = clustered_tree(h, 3, 5, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_clustered_tree_with_fewer_distinct_rows_than_leaves_gives_finite_hyperplanes(recwarn):
    h = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]).repeat(10, 1)
    weight, bias, mask = clustered_tree(h, 3, 6, seed=0)
    assert int(mask.sum()) == 3  # one leaf per distinct row, none for the empty clusters
    assert torch.isfinite(weight).all() and torch.isfinite(bias).all()
    assert adjusted_rand_score(np.tile(np.arange(3), 10), _route(h, weight, bias, mask, 3).argmax(1).numpy()) == 1.0
    assert not recwarn.list
