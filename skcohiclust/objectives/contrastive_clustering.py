"""Contrastive Clustering's objective (Li et al., AAAI 2021): instance- and cluster-level contrast."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch

from ..distributed import GATHER
from ..losses import (
    ClusterBatchStatistics,
    cluster_batch_statistics,
    cluster_contrastive_loss,
    cluster_entropy_penalty,
    nt_xent,
)
from ..networks import ClusterHead, FlatClusteringNetwork
from .base import Objective

__all__ = ["ContrastiveClusteringObjective", "ClusterStatistics"]


@dataclass
class ClusterStatistics:
    """What Contrastive Clustering's loss reads from one batch.

    Parameters
    ----------
    projection_1, projection_2 : torch.Tensor
        Projections of the first and second views, float32, ``(B, dim)``
        each (per sample: a data-parallel run all-gathers them for NT-Xent).
    cluster : ClusterBatchStatistics
        Sums over the batch (a data-parallel run all-reduces them).
    """

    projection_1: torch.Tensor = field(metadata=GATHER)
    projection_2: torch.Tensor = field(metadata=GATHER)
    cluster: ClusterBatchStatistics


class ContrastiveClusteringObjective(Objective):
    """Contrastive Clustering: NT-Xent on the projections plus contrast between clusters.

    The loss of an epoch after the warm-up is ``instance + cluster +
    entropy_weight * entropy``: NT-Xent over the batch's views (rows),
    :func:`~skcohiclust.losses.cluster_contrastive_loss` over the columns of
    the two views' cluster probability matrices, and
    :func:`~skcohiclust.losses.cluster_entropy_penalty`, which keeps every
    cluster in use.  Warm-up epochs train NT-Xent alone.

    Parameters
    ----------
    n_clusters : int
        Outputs of the cluster head.
    temperature : float, default=0.5
        NT-Xent's temperature (the paper's instance temperature).
    cluster_temperature : float, default=1.0
        Temperature of the cluster-level loss.
    entropy_weight : float, default=1.0
        Weight of the entropy term (1 in the paper).
    """

    terms = ("loss", "instance_loss", "cluster_loss", "entropy")
    labels = ("loss", "instance", "cluster", "entropy")
    phase_name = "clustering"

    def __init__(self, n_clusters, temperature=0.5, cluster_temperature=1.0, entropy_weight=1.0):
        self.n_clusters = n_clusters
        self.temperature = temperature
        self.cluster_temperature = cluster_temperature
        self.entropy_weight = entropy_weight

    def settings(self) -> dict:
        """Clusters, temperatures and the entropy weight.

        Returns
        -------
        dict
            The constructor's parameters by name.
        """
        return {
            "n_clusters": self.n_clusters,
            "temperature": self.temperature,
            "cluster_temperature": self.cluster_temperature,
            "entropy_weight": self.entropy_weight,
        }

    def architecture(self) -> dict:
        """The number of clusters, which shapes the cluster head.

        Returns
        -------
        dict
            ``{"n_clusters": n_clusters}``.
        """
        return {"n_clusters": self.n_clusters}

    def make_network(self, backbone, projection_dim, input_mean, input_std):
        """A :class:`~skcohiclust.networks.FlatClusteringNetwork` with a :class:`~skcohiclust.networks.ClusterHead`.

        Parameters
        ----------
        backbone : skcohiclust.networks.Backbone
            From :func:`~skcohiclust.networks.build_backbone`.
        projection_dim : int
            Output size of the projection head.
        input_mean, input_std : torch.Tensor
            Input standardisation.

        Returns
        -------
        skcohiclust.networks.FlatClusteringNetwork
            Its cluster head has ``n_clusters`` outputs.
        """
        return FlatClusteringNetwork(
            backbone.module,
            backbone.dim,
            projection_dim,
            functools.partial(ClusterHead, n_clusters=self.n_clusters),
            input_mean,
            input_std,
            backbone.input_size,
            backbone.channels_last,
        )

    def batch_statistics(self, out, batch_size):
        """Projections of the two views, and the cluster probabilities' sums over the batch.

        Parameters
        ----------
        out : skcohiclust.networks.NetworkOutput
            Outputs for ``2 * batch_size`` inputs: the first views of the
            batch's samples, then their second views, in the same order.
        batch_size : int
            Samples in the batch.

        Returns
        -------
        ClusterStatistics
        """
        projection = out.projection.float()
        assign = out.head.float()
        return ClusterStatistics(
            projection[:batch_size],
            projection[batch_size:],
            cluster_batch_statistics(assign[:batch_size], assign[batch_size:]),
        )

    def loss(self, stats, phase):
        """NT-Xent; after the warm-up plus the cluster-level loss and the weighted entropy term.

        Parameters
        ----------
        stats : ClusterStatistics
            From :meth:`batch_statistics`.
        phase : str
            ``"warmup"`` or ``"clustering"``.

        Returns
        -------
        loss : torch.Tensor
            Scalar, with gradients.
        terms : torch.Tensor
            Detached: the total, NT-Xent, the cluster-level loss and
            the (unweighted) entropy term (0 in the warm-up).
        """
        instance = nt_xent(stats.projection_1, stats.projection_2, self.temperature)
        loss = instance
        cluster = entropy = instance.new_zeros(())
        if phase == self.phase_name:
            cluster = cluster_contrastive_loss(stats.cluster, self.cluster_temperature)
            entropy = cluster_entropy_penalty(stats.cluster)
            loss = loss + cluster + self.entropy_weight * entropy
        return loss, torch.stack((loss.detach(), instance.detach(), cluster.detach(), entropy.detach()))
