"""Nearest neighbours in the representation (the tree phase's neighbour positives)."""

import numpy as np
import pytest
import torch

from skcohiclust.neighbors import nearest_neighbors


def _brute_force(features, k, candidates=None):
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    if candidates is not None:
        outside = np.setdiff1d(np.arange(len(features)), candidates)
        sim[:, outside] = -np.inf
    return np.argsort(-sim, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("chunk", [1, 7, 1024])
def test_nearest_neighbors_match_brute_force(chunk):
    features = torch.randn(60, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    found = nearest_neighbors(features, 6, chunk=chunk).numpy()
    np.testing.assert_array_equal(found, _brute_force(features.numpy(), 6))


def test_nearest_neighbors_among_candidates_never_return_self_or_outsiders():
    features = torch.randn(50, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    candidates = torch.arange(0, 50, 3)
    found = nearest_neighbors(features, 4, candidates, chunk=8).numpy()
    assert found.shape == (50, 4)
    assert np.isin(found, candidates.numpy()).all()
    assert not (found == np.arange(50)[:, None]).any()
    np.testing.assert_array_equal(found, _brute_force(features.numpy(), 4, candidates.numpy()))


def test_nearest_neighbors_are_cosine_not_euclidean():
    # row 1 points the way row 0 does but is far longer; row 2 is closer in distance, another direction
    features = torch.tensor([[1.0, 0.0], [10.0, 0.1], [0.9, 0.5], [-1.0, 0.0]])
    assert nearest_neighbors(features, 1)[0, 0].item() == 1


def test_nearest_neighbors_reject_impossible_k():
    features = torch.randn(5, 3)
    with pytest.raises(ValueError, match="k must be in"):
        nearest_neighbors(features, 5)
    with pytest.raises(ValueError, match="k must be in"):
        nearest_neighbors(features, 0)
