"""Losses: NT-Xent, CoHiClust's tree terms, Contrastive Clustering's cluster-level terms, and prototype terms.

The prototype terms serve ConCURL (SwAV's Sinkhorn targets and swapped
prediction, in the embedding space and in random projections of it) and
SeCu (assignment under a global entropy constraint, the stable cluster
discrimination loss of the centres and its closed-form gradient, and the
soft-label loss of the representation).

The tree terms are computed from a handful of *batch statistics* that are
plain sums over the samples of the batch (:class:`TreeBatchStatistics`).
Every pairwise Bhattacharyya similarity of a level is a dot product of the
vectors ``q_i = sqrt(P_l(x_i) + eps)``, so the sums over all pairs, over the
positive pairs and over the self-pairs need no ``(2B)**2`` matrix and cost
``O(B * 2**depth)``.  Contrastive Clustering's cluster-level terms are
likewise functions of sums (:class:`ClusterBatchStatistics`): the cosine
similarity of two columns of the assignment matrices is a dot product over
the samples, so all of them come from one ``(2K, 2K)`` Gram matrix summed
over the batch.  Being sums, the statistics of several processes combine
with one ``all_reduce``; NT-Xent alone compares every sample with every
other and needs the projections themselves (an all-gather).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .distributed import COUNT
from .tree import column_levels, level_slice

__all__ = [
    "nt_xent",
    "TreeBatchStatistics",
    "tree_batch_statistics",
    "hierarchical_contrastive_loss",
    "balance_regularizer",
    "leaf_balance",
    "ClusterBatchStatistics",
    "cluster_batch_statistics",
    "cluster_contrastive_loss",
    "cluster_entropy_penalty",
    "prototype_scores",
    "sinkhorn_targets",
    "swapped_prediction_loss",
    "random_projection_scores",
    "consensus_loss",
    "entropy_constrained_assignment",
    "stable_cluster_discrimination_loss",
    "stable_center_gradient",
    "soft_label_loss",
]

#: Added under the square root of the node probabilities (keeps gradients finite at 0).
SQRT_EPS = 1e-8
#: Lower bound of the batch-mean node probabilities inside the logarithm.
LOG_EPS = 1e-8


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross entropy (NT-Xent).

    Parameters
    ----------
    z1, z2 : torch.Tensor
        Projections of the two views, shape ``(B, dim)``; row ``i`` of both is
        the positive pair.
    temperature : float
        Softmax temperature.

    Returns
    -------
    torch.Tensor
        Scalar: mean over the ``2B`` views of the cross entropy of finding the
        other view among the ``2B - 1`` others.
    """
    batch = z1.shape[0]
    z = F.normalize(torch.cat((z1, z2)).float(), dim=1)
    logits = (z @ z.T) / temperature
    eye = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(eye, float("-inf"))
    index = torch.arange(batch, device=z.device)
    targets = torch.cat((index + batch, index))
    return F.cross_entropy(logits, targets)


@dataclass
class TreeBatchStatistics:
    """Sums over one batch from which the tree losses follow.

    All tensors are per column of the level-major node layout (see
    :mod:`skcohiclust.tree`).

    Parameters
    ----------
    sum_q : torch.Tensor
        ``sum_i q_i`` over all ``2B`` views.
    sum_q_squared : torch.Tensor
        ``sum_i q_i**2`` (the self-pairs).
    sum_positive : torch.Tensor
        ``sum_i q_i * q_{i+B}`` (one term per positive pair).
    sum_mass : torch.Tensor
        ``sum_i P(x_i)`` over all views (the regulariser's batch mass).
    n_pairs : int
        ``B``, the number of positive pairs.
    """

    sum_q: torch.Tensor
    sum_q_squared: torch.Tensor
    sum_positive: torch.Tensor
    sum_mass: torch.Tensor
    n_pairs: int = field(metadata=COUNT)


