"""Exact properties of the soft binary tree math."""

import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import dendrogram, fcluster, is_monotonic, is_valid_linkage

from skcohiclust import tree


def _left_prob(n, depth, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, tree.n_internal_nodes(depth), generator=g, dtype=torch.float64)


def _path_probability(sigma_row, depth, leaf):
    """Probability of one leaf from its root-to-leaf path, node by node."""
    p, node = 1.0, 0
    for level in range(depth):
        go_right = (leaf >> (depth - 1 - level)) & 1
        p *= (1 - sigma_row[node]) if go_right else sigma_row[node]
        node = 2 * node + 1 + go_right
    return p


@pytest.mark.parametrize("depth", [1, 2, 3, 5, 8])
def test_every_level_sums_to_one(depth):
    nodes = tree.node_probabilities(_left_prob(7, depth), depth)
    assert nodes.shape == (7, tree.n_node_columns(depth))
    for level in range(1, depth + 1):
        level_prob = nodes[:, tree.level_slice(level)]
        assert level_prob.shape[1] == 2**level
        torch.testing.assert_close(level_prob.sum(dim=1), torch.ones(7, dtype=torch.float64))


@pytest.mark.parametrize("depth", [1, 3, 4])
def test_leaf_probabilities_match_root_to_leaf_paths(depth):
    sigma = _left_prob(5, depth, seed=3)
    leaves = tree.leaf_probabilities(sigma, depth)
    expected = torch.tensor([[_path_probability(row, depth, j) for j in range(2**depth)] for row in sigma.tolist()])
    torch.testing.assert_close(leaves, expected.to(leaves.dtype))


def test_node_probability_is_sum_of_its_children():
    depth = 4
    nodes = tree.node_probabilities(_left_prob(6, depth, seed=1), depth)
    for level in range(1, depth):
        parent = nodes[:, tree.level_slice(level)]
        children = nodes[:, tree.level_slice(level + 1)].reshape(6, -1, 2).sum(-1)
        torch.testing.assert_close(parent, children)


def test_wrong_number_of_routing_outputs_is_rejected():
    with pytest.raises(ValueError, match="internal nodes"):
        tree.node_probabilities(torch.rand(3, 6), 3)


def test_column_levels_and_node_mask():
    depth = 3
    assert tree.column_levels(depth).tolist() == [1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3]
    leaf_mask = torch.tensor([True, True, False, False, False, True, False, False])
    mask = tree.node_active_mask(leaf_mask, depth)
    assert mask[tree.level_slice(1)].tolist() == [True, True]
    assert mask[tree.level_slice(2)].tolist() == [True, False, True, False]
    assert mask[tree.level_slice(3)].tolist() == leaf_mask.tolist()


def test_masked_leaf_probabilities_renormalise_active_leaves():
    leaf = tree.leaf_probabilities(_left_prob(9, 3), 3)
    mask = torch.tensor([True, False, True, True, False, False, True, False])
    proba = tree.masked_leaf_probabilities(leaf, mask)
    assert proba.shape == (9, 4)
    torch.testing.assert_close(proba.sum(1), torch.ones(9, dtype=proba.dtype))
    torch.testing.assert_close(proba, leaf[:, mask] / leaf[:, mask].sum(1, keepdim=True))


def test_masked_leaf_probabilities_all_zero_row_is_uniform():
    leaf = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    proba = tree.masked_leaf_probabilities(leaf, torch.tensor([True, True, False, False]))
    torch.testing.assert_close(proba, torch.tensor([[0.5, 0.5]]))


@pytest.mark.parametrize("keep", [1, 3, 7, 16])
def test_prune_least_used_keeps_exactly_k_leaves(keep):
    depth = 4
    leaf = tree.leaf_probabilities(_left_prob(200, depth, seed=5), depth)
    mask = tree.prune_least_used(leaf, torch.ones(16, dtype=torch.bool), keep)
    assert int(mask.sum()) == keep


def test_prune_least_used_removes_the_least_used_leaf_first():
    leaf = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.6, 0.3, 0.05, 0.05], [0.1, 0.1, 0.1, 0.7]])
    mask = tree.prune_least_used(leaf, torch.ones(4, dtype=torch.bool), 3)
    # mean usage: 0.467, 0.2, 0.083, 0.25 -> leaf 2 goes
    assert mask.tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="n_leaves"):
        tree.prune_least_used(leaf, mask, 4)


