"""Contrastive Clustering: its losses against direct computations, and the estimator on the shared engine."""

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skcohiclust import CoHiClust, ContrastiveClustering
from skcohiclust._data import BatchSource
from skcohiclust.losses import (
    cluster_batch_statistics,
    cluster_contrastive_loss,
    cluster_entropy_penalty,
)
from skcohiclust.networks import NetworkOutput
from skcohiclust.objectives import ContrastiveClusteringObjective

#: Small and quick: an MLP on 8x8 digits, one warm-up epoch so that the cluster terms start on a representation.
PARAMS = dict(n_clusters=5, backbone="mlp", batch_size=64, lr=1e-3, random_state=0)

# one torch thread (see conftest.one_torch_thread): exact comparisons need one fixed count
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def X(small_digits):
    return small_digits[0]


# ---------------------------------------------------------------- the losses, against slow explicit loops
def _assignments(batch, k, seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, batch, k, generator=generator, dtype=torch.float64, requires_grad=True)
    return logits, torch.softmax(logits, dim=2)


def _cosine(a, b):
    return float((a @ b) / (a.norm() * b.norm())) if not a.requires_grad else (a @ b) / (a.norm() * b.norm())


def _direct_contrast(vectors, temperature):
    """NT-Xent over 2m vectors written out: vector i's positive is i + m (mod 2m), the others negatives."""
    half = len(vectors) // 2
    total = 0.0
    for i, vector in enumerate(vectors):
        positive = (i + half) % (2 * half)
        similarity = [_cosine(vector, other) / temperature for other in vectors]
        denominator = sum(torch.exp(s) for m, s in enumerate(similarity) if m != i)
        total = total - torch.log(torch.exp(similarity[positive]) / denominator)
    return total / (2 * half)


def direct_cluster_loss(y1, y2, temperature):
    """The cluster-level loss written out: each of the 2K columns against the other 2K - 1."""
    return _direct_contrast(
        [y1[:, i] for i in range(y1.shape[1])] + [y2[:, i] for i in range(y2.shape[1])], temperature
    )


def direct_entropy_penalty(y1, y2):
    """``sum over views of log K + sum_i p_i log p_i``, with ``p_i`` a column's share of the view's total."""
    total = 0.0
    for y in (y1, y2):
        k = y.shape[1]
        mass = y.sum()
        total = total + np.log(k)
        for i in range(k):
            p = y[:, i].sum() / mass
            total = total + p * torch.log(p)
    return total


def direct_nt_xent(z1, z2, temperature):
    """NT-Xent written out: every view against the 2B - 1 others, its pair the positive."""
    return _direct_contrast(list(z1) + list(z2), temperature)


@pytest.mark.parametrize("batch, k, temperature", [(6, 3, 1.0), (5, 4, 0.5), (9, 2, 2.0)])
def test_cluster_contrastive_loss_and_gradient_match_the_direct_computation(batch, k, temperature):
    logits, (y1, y2) = _assignments(batch, k, seed=batch)
    ours = cluster_contrastive_loss(cluster_batch_statistics(y1, y2), temperature)
    direct = direct_cluster_loss(y1, y2, temperature)
    torch.testing.assert_close(ours, direct, rtol=1e-10, atol=1e-12)
    (grad_ours,) = torch.autograd.grad(ours, logits, retain_graph=True)
    (grad_direct,) = torch.autograd.grad(direct, logits)
    torch.testing.assert_close(grad_ours, grad_direct, rtol=1e-8, atol=1e-12)
    assert grad_ours.abs().max() > 1e-6  # a loss with no gradient would pass too


@pytest.mark.parametrize("batch, k", [(6, 3), (5, 7)])
def test_entropy_penalty_and_gradient_match_the_direct_computation(batch, k):
    logits, (y1, y2) = _assignments(batch, k, seed=10 + k)
    ours = cluster_entropy_penalty(cluster_batch_statistics(y1, y2))
    direct = direct_entropy_penalty(y1, y2)
    torch.testing.assert_close(ours, direct, rtol=1e-10, atol=1e-12)
    (grad_ours,) = torch.autograd.grad(ours, logits, retain_graph=True)
    (grad_direct,) = torch.autograd.grad(direct, logits)
    torch.testing.assert_close(grad_ours, grad_direct, rtol=1e-8, atol=1e-12)
    assert ours > 0  # random assignments are not balanced
    uniform = torch.full((batch, k), 1.0 / k, dtype=torch.float64)
    assert float(cluster_entropy_penalty(cluster_batch_statistics(uniform, uniform))) == pytest.approx(0, abs=1e-12)


