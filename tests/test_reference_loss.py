"""The vectorised tree losses equal the published pair-by-pair formulation.

``benchmarks/reference_loss.py`` re-implements the published algorithm (node
probabilities walked node by node, Bhattacharyya coefficients gathered pair
by pair from explicit index lists).  On small float64 cases, with and
without a pruning mask, the package's loss values and their gradients with
respect to the tree head's logits must be the same.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

from skcohiclust.losses import balance_regularizer, hierarchical_contrastive_loss, tree_batch_statistics
from skcohiclust.tree import node_active_mask, node_probabilities

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_loss.py"
_SPEC = importlib.util.spec_from_file_location("reference_loss", _PATH)
reference = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(reference)

#: Leaf masks per depth for the pruned cases: a lone pruned leaf, and a whole pruned subtree.
PRUNED_LEAVES = {
    2: [True, True, False, True],
    3: [True, False, True, True, False, False, True, True],
    4: [True] * 5 + [False] * 4 + [True, False, True, True, True, False, True],
}


def _package_terms(left_prob, batch, depth, node_mask):
    nodes = node_probabilities(left_prob, depth)
    stats = tree_batch_statistics(nodes[:batch], nodes[batch:], node_mask)
    tree = hierarchical_contrastive_loss(stats, depth)
    reg = balance_regularizer(stats, depth, node_mask) * 2.0**-depth
    return tree, reg


def _case(batch, depth, pruned, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(2 * batch, 2**depth - 1, generator=generator, dtype=torch.float64)
    leaf_mask = torch.tensor(PRUNED_LEAVES[depth]) if pruned else torch.ones(2**depth, dtype=torch.bool)
    node_mask = node_active_mask(leaf_mask, depth) if pruned else None
    return logits, node_mask


def _values_and_grads(fn, logits):
    logits = logits.clone().requires_grad_(True)
    tree, reg = fn(torch.sigmoid(logits))
    values = torch.stack((tree, reg))
    grads = [torch.autograd.grad(term, logits, retain_graph=True)[0] for term in (tree, reg)]
    return values, grads


def _tolerance(dtype):
    # the package may compute the statistics in float32; then float32 precision is all one can ask
    return dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=1e-6)


CASES = [(2, 2, 0), (5, 3, 1), (7, 4, 2), (4, 3, 3)]


def _compare(batch, depth, seed, pruned, term, name):
    logits, node_mask = _case(batch, depth, pruned, seed)
    masks = reference.level_masks_from_node_mask(node_mask, depth)
    ours, our_grads = _values_and_grads(lambda p: _package_terms(p, batch, depth, node_mask), logits)
    ref, ref_grads = _values_and_grads(lambda p: reference.reference_tree_terms(p, batch, depth, masks), logits)
    tol = _tolerance(ours.dtype)
    torch.testing.assert_close(ours[term].double(), ref[term], **tol, msg=f"value of the {name}")
    torch.testing.assert_close(our_grads[term], ref_grads[term], **tol, msg=f"gradient of the {name}")
    assert torch.count_nonzero(our_grads[term]) > 0


@pytest.mark.parametrize("pruned", [False, True], ids=["all-leaves", "pruned"])
@pytest.mark.parametrize("batch,depth,seed", CASES)
def test_hierarchical_loss_equals_pair_by_pair_reference(batch, depth, seed, pruned):
    _compare(batch, depth, seed, pruned, 0, "hierarchical contrastive loss")


@pytest.mark.parametrize("pruned", [False, True], ids=["all-leaves", "pruned"])
@pytest.mark.parametrize("batch,depth,seed", CASES)
def test_balance_regularizer_equals_sibling_by_sibling_reference(batch, depth, seed, pruned):
    # the published weighting: the sibling pair at level l (of the children, 1..depth) counts 2**-l
    _compare(batch, depth, seed, pruned, 1, "weighted balance regulariser")


def test_pruned_leaves_get_no_gradient_through_masked_columns():
    batch, depth = 4, 3
    logits, node_mask = _case(batch, depth, True, 5)
    masks = reference.level_masks_from_node_mask(node_mask, depth)
    # the subtree of level-2 node 2 (leaves 4 and 5) is pruned, so its routing node (heap 5) is unused
    assert not bool(node_mask[2 + 2])
    for fn in (
        lambda p: _package_terms(p, batch, depth, node_mask),
        lambda p: reference.reference_tree_terms(p, batch, depth, masks),
    ):
        _, grads = _values_and_grads(fn, logits)
        assert torch.all(grads[0][:, 5] == 0)
        assert torch.all(grads[1][:, 5] == 0)


def test_reference_node_probabilities_are_the_level_products():
    depth = 4
    left_prob = torch.rand(6, 2**depth - 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = node_probabilities(left_prob, depth)
    walked = torch.cat([reference.path_node_probabilities(left_prob, level) for level in range(1, depth + 1)], dim=1)
    torch.testing.assert_close(ours, walked, rtol=1e-12, atol=1e-14)


def test_reference_pair_lists_count_every_ordered_pair_once():
    batch = 5
    (pr, pc), (nr, nc) = reference.pair_index_lists(batch)
    assert pr.numel() == 2 * batch
    assert nr.numel() == 2 * batch * (2 * batch - 2)
    assert torch.all((pr - pc).abs() == batch)
    assert not torch.any(nr == nc)
    assert not torch.any((nr - nc).abs() == batch)
    pairs = set(zip(pr.tolist(), pc.tolist(), strict=True)) | set(zip(nr.tolist(), nc.tolist(), strict=True))
    assert len(pairs) == 2 * batch * (2 * batch - 1)
