"""ConCURL and SeCu: their losses against direct computations, and the estimators on the shared engine."""

import math
import pickle

import numpy as np
import pytest
import torch

from skcohiclust import ConCURL, SeCu
from skcohiclust.losses import (
    consensus_loss,
    entropy_constrained_assignment,
    prototype_scores,
    sinkhorn_targets,
    soft_label_loss,
    stable_center_gradient,
    stable_cluster_discrimination_loss,
    swapped_prediction_loss,
)

PARAMS = dict(n_clusters=5, backbone="mlp", batch_size=64, random_state=0)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def X(small_digits):
    return small_digits[0]


def _rand(*shape, seed=0, grad=True):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64, requires_grad=grad)


def _cos(a, b):
    return (a @ b) / (a.norm() * b.norm())


def _softmax(values, temperature):
    exps = [torch.exp(v / temperature) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


# ---------------------------------------------------------------- ConCURL's terms
def direct_sinkhorn(scores, epsilon, iterations):
    """Sinkhorn-Knopp written with explicit row and column sums."""
    q = np.exp(scores / epsilon)
    q = q / q.sum()
    b, k = q.shape
    for _ in range(iterations):
        for j in range(k):
            q[:, j] = q[:, j] / (q[:, j].sum() * k)
        for i in range(b):
            q[i, :] = q[i, :] / (q[i, :].sum() * b)
    return q / q.sum(axis=1, keepdims=True)


def test_sinkhorn_targets_match_the_direct_computation_and_balance_the_clusters():
    scores = _rand(12, 4, seed=1, grad=False).clamp(-1, 1)
    ours = sinkhorn_targets(scores, 0.05, 3)
    np.testing.assert_allclose(ours.numpy(), direct_sinkhorn(scores.numpy(), 0.05, 3), rtol=1e-8)
    np.testing.assert_allclose(ours.sum(1).numpy(), 1.0, rtol=1e-10)
    many = sinkhorn_targets(scores, 0.5, 50)
    np.testing.assert_allclose(many.sum(0).numpy(), 12 / 4, rtol=1e-4)  # balanced when converged


def direct_swapped(s1, s2, q1, q2, temperature):
    total = 0.0
    for i in range(s1.shape[0]):
        p1 = _softmax(list(s1[i]), temperature)
        p2 = _softmax(list(s2[i]), temperature)
        for k in range(s1.shape[1]):
            total = total - q2[i, k] * torch.log(p1[k]) - q1[i, k] * torch.log(p2[k])
    return total / (2 * s1.shape[0])


def direct_scores(e, c):
    return torch.stack([torch.stack([_cos(e[i], c[k]) for k in range(c.shape[0])]) for i in range(e.shape[0])])


def test_population_loss_and_gradient_match_the_direct_computation():
    e1, e2, c = _rand(6, 5, seed=2), _rand(6, 5, seed=3), _rand(3, 5, seed=4)
    s1, s2 = prototype_scores(e1, c), prototype_scores(e2, c)
    q1, q2 = sinkhorn_targets(s1), sinkhorn_targets(s2)
    ours = swapped_prediction_loss(s1, s2, q1, q2, 0.1)
    direct = direct_swapped(direct_scores(e1, c), direct_scores(e2, c), q1, q2, 0.1)
    torch.testing.assert_close(ours, direct, rtol=1e-10, atol=1e-12)
    grads = torch.autograd.grad(ours, (e1, e2, c), retain_graph=True)
    expected = torch.autograd.grad(direct, (e1, e2, c))
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
        assert a.abs().max() > 1e-6


def test_consensus_loss_and_gradient_match_a_loop_over_the_projections():
    e1, e2, c = _rand(5, 6, seed=5), _rand(5, 6, seed=6), _rand(3, 6, seed=7)
    projections = _rand(4, 6, 2, seed=8, grad=False)
    q1, q2 = sinkhorn_targets(prototype_scores(e1, c)), sinkhorn_targets(prototype_scores(e2, c))
    ours = consensus_loss(e1, e2, c, projections, q1, q2, 0.2)
    direct = 0.0
    for r in projections:
        fixed = c.detach() @ r
        direct = direct + direct_swapped(direct_scores(e1 @ r, fixed), direct_scores(e2 @ r, fixed), q1, q2, 0.2)
    direct = direct / len(projections)
    torch.testing.assert_close(ours, direct, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (e1, e2), retain_graph=True)
    g_direct = torch.autograd.grad(direct, (e1, e2))
    for a, b in zip(g_ours, g_direct, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)
    (g_c,) = torch.autograd.grad(ours, c, allow_unused=True)
    assert g_c is None or torch.all(g_c == 0)  # the prototypes get no gradient from the consensus


# ---------------------------------------------------------------- SeCu's terms
def direct_assignment(cost, counts, current, alpha):
    """Try every cluster for every sample: the change of sum p log p written out.

    An assigned sample moves within ``n`` samples; an unassigned one joins, and the shares are over ``n + 1``.
    """

    def plogp(sizes, total):
        return sum((n / total) * math.log(n / total) for n in sizes if n > 0)

    labels = []
    for i in range(cost.shape[0]):
        total = sum(counts) + (0 if current[i] >= 0 else 1)
        values = []
        for k in range(cost.shape[1]):
            after = list(counts)
            if current[i] >= 0:
                after[current[i]] -= 1
            after[k] += 1
            values.append(cost[i, k] + alpha * (plogp(after, total) - plogp(counts, total)))
        labels.append(int(np.argmin(values)))
    return labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_entropy_constrained_assignment_matches_trying_every_cluster(seed):
    generator = np.random.default_rng(seed)
    cost = generator.normal(size=(8, 4))
    counts = [5, 1, 9, 3]
    current = [0, 2, -1, 2, 3, -1, 1, 0]
    for alpha in (0.0, 3.0, 30.0):
        ours = entropy_constrained_assignment(
            torch.tensor(cost), torch.tensor(counts, dtype=torch.float64), torch.tensor(current), alpha
        )
        assert ours.tolist() == direct_assignment(cost, counts, current, alpha)
    # a strong constraint sends unassigned samples to the smallest cluster
    sizes, unassigned = torch.tensor([5.0, 1, 9, 3]), torch.tensor([-1, -1])
    strong = entropy_constrained_assignment(torch.zeros(2, 4), sizes, unassigned, 1e3)
    assert strong.tolist() == [1, 1]


def direct_center_loss(x, w, labels, temperature):
    total = 0.0
    for i in range(x.shape[0]):
        logits = [(x[i].detach() @ (w[k] if k == labels[i] else w[k].detach())) for k in range(w.shape[0])]
        total = total - torch.log(_softmax(logits, temperature)[labels[i]])
    return total / x.shape[0]


def test_stable_center_loss_its_gradient_and_the_closed_form_match_the_direct_computation():
    x = torch.nn.functional.normalize(_rand(7, 4, seed=9, grad=False), dim=1).requires_grad_(True)
    w = torch.nn.functional.normalize(_rand(3, 4, seed=10, grad=False), dim=1).requires_grad_(True)
    labels = torch.tensor([0, 2, 2, 1, 0, 0, 2])
    ours = stable_cluster_discrimination_loss(x, w, labels, 0.05)
    direct = direct_center_loss(x, w, labels, 0.05)
    torch.testing.assert_close(ours, direct, rtol=1e-10, atol=1e-12)
    (g_ours,) = torch.autograd.grad(ours, w, retain_graph=True)
    (g_direct,) = torch.autograd.grad(direct, w)
    torch.testing.assert_close(g_ours, g_direct, rtol=1e-8, atol=1e-12)
    torch.testing.assert_close(stable_center_gradient(x, w, labels, 0.05), g_direct, rtol=1e-8, atol=1e-12)
    (g_x,) = torch.autograd.grad(ours, x, allow_unused=True)
    assert g_x is None or torch.all(g_x == 0)
    # the closed form by hand: -(1/(B t)) sum over the assigned samples of (1 - p) x
    p = torch.softmax(x @ w.T / 0.05, dim=1)
    hand = torch.stack([-sum((1 - p[i, k]) * x[i] for i in range(7) if labels[i] == k) / (7 * 0.05) for k in range(3)])
    torch.testing.assert_close(stable_center_gradient(x, w, labels, 0.05), hand.detach(), rtol=1e-8, atol=1e-12)


def test_soft_label_loss_and_gradient_match_the_direct_computation():
    s1, s2 = _rand(5, 3, seed=11), _rand(5, 3, seed=12)
    labels = torch.tensor([2, 0, 1, 1, 0])
    ours = soft_label_loss(s1, s2, labels, 0.2, 0.5)
    total = 0.0
    for i in range(5):
        p1, p2 = _softmax(list(s1[i]), 0.5), _softmax(list(s2[i]), 0.5)
        for k in range(3):
            hot = 1.0 if labels[i] == k else 0.0
            t1 = 0.2 * hot + 0.8 * p2[k].detach()
            t2 = 0.2 * hot + 0.8 * p1[k].detach()
            total = total - t1 * torch.log(p1[k]) - t2 * torch.log(p2[k])
    direct = total / 10
    torch.testing.assert_close(ours, direct, rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (s1, s2), retain_graph=True)
    g_direct = torch.autograd.grad(direct, (s1, s2))
    for a, b in zip(g_ours, g_direct, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------- the estimators
ESTIMATORS = [ConCURL, SeCu]


def _same_model(a, b):
    sa, sb = a.module_.state_dict(), b.module_.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa) and [
        {k: v for k, v in e.items() if k != "seconds"} for e in a.history_
    ] == [{k: v for k, v in e.items() if k != "seconds"} for e in b.history_]


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_fit_predict_and_the_history(cls, X):
    model = cls(max_epochs=3, warmup_epochs=1, **PARAMS).fit(X)
    assert np.array_equal(np.unique(model.labels_), np.arange(model.n_clusters_))
    assert np.array_equal(model.predict(X), model.labels_)
    proba = model.predict_proba(X[:20])
    assert proba.shape == (20, model.n_clusters_)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert model.transform(X[:4]).shape[0] == 4
    assert [e["phase"] for e in model.history_] == ["warmup", "clustering", "clustering"]
    assert model.history_[0]["loss"] > 0 and np.isfinite(model.history_[-1]["loss"])
    assert 1 <= model.n_clusters_ <= 5


def test_secu_centres_are_moved_by_their_rule_not_by_the_optimiser(X):
    model = SeCu(max_epochs=2, **PARAMS).fit(X)
    centres = model.module_.cluster_head.prototypes
    assert not centres.requires_grad and "cluster_head.prototypes" in model.module_.state_dict()
    torch.testing.assert_close(centres.norm(dim=1), torch.ones(5), rtol=1e-5, atol=1e-6)
    assignments = model._training_state.state["secu_assignments"]
    assert len(assignments) == len(X) and assignments.min() >= 0
    assert model.history_[-1]["smallest_cluster"] > 0  # the entropy constraint keeps every cluster in use


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_same_random_state_gives_identical_fits(cls, X):
    a = cls(max_epochs=2, **PARAMS).fit(X)
    b = cls(max_epochs=2, **PARAMS).fit(X)
    c = cls(max_epochs=2, **dict(PARAMS, random_state=1)).fit(X)
    assert _same_model(a, b) and np.array_equal(a.labels_, b.labels_)
    assert not _same_model(a, c)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_warm_start_partial_fit_and_resume_continue_exactly(cls, X, tmp_path):
    full = cls(max_epochs=3, **PARAMS).fit(X)
    half = pickle.loads(pickle.dumps(cls(max_epochs=1, **PARAMS).fit(X)))
    half.set_params(max_epochs=2, warm_start=True).fit(X)
    assert _same_model(half, full)
    calls = cls(max_epochs=3, **PARAMS)
    for _ in range(3):
        calls.partial_fit(X)
    assert _same_model(calls, full)

    def interrupt(history):
        if len(history) == 2:
            raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted"):
        cls(max_epochs=3, checkpoint_dir=tmp_path, callbacks=[interrupt], **PARAMS).fit(X)
    resumed = cls(max_epochs=3, checkpoint_dir=tmp_path, **PARAMS).fit(X)
    assert _same_model(resumed, full)


@pytest.mark.parametrize(
    "cls, params, match",
    [
        (ConCURL, {"n_projections": 0}, "n_projections"),
        (ConCURL, {"sinkhorn_epsilon": 0.0}, "sinkhorn_epsilon"),
        (ConCURL, {"consensus_weight": -1.0}, "consensus_weight"),
        (SeCu, {"label_weight": 1.5}, "label_weight"),
        (SeCu, {"center_temperature": 0.0}, "center_temperature"),
        (SeCu, {"n_clusters": 0}, "n_clusters"),
    ],
)
def test_bad_parameters_give_clear_errors(cls, params, match, X):
    with pytest.raises(ValueError, match=match):
        cls(max_epochs=1, **params).fit(X[:20])
