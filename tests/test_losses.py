"""The vectorised losses equal their direct, pair-by-pair definitions."""

import math

import pytest
import torch

from skcohiclust import losses, tree


def _views(batch, depth, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2 * batch, tree.n_internal_nodes(depth), generator=g, dtype=torch.float64) * 2
    return logits.requires_grad_(True)


def _direct_tree_loss(nodes, depth, batch, node_mask=None):
    """Per level: - mean over positive pairs + mean over negative pairs of the Bhattacharyya coefficient."""
    if node_mask is not None:
        nodes = nodes * node_mask
    total = 0.0
    n = 2 * batch
    for level in range(1, depth + 1):
        p = nodes[:, tree.level_slice(level)]
        q = torch.sqrt(p + losses.SQRT_EPS)
        if node_mask is not None:
            q = q * node_mask[tree.level_slice(level)]
        positive, negative, n_neg = 0.0, 0.0, 0
        for i in range(n):
            for j in range(n):
                if i == j:
                    continue
                s = (q[i] * q[j]).sum()
                if j == (i + batch) % n:
                    if i < batch:
                        positive = positive + s
                else:
                    negative = negative + s
                    n_neg += 1
        total = total - positive / batch + negative / n_neg
    return total


def _direct_regularizer(nodes, depth, node_mask=None):
    m = nodes.mean(0)
    total = 0.0
    for parent in range(tree.n_internal_nodes(depth)):
        level = int(math.floor(math.log2(parent + 1))) + 1  # the children's level
        left_child = 2 * parent + 1  # heap id; its column in the level-major layout is heap id - 1
        cols = (left_child - 1, left_child)
        if node_mask is not None and not (node_mask[cols[0]] and node_mask[cols[1]]):
            continue
        total = total - 2.0**-level * 0.5 * (
            torch.log(m[cols[0]].clamp_min(losses.LOG_EPS)) + torch.log(m[cols[1]].clamp_min(losses.LOG_EPS))
        )
    return total


@pytest.mark.parametrize("depth,batch", [(1, 3), (2, 4), (3, 5), (4, 6)])
@pytest.mark.parametrize("masked", [False, True])
def test_tree_loss_and_regularizer_equal_direct_computation(depth, batch, masked):
    logits = _views(batch, depth, seed=depth * 10 + batch)
    node_mask = None
    if masked and depth > 1:
        leaf_mask = torch.ones(2**depth, dtype=torch.bool)
        leaf_mask[1] = False
        leaf_mask[-1] = False
        node_mask = tree.node_active_mask(leaf_mask, depth)

    def fast(lg):
        nodes = tree.node_probabilities(torch.sigmoid(lg), depth)
        stats = losses.tree_batch_statistics(nodes[:batch], nodes[batch:], node_mask)
        return losses.hierarchical_contrastive_loss(stats, depth), losses.balance_regularizer(stats, depth, node_mask)

    def direct(lg):
        nodes = tree.node_probabilities(torch.sigmoid(lg), depth)
        return _direct_tree_loss(nodes, depth, batch, node_mask), _direct_regularizer(nodes, depth, node_mask)

    for got, want in zip(fast(logits), direct(logits), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
        (g1,) = torch.autograd.grad(got, logits, retain_graph=True)
        (g2,) = torch.autograd.grad(want, logits, retain_graph=True)
        torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


def test_tree_loss_prefers_agreeing_views():
    depth, batch = 3, 8
    g = torch.Generator().manual_seed(0)
    sharp = (torch.rand(batch, tree.n_internal_nodes(depth), generator=g) > 0.5).double() * 0.98 + 0.01
    nodes = tree.node_probabilities(sharp, depth)
    agree = losses.hierarchical_contrastive_loss(losses.tree_batch_statistics(nodes, nodes), depth)
    shuffled = nodes[torch.randperm(batch, generator=g)]
    disagree = losses.hierarchical_contrastive_loss(losses.tree_batch_statistics(nodes, shuffled), depth)
    assert agree < disagree


def test_tree_loss_needs_two_samples():
    nodes = tree.node_probabilities(torch.rand(1, 3), 2)
    with pytest.raises(ValueError, match="at least 2"):
        losses.hierarchical_contrastive_loss(losses.tree_batch_statistics(nodes, nodes), 2)


def test_regularizer_is_smallest_for_balanced_splits():
    depth = 2
    balanced = tree.node_probabilities(torch.full((4, 3), 0.5, dtype=torch.float64), depth)
    skewed = tree.node_probabilities(torch.full((4, 3), 0.9, dtype=torch.float64), depth)
    r_bal = losses.balance_regularizer(losses.tree_batch_statistics(balanced, balanced), depth)
    r_skew = losses.balance_regularizer(losses.tree_batch_statistics(skewed, skewed), depth)
    assert r_bal < r_skew


def test_nt_xent_equals_direct_cross_entropy():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 7, generator=g, dtype=torch.float64), torch.randn(5, 7, generator=g, dtype=torch.float64)
    t = 0.5
    z = torch.nn.functional.normalize(torch.cat((z1, z2)).float(), dim=1).double()
    n = 10
    want = 0.0
    for i in range(n):
        partner = (i + 5) % n
        denom = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        want += -(float(z[i] @ z[partner]) / t - math.log(denom))
    want /= n
    got = losses.nt_xent(z1, z2, t)
    assert abs(float(got) - want) < 1e-5