def tree_batch_statistics(
    node_prob_1: torch.Tensor, node_prob_2: torch.Tensor, node_mask: torch.Tensor | None = None
) -> TreeBatchStatistics:
    """Batch statistics of the node probabilities of two views.

    Parameters
    ----------
    node_prob_1, node_prob_2 : torch.Tensor
        Shape ``(B, 2**(depth + 1) - 2)``: node probabilities (level-major)
        of the first and second view of the same ``B`` samples.
    node_mask : torch.Tensor, optional
        Boolean per column; pruned nodes are zeroed and take no part.

    Returns
    -------
    TreeBatchStatistics
    """
    prob = torch.cat((node_prob_1, node_prob_2))
    prob = prob.to(torch.promote_types(prob.dtype, torch.float32))  # half precision -> float32
    if node_mask is not None:
        prob = prob * node_mask
    q = torch.sqrt(prob + SQRT_EPS)
    if node_mask is not None:
        q = q * node_mask
    batch = node_prob_1.shape[0]
    return TreeBatchStatistics(
        sum_q=q.sum(dim=0),
        sum_q_squared=(q * q).sum(dim=0),
        sum_positive=(q[:batch] * q[batch:]).sum(dim=0),
        sum_mass=prob.sum(dim=0),
        n_pairs=batch,
    )


@functools.lru_cache(maxsize=32)
def _column_levels(depth: int, device: torch.device) -> torch.Tensor:
    # built once per depth and device: repeat_interleave would synchronise a GPU on every step
    return column_levels(depth, device=device)


def _per_level(values: torch.Tensor, depth: int) -> torch.Tensor:
    levels = _column_levels(depth, values.device) - 1
    return torch.zeros(depth, dtype=values.dtype, device=values.device).index_add_(0, levels, values)


def hierarchical_contrastive_loss(stats: TreeBatchStatistics, depth: int) -> torch.Tensor:
    """CoHiClust's hierarchical contrastive loss from batch statistics.

    For each level ``l``, with ``s_l`` the Bhattacharyya coefficient,
    ``-mean_{positive pairs} s_l + mean_{negative pairs} s_l``, summed over
    levels ``1..depth``.  Negative pairs are the ordered pairs of distinct
    views that are not two views of one sample: ``2B(2B - 2)`` of them.

    Parameters
    ----------
    stats : TreeBatchStatistics
        From :func:`tree_batch_statistics`.
    depth : int
        Depth of the tree.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    batch = stats.n_pairs
    if batch < 2:
        raise ValueError("the hierarchical contrastive loss needs at least 2 samples per batch.")
    all_pairs = _per_level(stats.sum_q * stats.sum_q, depth)
    self_pairs = _per_level(stats.sum_q_squared, depth)
    positive = _per_level(stats.sum_positive, depth)
    negative = all_pairs - self_pairs - 2.0 * positive
    n_views = 2 * batch
    positive_mean = positive / batch
    negative_mean = negative / (n_views * (n_views - 2))
    return (negative_mean - positive_mean).sum()


def balance_regularizer(stats: TreeBatchStatistics, depth: int, node_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Balance regulariser that keeps both children of every node in use.

    ``R = sum over sibling pairs of -2**(-l) * (log m_left + log m_right) / 2``
    where ``m`` are the batch-mean node probabilities and ``l`` is the level
    of the two siblings (1 for the root's children), as in the published
    code.  Pairs with a pruned child are left out.

    Parameters
    ----------
    stats : TreeBatchStatistics
        From :func:`tree_batch_statistics`.
    depth : int
        Depth of the tree.
    node_mask : torch.Tensor, optional
        Boolean per column of the level-major layout.

    Returns
    -------
    torch.Tensor
        Scalar, not yet multiplied by the objective's weight ``2**(-depth)``.
    """
    mean_mass = stats.sum_mass / (2 * stats.n_pairs)
    pairs = torch.log(mean_mass.clamp_min(LOG_EPS)).reshape(-1, 2)
    child_level = _column_levels(depth, pairs.device)[0::2]
    weight = torch.pow(2.0, -child_level.to(pairs.dtype))
    if node_mask is not None:
        weight = weight * node_mask.reshape(-1, 2).all(dim=1)
    return -(weight * pairs.mean(dim=1)).sum()


