"""Objectives on a prototype head: ConCURL (Deshmukh et al. 2021) and SeCu (Qian, ICCV 2023)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..losses import (
    consensus_loss,
    entropy_constrained_assignment,
    nt_xent,
    prototype_scores,
    sinkhorn_targets,
    soft_label_loss,
    stable_center_gradient,
    stable_cluster_discrimination_loss,
    swapped_prediction_loss,
)
from ..networks import FlatClusteringNetwork, PrototypeHead
from .base import Objective

__all__ = ["ConCURLObjective", "SeCuObjective", "PrototypeStatistics", "SeCuStatistics"]


def _prototype_network(backbone, projection_dim, input_mean, input_std, **head):
    return FlatClusteringNetwork(
        backbone.module,
        backbone.dim,
        projection_dim,
        functools.partial(PrototypeHead, **head),
        input_mean,
        input_std,
        backbone.input_size,
        backbone.channels_last,
    )


@dataclass
class PrototypeStatistics:
    """What ConCURL's loss reads from one batch (per-sample tensors: a data-parallel run all-gathers them).

    Parameters
    ----------
    projection_1, projection_2 : torch.Tensor
        Projections of the two views, float32, ``(B, projection_dim)``.
    embedding_1, embedding_2 : torch.Tensor
        The prototype head's embeddings of the two views, ``(B, embedding_dim)``.
    prototypes : torch.Tensor
        The head's prototypes ``(K, embedding_dim)``, with gradients.
    """

    projection_1: torch.Tensor
    projection_2: torch.Tensor
    embedding_1: torch.Tensor
    embedding_2: torch.Tensor
    prototypes: torch.Tensor


class _PrototypeObjective(Objective):
    """What ConCURL's and SeCu's objectives share: a head of ``n_clusters`` prototypes in ``embedding_dim``."""

    def architecture(self) -> dict:
        """The settings that shape the prototype head.

        Returns
        -------
        dict
            ``n_clusters`` and ``embedding_dim``.
        """
        return {"n_clusters": self.n_clusters, "embedding_dim": self.embedding_dim}


class ConCURLObjective(_PrototypeObjective):
    """ConCURL: exemplar, population and consensus consistency.

    The loss after the warm-up is ``exemplar_weight * NT-Xent +
    population_weight * population + consensus_weight * consensus``:

    * exemplar: :func:`~skcohiclust.losses.nt_xent` between the views'
      projections;
    * population: :func:`~skcohiclust.losses.swapped_prediction_loss` of the
      cosine scores to the learnable prototypes against the other view's
      :func:`~skcohiclust.losses.sinkhorn_targets`;
    * consensus: :func:`~skcohiclust.losses.consensus_loss`, the same
      swapped prediction by the clusterings in ``n_projections`` random
      Gaussian projections of the embedding and the prototypes, drawn
      afresh every epoch (from the run's seed and the epoch number, so a
      resumed run draws the same ones).

    Warm-up epochs train NT-Xent alone.

    Parameters
    ----------
    n_clusters : int
        Number of prototypes.
    embedding_dim : int, default=128
        Size of the prototype head's embedding.
    temperature : float, default=0.5
        NT-Xent's temperature.
    assignment_temperature : float, default=0.1
        Softmax temperature of the soft assignments to the prototypes.
    sinkhorn_epsilon : float, default=0.05
        Entropic regularisation of the Sinkhorn targets.
    sinkhorn_iterations : int, default=3
        Sinkhorn iterations.
    n_projections : int, default=4
        Random projections of the consensus loss.
    projected_dim : int, default=32
        Dimension of each projected space.
    exemplar_weight, population_weight, consensus_weight : float, default=1.0
        Weights of the three terms.
    """

    terms = ("loss", "exemplar_loss", "population_loss", "consensus_loss")
    labels = ("loss", "exemplar", "population", "consensus")
    phase_name = "clustering"

    def __init__(
        self,
        n_clusters,
        embedding_dim=128,
        temperature=0.5,
        assignment_temperature=0.1,
        sinkhorn_epsilon=0.05,
        sinkhorn_iterations=3,
        n_projections=4,
        projected_dim=32,
        exemplar_weight=1.0,
        population_weight=1.0,
        consensus_weight=1.0,
    ):
        self.n_clusters = n_clusters
        self.embedding_dim = embedding_dim
        self.temperature = temperature
        self.assignment_temperature = assignment_temperature
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.n_projections = n_projections
        self.projected_dim = projected_dim
        self.exemplar_weight = exemplar_weight
        self.population_weight = population_weight
        self.consensus_weight = consensus_weight
        self.projections = None
        self._head = None

    def settings(self) -> dict:
        """The constructor's parameters.

        Returns
        -------
        dict
            Name to value.
        """
        return {
            "n_clusters": self.n_clusters,
            "embedding_dim": self.embedding_dim,
            "temperature": self.temperature,
            "assignment_temperature": self.assignment_temperature,
            "sinkhorn_epsilon": self.sinkhorn_epsilon,
            "sinkhorn_iterations": self.sinkhorn_iterations,
            "n_projections": self.n_projections,
            "projected_dim": self.projected_dim,
            "exemplar_weight": self.exemplar_weight,
            "population_weight": self.population_weight,
            "consensus_weight": self.consensus_weight,
        }

    def make_network(self, backbone, projection_dim, input_mean, input_std):
        """A flat network whose :class:`~skcohiclust.networks.PrototypeHead` has learnable prototypes.

        Parameters
        ----------
        backbone : skcohiclust.networks.Backbone
            From :func:`~skcohiclust.networks.build_backbone`.
        projection_dim : int
            Output size of the projection head (NT-Xent's).
        input_mean, input_std : torch.Tensor
            Input standardisation.

        Returns
        -------
        skcohiclust.networks.FlatClusteringNetwork
        """
        return _prototype_network(
            backbone,
            projection_dim,
            input_mean,
            input_std,
            n_clusters=self.n_clusters,
            embedding_dim=self.embedding_dim,
            temperature=self.assignment_temperature,
            learnable=True,
        )

    def begin_epoch(self, trainer, phase, features):
        """Draw the epoch's random projections (from the run's seed and the epoch).

        Parameters
        ----------
        trainer : Trainer
            The trainer.
        phase : str
            ``"warmup"`` or ``"clustering"``.
        features : torch.Tensor or None
            Not used.
        """
        self._head = trainer.network.cluster_head
        generator = torch.Generator().manual_seed(int(trainer.seed) * 100_003 + int(trainer.epoch) + 7)
        shape = (self.n_projections, self.embedding_dim, self.projected_dim)
        projections = torch.randn(shape, generator=generator) / self.projected_dim**0.5
        self.projections = projections.to(trainer.device)

    def batch_statistics(self, out, batch_size):
        """Projections and embeddings of the two views, and the prototypes.

        Parameters
        ----------
        out : skcohiclust.networks.NetworkOutput
            Outputs for the batch's first views, then its second views.
        batch_size : int
            Samples in the batch.

        Returns
        -------
        PrototypeStatistics
        """
        projection = out.projection.float()
        embedding = out.head.float()
        return PrototypeStatistics(
            projection[:batch_size],
            projection[batch_size:],
            embedding[:batch_size],
            embedding[batch_size:],
            self._head.prototypes,
        )

    def loss(self, stats, phase):
        """The weighted sum of the three consistencies (NT-Xent alone in the warm-up).

        Parameters
        ----------
        stats : PrototypeStatistics
            From :meth:`batch_statistics`.
        phase : str
            ``"warmup"`` or ``"clustering"``.

        Returns
        -------
        loss : torch.Tensor
            Scalar, with gradients.
        terms : torch.Tensor
            Detached: the total, the exemplar, population and consensus losses (unweighted).
        """
        exemplar = nt_xent(stats.projection_1, stats.projection_2, self.temperature)
        loss = self.exemplar_weight * exemplar
        population = consensus = exemplar.new_zeros(())
        if phase == self.phase_name:
            scores_1 = prototype_scores(stats.embedding_1, stats.prototypes)
            scores_2 = prototype_scores(stats.embedding_2, stats.prototypes)
            targets_1 = sinkhorn_targets(scores_1, self.sinkhorn_epsilon, self.sinkhorn_iterations)
            targets_2 = sinkhorn_targets(scores_2, self.sinkhorn_epsilon, self.sinkhorn_iterations)
            population = swapped_prediction_loss(scores_1, scores_2, targets_1, targets_2, self.assignment_temperature)
            consensus = consensus_loss(
                stats.embedding_1,
                stats.embedding_2,
                stats.prototypes,
                self.projections,
                targets_1,
                targets_2,
                self.assignment_temperature,
            )
            loss = loss + self.population_weight * population + self.consensus_weight * consensus
        return loss, torch.stack((loss.detach(), exemplar.detach(), population.detach(), consensus.detach()))


@dataclass
class SeCuStatistics:
    """What SeCu's loss and updates read from one batch.

    Parameters
    ----------
    features_1, features_2 : torch.Tensor
        Normalised embeddings of the two views, ``(B, embedding_dim)``, with gradients.
    indices : torch.Tensor
        The batch's training rows, int64.
    labels : torch.Tensor
        The clusters assigned in this step, ``(B,)``.
    targets : torch.Tensor
        The clusters the representation loss uses: the samples' stored
        clusters (from their previous visit), or this step's where none is
        stored yet.
    projection : torch.Tensor or None
        Projections of the first then the second views (NT-Xent's, in the
        warm-up; None after it).
    """

    features_1: torch.Tensor
    features_2: torch.Tensor
    indices: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor
    projection: torch.Tensor | None = None


class SeCuObjective(_PrototypeObjective):
    """SeCu: stable cluster discrimination, with the global entropy constraint on the assignments.

    Every training sample keeps a cluster assignment.  In each step:

    1. the batch's samples are reassigned by
       :func:`~skcohiclust.losses.entropy_constrained_assignment` with cost
       ``-cos(x, w_k)`` (averaged over the two views) against the current
       centres ``w``, under the global entropy constraint with weight
       ``alpha = entropy_weight * n_samples``;
    2. the network minimises :func:`~skcohiclust.losses.soft_label_loss`
       against the centres frozen at the start of the epoch, with the
       samples' stored clusters as labels;
    3. after the optimiser's step the centres move by a projected gradient
       step of the stable cluster discrimination loss, in closed form
       (:func:`~skcohiclust.losses.stable_center_gradient`):
       ``w_k <- normalize(w_k - center_lr * g_k)``.  The centres are a
       buffer: the optimiser never sees them.

    Warm-up epochs train NT-Xent on the projections alone and assign nothing.

    Parameters
    ----------
    n_clusters : int
        Number of clusters (centres).
    embedding_dim : int, default=128
        Size of the embedding.
    temperature : float, default=0.05
        Temperature of the representation loss (``tau_x`` of the paper) and of ``predict_proba``.
    center_temperature : float, default=0.05
        Temperature of the centres' loss (``tau_w``).
    label_weight : float, default=0.2
        Weight of the one-hot label in the representation loss's targets.
    entropy_weight : float, default=0.12
        Weight of the entropy constraint per training sample.
    center_lr : float, default=1.2
        Step size of the centre updates.
    instance_temperature : float, default=0.5
        NT-Xent's temperature in the warm-up.
    """

    terms = ("loss", "representation_loss", "center_loss")
    labels = ("loss", "repr", "centre")
    phase_name = "clustering"

    def __init__(
        self,
        n_clusters,
        embedding_dim=128,
        temperature=0.05,
        center_temperature=0.05,
        label_weight=0.2,
        entropy_weight=0.12,
        center_lr=1.2,
        instance_temperature=0.5,
    ):
        self.n_clusters = n_clusters
        self.embedding_dim = embedding_dim
        self.temperature = temperature
        self.center_temperature = center_temperature
        self.label_weight = label_weight
        self.entropy_weight = entropy_weight
        self.center_lr = center_lr
        self.instance_temperature = instance_temperature
        self.assignments = None
        self.counts = None
        self._trainer = None
        self._frozen_centers = None

    def settings(self) -> dict:
        """The constructor's parameters.

        Returns
        -------
        dict
            Name to value.
        """
        return {
            "n_clusters": self.n_clusters,
            "embedding_dim": self.embedding_dim,
            "temperature": self.temperature,
            "center_temperature": self.center_temperature,
            "label_weight": self.label_weight,
            "entropy_weight": self.entropy_weight,
            "center_lr": self.center_lr,
            "instance_temperature": self.instance_temperature,
        }

    def make_network(self, backbone, projection_dim, input_mean, input_std):
        """A flat network whose :class:`~skcohiclust.networks.PrototypeHead` holds the centres as a buffer.

        Parameters
        ----------
        backbone : skcohiclust.networks.Backbone
            From :func:`~skcohiclust.networks.build_backbone`.
        projection_dim : int
            Output size of the projection head (used in the warm-up only).
        input_mean, input_std : torch.Tensor
            Input standardisation.

        Returns
        -------
        skcohiclust.networks.FlatClusteringNetwork
        """
        return _prototype_network(
            backbone,
            projection_dim,
            input_mean,
            input_std,
            n_clusters=self.n_clusters,
            embedding_dim=self.embedding_dim,
            temperature=self.temperature,
            learnable=False,
        )

    def _centers(self):
        return F.normalize(self._trainer.network.cluster_head.prototypes.float(), dim=1)

    def begin_epoch(self, trainer, phase, features):
        """Freeze the centres for the representation loss; (re)start the assignments on new data.

        Parameters
        ----------
        trainer : Trainer
            The trainer.
        phase : str
            ``"warmup"`` or ``"clustering"``.
        features : torch.Tensor or None
            Not used.
        """
        self._trainer = trainer
        self._frozen_centers = self._centers().detach().clone()
        n = len(trainer.source)
        if self.assignments is None or len(self.assignments) != n:  # a partial_fit chunk of another size
            self.assignments = torch.full((n,), -1, dtype=torch.long, device=trainer.device)
        self.assignments = self.assignments.to(trainer.device)
        assigned = self.assignments[self.assignments >= 0]
        self.counts = torch.bincount(assigned, minlength=self.n_clusters).float()

    def batch_statistics(self, out, batch_size):
        """Normalised embeddings of the two views, and the batch's new assignments.

        Parameters
        ----------
        out : skcohiclust.networks.NetworkOutput
            Outputs for the batch's first views, then its second views.
        batch_size : int
            Samples in the batch.

        Returns
        -------
        SeCuStatistics
        """
        features = F.normalize(out.head.float(), dim=1)
        x1, x2 = features[:batch_size], features[batch_size:]
        indices = torch.as_tensor(self._trainer.batch_indices, dtype=torch.long, device=features.device)
        if self._trainer.phase(self._trainer.epoch) != self.phase_name:
            return SeCuStatistics(x1, x2, indices, indices, indices, out.projection.float())
        with torch.no_grad():
            centers = self._centers()
            cost = -0.5 * (x1 + x2) @ centers.T
            current = self.assignments[indices]
            alpha = self.entropy_weight * len(self.assignments)
            labels = entropy_constrained_assignment(cost, self.counts, current, alpha)
            targets = torch.where(current >= 0, current, labels)
        return SeCuStatistics(x1, x2, indices, labels, targets)

    def loss(self, stats, phase):
        """The representation loss (with gradients) and the centres' loss (for the record).

        Parameters
        ----------
        stats : SeCuStatistics
            From :meth:`batch_statistics`.
        phase : str
            ``"warmup"`` or ``"clustering"``.

        Returns
        -------
        loss : torch.Tensor
            Scalar, with gradients: the representation loss (NT-Xent in the warm-up).
        terms : torch.Tensor
            Detached: the total (representation + centre loss), the representation and centre losses.
        """
        if phase != self.phase_name:
            out, half = stats.projection, len(stats.projection) // 2
            instance = nt_xent(out[:half], out[half:], self.instance_temperature)
            zero = instance.new_zeros(())
            return instance, torch.stack((instance.detach(), instance.detach(), zero))
        scores_1 = stats.features_1 @ self._frozen_centers.T
        scores_2 = stats.features_2 @ self._frozen_centers.T
        representation = soft_label_loss(scores_1, scores_2, stats.targets, self.label_weight, self.temperature)
        with torch.no_grad():
            centers = self._centers()
            center = 0.5 * (
                stable_cluster_discrimination_loss(stats.features_1, centers, stats.labels, self.center_temperature)
                + stable_cluster_discrimination_loss(stats.features_2, centers, stats.labels, self.center_temperature)
            )
        total = representation.detach() + center
        return representation, torch.stack((total, representation.detach(), center))

    def observe(self, stats):
        """Store the new assignments, update the cluster sizes, and step the centres.

        Parameters
        ----------
        stats : SeCuStatistics
            From :meth:`batch_statistics`.
        """
        if stats.projection is not None:  # the warm-up assigns nothing
            return
        with torch.no_grad():
            current = self.assignments[stats.indices]
            old = current[current >= 0]
            self.counts += torch.bincount(stats.labels, minlength=self.n_clusters).float()
            self.counts -= torch.bincount(old, minlength=self.n_clusters).float()
            self.assignments[stats.indices] = stats.labels
            head = self._trainer.network.cluster_head
            centers = self._centers()
            gradient = 0.5 * (
                stable_center_gradient(stats.features_1, centers, stats.labels, self.center_temperature)
                + stable_center_gradient(stats.features_2, centers, stats.labels, self.center_temperature)
            )
            head.prototypes.copy_(F.normalize(centers - self.center_lr * gradient, dim=1))

    def end_epoch(self, trainer, phase):
        """The smallest and largest cluster of the stored assignments.

        Parameters
        ----------
        trainer : Trainer
            The trainer.
        phase : str
            ``"warmup"`` or ``"clustering"``.

        Returns
        -------
        dict
            ``smallest_cluster`` and ``largest_cluster`` (0 in the warm-up).
        """
        if phase != self.phase_name:
            return {"smallest_cluster": 0, "largest_cluster": 0}
        return {"smallest_cluster": int(self.counts.min()), "largest_cluster": int(self.counts.max())}

    def state_dict(self, network) -> dict:
        """The stored assignments (``-1``: none yet).

        Parameters
        ----------
        network : skcohiclust.networks.FlatClusteringNetwork
            The network.

        Returns
        -------
        dict
            ``{"secu_assignments": tensor}``.
        """
        empty = torch.zeros(0, dtype=torch.long)
        return {"secu_assignments": empty if self.assignments is None else self.assignments.detach().cpu().clone()}

    def load_state_dict(self, state, network) -> None:
        """Restore the stored assignments.

        Parameters
        ----------
        state : dict
            The trainer's state.
        network : skcohiclust.networks.FlatClusteringNetwork
            The network.
        """
        saved = state.get("secu_assignments")
        self.assignments = None if saved is None or len(saved) == 0 else saved.clone().long()
