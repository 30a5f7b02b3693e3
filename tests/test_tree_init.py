"""The bisecting 2-means start of the tree head."""

import torch

from skcohiclust import tree
from skcohiclust.tree_init import INIT_LOGIT, bisecting_hyperplanes


def _blobs(n_per, centres, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([c + 0.1 * torch.randn(n_per, len(c), generator=g) for c in torch.tensor(centres)])


def test_root_split_separates_two_blobs_with_the_chosen_sharpness():
    h = _blobs(50, [[5.0, 0.0], [-5.0, 0.0]])
    weight, bias = bisecting_hyperplanes(h, 1, torch.Generator().manual_seed(0))
    logits = h @ weight.T + bias
    left = (logits[:, 0] > 0)
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