def leaf_balance(stats: TreeBatchStatistics, depth: int, node_mask: torch.Tensor | None = None) -> torch.Tensor:
    """How far the batch's leaf mass is from uniform over the active leaves.

    ``KL(m || u) = sum over active leaves of m_k * log(K * m_k)``, where ``m``
    is the batch-mean leaf probability and ``u`` the uniform distribution
    over the ``K`` active leaves: zero when every leaf takes an equal share,
    as SCAN's entropy term asks of flat clusters.  The paper's
    :func:`balance_regularizer` balances the two children of every node:
    in a full tree its optimum is equal leaves too, but in a tree with
    pruned or collapsed subtrees its optimum depends on the tree's shape
    (for the 10 leaves a k-means start arranged on Fashion-MNIST, shares
    from 0.084 to 0.126), and its weight ``2**-depth`` is small.

    Parameters
    ----------
    stats : TreeBatchStatistics
        From :func:`tree_batch_statistics`, given the same ``node_mask``.
    depth : int
        Depth of the tree.
    node_mask : torch.Tensor, optional
        Boolean per column of the level-major layout; its last level is the
        leaf mask.

    Returns
    -------
    torch.Tensor
        Scalar, ``>= 0`` up to rounding.
    """
    mass = stats.sum_mass[level_slice(depth)]  # masked leaves hold 0 (tree_batch_statistics zeroes them)
    active = torch.ones_like(mass, dtype=torch.bool) if node_mask is None else node_mask[level_slice(depth)].bool()
    share = mass / mass.sum().clamp_min(LOG_EPS)
    n_active = active.sum().to(share.dtype)
    return torch.where(active, share * torch.log((share * n_active).clamp_min(LOG_EPS)), torch.zeros_like(share)).sum()


@dataclass
class ClusterBatchStatistics:
    """Sums over one batch from which Contrastive Clustering's cluster-level terms follow.

    With ``Y1`` and ``Y2`` the ``(B, K)`` cluster probabilities of the two
    views and ``C = [Y1, Y2]`` their ``(B, 2K)`` concatenation (column ``k``
    is cluster ``k`` of the first view, column ``K + k`` of the second):

    Parameters
    ----------
    gram : torch.Tensor
        ``C.T @ C``, shape ``(2K, 2K)``: ``sum_i c_i c_i^T`` over the
        samples, the dot products of every pair of columns.
    sum_assignment : torch.Tensor
        Shape ``(2, K)``: the column sums of ``Y1`` and ``Y2``.
    n_pairs : int
        ``B``, the number of samples.
    """

    gram: torch.Tensor
    sum_assignment: torch.Tensor
    n_pairs: int = field(metadata=COUNT)


def cluster_batch_statistics(assign_1: torch.Tensor, assign_2: torch.Tensor) -> ClusterBatchStatistics:
    """Batch statistics of the cluster probabilities of two views.

    Parameters
    ----------
    assign_1, assign_2 : torch.Tensor
        Shape ``(B, K)``: cluster probabilities (rows sum to 1) of the first
        and second view of the same ``B`` samples.

    Returns
    -------
    ClusterBatchStatistics
    """
    columns = torch.cat((assign_1, assign_2), dim=1)
    columns = columns.to(torch.promote_types(columns.dtype, torch.float32))
    return ClusterBatchStatistics(
        gram=columns.T @ columns,
        sum_assignment=torch.stack((columns[:, : assign_1.shape[1]].sum(0), columns[:, assign_1.shape[1] :].sum(0))),
        n_pairs=assign_1.shape[0],
    )