def test_drop_empty_leaves_keeps_the_assignment():
    leaf = torch.tensor([[0.7, 0.2, 0.1, 0.0], [0.1, 0.6, 0.3, 0.0], [0.1, 0.1, 0.1, 0.7]])
    mask = torch.tensor([True, True, True, True])
    kept = tree.drop_empty_leaves(leaf, mask)
    assert kept.tolist() == [True, True, False, True]
    before = leaf.masked_fill(~mask, -1).argmax(1)
    after = leaf.masked_fill(~kept, -1).argmax(1)
    assert torch.equal(before, after)


def test_leaf_ancestors():
    assert tree.leaf_ancestors(3, 0).tolist() == [0] * 8
    assert tree.leaf_ancestors(3, 1).tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert tree.leaf_ancestors(3, 3).tolist() == list(range(8))
    with pytest.raises(ValueError):
        tree.leaf_ancestors(3, 4)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("depth", [1, 2, 4, 6])
def test_linkage_is_valid_for_any_mask(depth, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(2**depth) < 0.6
    mask[rng.integers(2**depth)] = True
    mass = rng.random(tree.n_node_columns(depth))
    for node_mass in (None, mass):
        Z = tree.linkage_from_leaf_mask(mask, depth, node_mass)
        k = int(mask.sum())
        assert Z.dtype == np.float64 and Z.shape == (k - 1, 4)
        if k == 1:
            continue
        assert is_valid_linkage(Z)
        assert is_monotonic(Z)
        assert len(np.unique(Z[:, 2])) == k - 1  # distinct heights: maxclust can cut at any k
        assert Z[-1, 3] == k
        dendrogram(Z, no_plot=True)
        for n_clusters in range(1, k + 1):
            assert len(np.unique(fcluster(Z, n_clusters, criterion="maxclust"))) == n_clusters


@pytest.mark.parametrize("seed", range(4))
def test_linkage_cut_at_level_height_gives_level_partition(seed):
    depth = 4
    rng = np.random.default_rng(seed)
    mask = rng.random(2**depth) < 0.7
    mask[0] = True
    Z = tree.linkage_from_leaf_mask(mask, depth)
    leaves = np.flatnonzero(mask)
    for level in range(depth + 1):
        expected = tree.leaf_ancestors(depth, level)[leaves]
        if len(leaves) == 1:
            continue
        got = fcluster(Z, tree.level_cut_height(depth, level), criterion="distance")
        # same partition: a bijection between expected and got labels
        pairs = set(zip(expected.tolist(), got.tolist(), strict=True))
        assert len(pairs) == len(set(expected.tolist())) == len(set(got.tolist()))


def test_linkage_of_full_depth_two_tree():
    Z = tree.linkage_from_leaf_mask(np.ones(4, dtype=bool), 2)
    # leaves 0,1 merge at level 1 (height 1), leaves 2,3 at level 1 (height 1.25), then the root (height 2)
    np.testing.assert_array_equal(Z, [[0, 1, 1.0, 2], [2, 3, 1.25, 2], [4, 5, 2.0, 4]])


def test_tree_of_active_leaves_gives_argmax_labels_level_masses_and_a_valid_linkage():
    depth = 3
    mask = np.array([True, False, True, True, False, False, True, True])
    active = torch.rand(50, int(mask.sum()), generator=torch.Generator().manual_seed(0))
    labels, node_mass, linkage = tree.tree_of_active_leaves(active, mask, depth)
    proba = active / active.sum(1, keepdim=True)
    np.testing.assert_array_equal(labels, proba.argmax(1).numpy())
    for level in range(1, depth + 1):
        assert node_mass[tree.level_slice(level)].sum() == pytest.approx(1.0)
    leaf_mass = node_mass[tree.level_slice(depth)]
    np.testing.assert_allclose(leaf_mass[mask], proba.double().mean(0).numpy())
    assert (leaf_mass[~mask] == 0).all()
    assert is_valid_linkage(linkage) and linkage.shape == (int(mask.sum()) - 1, 4)
    np.testing.assert_array_equal(linkage, tree.linkage_from_leaf_mask(mask, depth, node_mass))