def test_nt_xent_is_lower_for_matching_views():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(16, 8, generator=g)
    assert losses.nt_xent(z, z + 0.01 * torch.randn(16, 8, generator=g), 0.5) < losses.nt_xent(
        z, torch.randn(16, 8, generator=g), 0.5
    )


@pytest.mark.parametrize("depth,batch", [(1, 3), (3, 5), (4, 6)])
@pytest.mark.parametrize("masked", [False, True])
def test_leaf_balance_is_the_kl_divergence_to_uniform_over_active_leaves(depth, batch, masked):
    logits = _views(batch, depth, seed=depth + batch)
    leaf_mask = torch.ones(2**depth, dtype=torch.bool)
    if masked:
        leaf_mask[0] = False
    node_mask = tree.node_active_mask(leaf_mask, depth) if masked else None

    def fast(lg):
        nodes = tree.node_probabilities(torch.sigmoid(lg), depth)
        return losses.leaf_balance(
            losses.tree_batch_statistics(nodes[:batch], nodes[batch:], node_mask), depth, node_mask
        )

    def direct(lg):
        leaves = tree.node_probabilities(torch.sigmoid(lg), depth)[:, tree.level_slice(depth)][:, leaf_mask]
        m = leaves.mean(0) / leaves.mean(0).sum()
        uniform = torch.full_like(m, 1 / len(m))
        return (m * torch.log(m / uniform)).sum()

    got, want = fast(logits), direct(logits)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert got > 0 if int(leaf_mask.sum()) > 1 else got == 0  # one leaf is always balanced
    (g1,) = torch.autograd.grad(got, logits)
    (g2,) = torch.autograd.grad(direct(logits), logits)
    torch.testing.assert_close(g1, g2, rtol=1e-8, atol=1e-10)


def _stats_of_leaf_masses(leaf_mass, depth):
    """Batch statistics whose mean node masses follow from the given leaf masses (one pair)."""
    node_mass = torch.cat([leaf_mass.reshape(2**level, -1).sum(1) for level in range(1, depth + 1)])
    return losses.TreeBatchStatistics(None, None, None, sum_mass=2 * node_mass, n_pairs=1)


def test_leaf_balance_is_zero_for_equal_leaves_where_the_papers_regulariser_is_not_smallest():
    # the 10 leaves a k-means start arranged in a depth-4 tree on Fashion-MNIST:
    # (0 (4 (6 7))) ((8 10) ((12 13) (14 15)))
    depth = 4
    leaf_mask = torch.zeros(16, dtype=torch.bool)
    leaf_mask[[0, 4, 6, 7, 8, 10, 12, 13, 14, 15]] = True
    node_mask = tree.node_active_mask(leaf_mask, depth)
    equal = torch.where(leaf_mask, 0.1, 0.0).double()
    # the leaf masses that minimise the paper's regulariser on this tree (found numerically)
    skewed = torch.zeros(16, dtype=torch.float64)
    skewed[leaf_mask] = torch.tensor([0.126, 0.105, 0.105, 0.105, 0.112, 0.112, 0.084, 0.084, 0.084, 0.084]).double()
    skewed /= skewed.sum()
    stats_equal, stats_skewed = _stats_of_leaf_masses(equal, depth), _stats_of_leaf_masses(skewed, depth)
    assert abs(float(losses.leaf_balance(stats_equal, depth, node_mask))) < 1e-12
    assert losses.leaf_balance(stats_skewed, depth, node_mask) > 1e-3
    assert losses.balance_regularizer(stats_skewed, depth, node_mask) < losses.balance_regularizer(
        stats_equal, depth, node_mask
    )