def cluster_contrastive_loss(stats: ClusterBatchStatistics, temperature: float) -> torch.Tensor:
    """Contrastive Clustering's cluster-level contrastive loss, from batch statistics.

    Every column of the assignment matrices (a cluster, as the vector of
    its probabilities over the batch's samples) is contrasted with the
    other ``2K - 1`` columns of both views: the same cluster in the other
    view is its positive, by the cosine similarity over ``temperature``.
    The loss is the mean over the ``2K`` columns of the cross entropy of
    finding the positive (NT-Xent over columns, the column itself left out
    of its denominator, as in the authors' code; the paper's formula also
    lists it there).

    Parameters
    ----------
    stats : ClusterBatchStatistics
        From :func:`cluster_batch_statistics`.
    temperature : float
        The cluster-level temperature (1.0 in the paper).

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    gram = stats.gram
    n_columns = gram.shape[0]
    k = n_columns // 2
    norm = torch.sqrt(gram.diagonal().clamp_min(LOG_EPS))
    logits = gram / (norm[:, None] * norm[None, :]) / temperature
    eye = torch.eye(n_columns, dtype=torch.bool, device=gram.device)
    logits = logits.masked_fill(eye, float("-inf"))
    index = torch.arange(k, device=gram.device)
    return F.cross_entropy(logits, torch.cat((index + k, index)))


def cluster_entropy_penalty(stats: ClusterBatchStatistics) -> torch.Tensor:
    """How far each view's batch-mean cluster probabilities are from uniform: ``sum_v (log K - H(p_v))``.

    ``p_v`` is the batch-mean cluster probability of view ``v`` (its column
    sums over their total) and ``H`` the entropy.  Contrastive Clustering
    subtracts ``H(p_1) + H(p_2)`` from its loss to keep every cluster in
    use; adding ``log K`` per view changes no gradient and makes the term
    ``>= 0``, zero when both views spread their samples evenly (it is the
    KL divergence of ``p_v`` from uniform, summed over the views).

    Parameters
    ----------
    stats : ClusterBatchStatistics
        From :func:`cluster_batch_statistics`.

    Returns
    -------
    torch.Tensor
        Scalar, ``>= 0`` up to rounding.
    """
    share = stats.sum_assignment / stats.sum_assignment.sum(dim=1, keepdim=True).clamp_min(LOG_EPS)
    k = share.shape[1]
    return (math.log(k) + (share * torch.log(share.clamp_min(LOG_EPS))).sum(dim=1)).sum()


# ---------------------------------------------------------------------------- prototype terms (ConCURL, SeCu)
def prototype_scores(embedding: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every sample with every prototype.

    Parameters
    ----------
    embedding : torch.Tensor
        Shape ``(B, d)`` (not necessarily normalised).
    prototypes : torch.Tensor
        Shape ``(K, d)`` (not necessarily normalised).

    Returns
    -------
    torch.Tensor
        Shape ``(B, K)``, in ``[-1, 1]``, float32 or wider.
    """
    z = F.normalize(_at_least_float32(embedding), dim=-1)
    c = F.normalize(_at_least_float32(prototypes), dim=-1)
    return z @ c.T


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


@torch.no_grad()
def sinkhorn_targets(scores: torch.Tensor, epsilon: float = 0.05, n_iterations: int = 3) -> torch.Tensor:
    """SwAV's balanced soft targets: Sinkhorn-Knopp on ``exp(scores / epsilon)``.

    The matrix is scaled in turn so that every cluster holds ``1/K`` of the
    mass and every sample ``1/B``, ``n_iterations`` times, and its rows are
    returned normalised (each a distribution over the clusters).  No
    gradient flows through the targets.

    Parameters
    ----------
    scores : torch.Tensor
        Shape ``(B, K)``: similarities of the samples to the prototypes.
    epsilon : float, default=0.05
        Entropic regularisation (smaller: harder targets).
    n_iterations : int, default=3
        Sinkhorn iterations.

    Returns
    -------
    torch.Tensor
        Shape ``(B, K)``, rows sum to 1, detached.
    """
    scores = _at_least_float32(scores.detach())
    q = torch.exp((scores - scores.max()) / epsilon)
    q = q / q.sum()
    batch, k = q.shape
    for _ in range(n_iterations):
        q = q / (q.sum(dim=0, keepdim=True) * k)
        q = q / (q.sum(dim=1, keepdim=True) * batch)
    return q / q.sum(dim=1, keepdim=True)