def test_objective_loss_is_nt_xent_plus_cluster_loss_plus_weighted_entropy():
    batch, k, dim = 6, 3, 4
    generator = torch.Generator().manual_seed(0)
    projection = torch.randn(2 * batch, dim, generator=generator, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(2 * batch, k, generator=generator, dtype=torch.float64, requires_grad=True)
    out = NetworkOutput(None, projection, torch.softmax(logits, dim=1))
    objective = ContrastiveClusteringObjective(k, temperature=0.5, cluster_temperature=1.0, entropy_weight=0.7)
    loss, terms = objective.loss(objective.batch_statistics(out, batch), "clustering")
    y1, y2 = out.head[:batch], out.head[batch:]
    instance = direct_nt_xent(projection[:batch], projection[batch:], 0.5)
    cluster = direct_cluster_loss(y1, y2, 1.0)
    entropy = direct_entropy_penalty(y1, y2)
    direct = instance + cluster + 0.7 * entropy
    torch.testing.assert_close(loss.double(), direct, rtol=1e-5, atol=1e-6)  # the objective's float32 terms
    torch.testing.assert_close(
        terms.double(), torch.stack((direct, instance, cluster, entropy)).detach().double(), rtol=1e-5, atol=1e-6
    )
    grads = torch.autograd.grad(loss, (projection, logits), retain_graph=True)
    direct_grads = torch.autograd.grad(direct, (projection, logits))
    for ours, expected in zip(grads, direct_grads, strict=True):
        torch.testing.assert_close(ours.double(), expected, rtol=1e-4, atol=1e-6)
    # in the warm-up only NT-Xent counts
    warm, warm_terms = objective.loss(objective.batch_statistics(out, batch), "warmup")
    torch.testing.assert_close(warm.double(), instance, rtol=1e-5, atol=1e-6)
    assert warm_terms[2] == 0 and warm_terms[3] == 0


def test_cluster_statistics_are_sums_over_the_samples():
    # what lets a data-parallel run all-reduce them: the statistics of a batch are those of its parts added up
    _, (y1, y2) = _assignments(8, 3, seed=3)
    whole = cluster_batch_statistics(y1, y2)
    a, b = cluster_batch_statistics(y1[:5], y2[:5]), cluster_batch_statistics(y1[5:], y2[5:])
    torch.testing.assert_close(whole.gram, a.gram + b.gram)
    torch.testing.assert_close(whole.sum_assignment, a.sum_assignment + b.sum_assignment)
    assert whole.n_pairs == a.n_pairs + b.n_pairs


def test_cluster_loss_rewards_views_that_agree_on_distinct_clusters():
    hard = F.one_hot(torch.arange(6) % 3, 3).double()
    soft = torch.full((6, 3), 1 / 3, dtype=torch.float64)
    agree = cluster_contrastive_loss(cluster_batch_statistics(hard, hard), 1.0)
    undecided = cluster_contrastive_loss(cluster_batch_statistics(soft, soft), 1.0)
    assert undecided == pytest.approx(np.log(5))  # every other column equally similar: log(2K - 1)
    assert agree < undecided


# ---------------------------------------------------------------- the estimator
@pytest.fixture(scope="module")
def fitted(X):
    return ContrastiveClustering(max_epochs=4, warmup_epochs=1, **PARAMS).fit(X)


def test_fit_gives_consecutive_labels_that_predict_reproduces(fitted, X):
    assert fitted.labels_.shape == (len(X),)
    assert np.array_equal(np.unique(fitted.labels_), np.arange(fitted.n_clusters_))
    assert 1 <= fitted.n_clusters_ <= 5 and len(fitted.clusters_) == fitted.n_clusters_
    assert np.array_equal(fitted.predict(X), fitted.labels_)
    assert fitted.cluster_sizes_.sum() == len(X)
    assert [e["phase"] for e in fitted.history_] == ["warmup", "clustering", "clustering", "clustering"]
    assert set(fitted.history_[0]) == {"epoch", "phase", "loss", "instance_loss", "cluster_loss", "entropy", "seconds"}
    assert fitted.history_[0]["cluster_loss"] == 0 and fitted.history_[1]["cluster_loss"] > 0


def test_predict_proba_rows_sum_to_one_and_argmax_is_predict(fitted, X):
    proba = fitted.predict_proba(X[:50])
    assert proba.shape == (50, fitted.n_clusters_) and np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(axis=1), fitted.predict(X[:50]))
    assert fitted.transform(X[:7]).shape == (7, fitted.module_.backbone.output_dim)
    assert 1 / fitted.n_clusters_ <= fitted.score(X) <= 1