def swapped_prediction_loss(
    scores_1: torch.Tensor,
    scores_2: torch.Tensor,
    targets_1: torch.Tensor,
    targets_2: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """Each view predicts the other's targets: ``-(q_2·log p_1 + q_1·log p_2) / 2``, averaged.

    ``p_v = softmax(scores_v / temperature)`` over the last axis.  Leading
    axes beyond the samples (e.g. random projections, shape ``(M, B, K)``)
    are averaged too, the targets broadcast over them.

    Parameters
    ----------
    scores_1, scores_2 : torch.Tensor
        Shape ``(..., B, K)``: scores of the two views.
    targets_1, targets_2 : torch.Tensor
        Shape ``(B, K)``: the views' targets (rows sum to 1).
    temperature : float
        Softmax temperature.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    log_p1 = F.log_softmax(scores_1 / temperature, dim=-1)
    log_p2 = F.log_softmax(scores_2 / temperature, dim=-1)
    return -((targets_2 * log_p1).sum(dim=-1).mean() + (targets_1 * log_p2).sum(dim=-1).mean()) / 2


def random_projection_scores(
    embedding: torch.Tensor, prototypes: torch.Tensor, projections: torch.Tensor
) -> torch.Tensor:
    """Cosine similarities of samples and prototypes in each of ``M`` randomly projected spaces.

    Parameters
    ----------
    embedding : torch.Tensor
        Shape ``(B, d)``.
    prototypes : torch.Tensor
        Shape ``(K, d)``.
    projections : torch.Tensor
        Shape ``(M, d, d_m)``: the linear maps.

    Returns
    -------
    torch.Tensor
        Shape ``(M, B, K)``: ``cos(z R_m, c_k R_m)``.
    """
    z = F.normalize(torch.einsum("bd,mde->mbe", _at_least_float32(embedding), projections), dim=-1)
    c = F.normalize(torch.einsum("kd,mde->mke", _at_least_float32(prototypes), projections), dim=-1)
    return torch.einsum("mbe,mke->mbk", z, c)


def consensus_loss(
    embedding_1: torch.Tensor,
    embedding_2: torch.Tensor,
    prototypes: torch.Tensor,
    projections: torch.Tensor,
    targets_1: torch.Tensor,
    targets_2: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """ConCURL's consensus loss: every random-projection clustering of a view predicts the other view's targets.

    The embedding and the (fixed, detached) prototypes are mapped by each
    random projection ``R_m``; the soft assignments there,
    ``softmax(cos(z R_m, c R_m) / temperature)``, of view 1 should match the
    Sinkhorn targets of view 2 in the embedding space, and back:
    :func:`swapped_prediction_loss` averaged over the ``M`` projections.

    Parameters
    ----------
    embedding_1, embedding_2 : torch.Tensor
        Shape ``(B, d)``: the two views' embeddings.
    prototypes : torch.Tensor
        Shape ``(K, d)``; no gradient reaches them through this loss.
    projections : torch.Tensor
        Shape ``(M, d, d_m)``.
    targets_1, targets_2 : torch.Tensor
        Shape ``(B, K)``: the views' targets (:func:`sinkhorn_targets`).
    temperature : float
        Softmax temperature.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    fixed = prototypes.detach()
    scores_1 = random_projection_scores(embedding_1, fixed, projections)
    scores_2 = random_projection_scores(embedding_2, fixed, projections)
    return swapped_prediction_loss(scores_1, scores_2, targets_1, targets_2, temperature)


def _plogp(p: torch.Tensor) -> torch.Tensor:
    return torch.where(p > 0, p * torch.log(p.clamp_min(1e-30)), torch.zeros_like(p))


@torch.no_grad()
def entropy_constrained_assignment(
    cost: torch.Tensor, counts: torch.Tensor, current: torch.Tensor, alpha: float
) -> torch.Tensor:
    """SeCu's assignment under the global entropy constraint, one batch at once.

    The objective is ``sum_i cost[i, y_i] + alpha * sum_k p_k log p_k``
    with ``p_k`` the share of the assigned samples in cluster ``k`` (the
    penalty is the negative entropy of the cluster sizes).  Every sample of
    the batch moves to the cluster that lowers it most given the current
    ``counts``: ``argmin_k cost[i, k] + alpha * delta[i, k]``, where
    ``delta[i, k]`` is the change of ``sum p log p`` when sample ``i``
    leaves its current cluster (if any) for ``k`` (0 for staying).  A
    sample without a cluster yet counts as joining ``n + 1`` assigned
    samples.

    Parameters
    ----------
    cost : torch.Tensor
        Shape ``(B, K)``: cost of each cluster for each sample.
    counts : torch.Tensor
        Shape ``(K,)``: samples currently assigned to each cluster.
    current : torch.Tensor
        Shape ``(B,)``, int: each sample's current cluster, ``-1`` for none.
    alpha : float
        Weight of the constraint.

    Returns
    -------
    torch.Tensor
        Shape ``(B,)``, int64: the new clusters.
    """
    cost = _at_least_float32(cost)
    counts = counts.to(cost.dtype)
    k = cost.shape[1]
    assigned = (current >= 0)[:, None]
    total = torch.where(assigned, counts.sum(), counts.sum() + 1).clamp_min(1)
    join = _plogp((counts + 1) / total) - _plogp(counts / total)
    old = current.clamp_min(0).long()
    n_old = counts[old][:, None]
    leave = torch.where(assigned, _plogp((n_old - 1) / total) - _plogp(n_old / total), torch.zeros_like(n_old))
    delta = (join + leave).masked_fill(assigned & F.one_hot(old, k).bool(), 0.0)
    return torch.argmin(cost + alpha * delta, dim=1)


def stable_cluster_discrimination_loss(
    features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """SeCu's stable cluster discrimination loss of the cluster centres.

    The cross entropy of each sample's assigned centre among all centres,
    ``-log softmax(x_i·w / temperature)[y_i]``, in which only the assigned
    (positive) centre carries a gradient: a centre is moved by the samples
    assigned to it and never pushed by the others (the negatives), and the
    features get no gradient.  Its gradient is
    :func:`stable_center_gradient`.

    Parameters
    ----------
    features : torch.Tensor
        Shape ``(B, d)``: normalised representations (detached here).
    centers : torch.Tensor
        Shape ``(K, d)``: normalised centres.
    labels : torch.Tensor
        Shape ``(B,)``: assigned clusters.
    temperature : float
        The centres' temperature.

    Returns
    -------
    torch.Tensor
        Scalar, mean over the samples.
    """
    logits = _at_least_float32(features).detach() @ _at_least_float32(centers).T / temperature
    positive = F.one_hot(labels, centers.shape[0]).bool()
    logits = torch.where(positive, logits, logits.detach())
    return F.cross_entropy(logits, labels)


@torch.no_grad()
def stable_center_gradient(
    features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Closed-form gradient of :func:`stable_cluster_discrimination_loss` with respect to the centres.

    ``-(1 / (B * temperature)) * sum_{i: y_i = k} (1 - p_ik) x_i`` for centre
    ``k``, with ``p_ik`` the softmax probability of centre ``k`` for sample
    ``i``: the hardness-aware weights of the paper (a sample the centre
    already wins gets little weight).

    Parameters
    ----------
    features : torch.Tensor
        Shape ``(B, d)``.
    centers : torch.Tensor
        Shape ``(K, d)``.
    labels : torch.Tensor
        Shape ``(B,)``.
    temperature : float
        The centres' temperature.

    Returns
    -------
    torch.Tensor
        Shape ``(K, d)``.
    """
    features, centers = _at_least_float32(features), _at_least_float32(centers)
    p = torch.softmax(features @ centers.T / temperature, dim=1)
    weights = F.one_hot(labels, centers.shape[0]).to(p.dtype) * (1 - p)
    return -(weights.T @ features) / (features.shape[0] * temperature)


def soft_label_loss(
    scores_1: torch.Tensor, scores_2: torch.Tensor, labels: torch.Tensor, label_weight: float, temperature: float
) -> torch.Tensor:
    """SeCu's representation loss: cross entropy with the assigned cluster mixed with the other view's prediction.

    The target of view 1 is ``label_weight * onehot(y) + (1 - label_weight)
    * softmax(scores_2 / temperature)`` (detached), and back; the loss is
    the mean of the two views' cross entropies against
    ``softmax(scores_v / temperature)``.

    Parameters
    ----------
    scores_1, scores_2 : torch.Tensor
        Shape ``(B, K)``: similarities of the two views to the (fixed) centres.
    labels : torch.Tensor
        Shape ``(B,)``: assigned clusters.
    label_weight : float
        Weight of the one-hot label in the targets (``tau`` of the paper).
    temperature : float
        Softmax temperature.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    onehot = F.one_hot(labels, scores_1.shape[1]).to(scores_1.dtype)
    with torch.no_grad():
        target_1 = label_weight * onehot + (1 - label_weight) * torch.softmax(scores_2 / temperature, dim=1)
        target_2 = label_weight * onehot + (1 - label_weight) * torch.softmax(scores_1 / temperature, dim=1)
    log_p1 = F.log_softmax(scores_1 / temperature, dim=1)
    log_p2 = F.log_softmax(scores_2 / temperature, dim=1)
    return -((target_1 * log_p1).sum(dim=1).mean() + (target_2 * log_p2).sum(dim=1).mean()) / 2