def test_clusters_no_training_sample_picks_are_dropped(fitted, X):
    model = pickle.loads(pickle.dumps(fitted))
    with torch.no_grad():  # make the head's columns 3 and 4 lose every argmax
        model.module_.cluster_head.layers[-1].bias[3:] -= 100.0
    model._set_clusters(None, BatchSource(X, model._spec, model.device_), True)
    assert list(model.clusters_) == [c for c in range(3) if c in set(model.clusters_)]
    assert np.array_equal(np.unique(model.labels_), np.arange(model.n_clusters_))
    assert np.array_equal(model.predict(X), model.labels_)
    assert model.predict_proba(X).shape == (len(X), model.n_clusters_)


def test_same_random_state_gives_identical_fits_and_another_does_not(X):
    a = ContrastiveClustering(max_epochs=3, warmup_epochs=1, **PARAMS).fit(X)
    b = ContrastiveClustering(max_epochs=3, warmup_epochs=1, **PARAMS).fit(X)
    c = ContrastiveClustering(max_epochs=3, warmup_epochs=1, **dict(PARAMS, random_state=1)).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    sa, sb, sc = (m.module_.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert [e["loss"] for e in a.history_] == [e["loss"] for e in b.history_]
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def _same_model(a, b):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa) and [
        {k: v for k, v in e.items() if k != "seconds"} for e in a.history_
    ] == [{k: v for k, v in e.items() if k != "seconds"} for e in b.history_]


def test_warm_start_and_partial_fit_continue_exactly(X):
    full = ContrastiveClustering(max_epochs=4, warmup_epochs=1, **PARAMS).fit(X)
    half = pickle.loads(pickle.dumps(ContrastiveClustering(max_epochs=2, warmup_epochs=1, **PARAMS).fit(X)))
    half.set_params(warm_start=True).fit(X)
    assert _same_model(half, full)
    calls = ContrastiveClustering(max_epochs=4, warmup_epochs=1, **PARAMS)
    for _ in range(4):
        calls.partial_fit(X)
    assert _same_model(calls, full)
    with pytest.raises(ValueError, match="n_clusters=6 .*fitted with 5"):
        full.set_params(warm_start=True, n_clusters=6).fit(X)


def test_interrupted_fit_resumes_from_its_checkpoint_exactly(X, tmp_path):
    params = dict(PARAMS, max_epochs=4, warmup_epochs=1)
    full = ContrastiveClustering(**params).fit(X)

    def interrupt(history):
        if len(history) == 3:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted"):
        ContrastiveClustering(checkpoint_dir=tmp_path, callbacks=[interrupt], **params).fit(X)
    resumed = ContrastiveClustering(checkpoint_dir=tmp_path, **params).fit(X)
    assert _same_model(resumed, full)
    assert np.array_equal(resumed.labels_, full.labels_)
    with pytest.raises(ValueError, match="written by ContrastiveClustering, not CoHiClust"):
        CoHiClust(checkpoint_dir=tmp_path, depth=2, max_epochs=4, backbone="mlp", random_state=0).fit(X)
    with pytest.raises(ValueError, match="other training settings .*cluster_temperature=1.0 there, 0.5 here"):
        ContrastiveClustering(checkpoint_dir=tmp_path, cluster_temperature=0.5, **params).fit(X)


def test_a_cohiclust_checkpoint_is_refused_with_a_clear_message(X, tmp_path):
    CoHiClust(checkpoint_dir=tmp_path, depth=2, max_epochs=1, backbone="mlp", random_state=0).fit(X)
    with pytest.raises(ValueError, match="written by CoHiClust, not ContrastiveClustering"):
        ContrastiveClustering(checkpoint_dir=tmp_path, max_epochs=1, **dict(PARAMS)).fit(X)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_clusters": 0}, "n_clusters must be an int >= 1"),
        ({"n_clusters": 2.5}, "n_clusters"),
        ({"cluster_temperature": 0.0}, "cluster_temperature must be a positive float"),
        ({"temperature": -1.0}, "temperature"),
        ({"entropy_weight": -0.5}, "entropy_weight must be a non-negative float"),
        ({"warmup_epochs": 3, "max_epochs": 3}, "warmup_epochs"),
        ({"lr": 0}, "lr"),
        ({"backbone": "vgg"}, "backbone"),
    ],
)
def test_bad_parameters_give_clear_errors(X, params, match):
    with pytest.raises(ValueError, match=match):
        ContrastiveClustering(**{"max_epochs": 1, **params}).fit(X[:20])


def test_vectors_and_the_default_cnn(X):
    vectors = ContrastiveClustering(n_clusters=3, max_epochs=1, random_state=0).fit(X.reshape(len(X), -1))
    assert vectors.backbone_ == "mlp" and vectors.predict(X[:5].reshape(5, -1)).shape == (5,)
    images = ContrastiveClustering(n_clusters=3, max_epochs=1, batch_size=64, random_state=0).fit(X[:128])
    assert images.backbone_ == "cnn" and images.transform(X[:3]).shape == (3, 96)
