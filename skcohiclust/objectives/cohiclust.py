"""CoHiClust's objective: the soft binary tree, its hierarchical contrastive loss, starts and pruning."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..distributed import GATHER
from ..losses import (
    TreeBatchStatistics,
    balance_regularizer,
    hierarchical_contrastive_loss,
    leaf_balance,
    nt_xent,
    tree_batch_statistics,
)
from ..networks import CoHiClustNetwork
from ..tree import level_slice, node_active_mask, node_probabilities
from ..tree_init import bisecting_hyperplanes, clustered_tree
from .base import Objective

__all__ = [
    "CoHiClustObjective",
    "TreeStatistics",
    "pruning_schedule",
    "remove_least_massive",
    "tree_start_rows",
    "TREE_START_ROWS",
]

#: Training rows the data-dependent tree starts look at, at most.
TREE_START_ROWS = 20000


def tree_start_rows(n: int, max_rows: int = TREE_START_ROWS) -> np.ndarray:
    """The evenly spaced training rows a tree start uses: all ``n`` up to ``max_rows``.

    Parameters
    ----------
    n : int
        Training rows, ``n >= 1``.
    max_rows : int, default=TREE_START_ROWS
        Rows used at most.

    Returns
    -------
    numpy.ndarray of int64
        Sorted, distinct row indices in ``[0, n)``.
    """
    return np.unique(np.linspace(0, n - 1, min(n, max_rows)).astype(np.int64))


def pruning_schedule(n_remove: int, start: int, stop: int) -> np.ndarray:
    """How many leaves to remove at the end of each epoch.

    The removals are spread evenly over epochs ``start..stop-1`` (one per
    epoch, as in the paper, when there are enough epochs; more per epoch
    otherwise).

    Parameters
    ----------
    n_remove : int
        Leaves to remove in all.
    start, stop : int
        Epoch window.

    Returns
    -------
    numpy.ndarray
        Counts per epoch, length ``stop``.
    """
    stop = max(stop, start + 1)
    counts = np.zeros(stop, dtype=np.int64)
    if n_remove > 0:
        epochs = start + (np.arange(n_remove) * (stop - start)) // n_remove
        np.add.at(counts, epochs, 1)
    return counts


def remove_least_massive(leaf_mask: torch.Tensor, mass: torch.Tensor, n_remove: int, n_keep: int) -> None:
    """Mask, in place, the ``n_remove`` active leaves of least accumulated mass (never below ``n_keep``).

    Parameters
    ----------
    leaf_mask : torch.Tensor
        Boolean leaf mask, changed in place.
    mass : torch.Tensor
        Accumulated probability mass per leaf.
    n_remove : int
        Leaves to remove.
    n_keep : int
        Lower bound on the active leaves.
    """
    n_remove = min(n_remove, int(leaf_mask.sum()) - n_keep)
    if n_remove <= 0:
        return
    order = torch.argsort(mass.masked_fill(~leaf_mask, float("inf")), stable=True)
    leaf_mask[order[:n_remove]] = False


@dataclass
class TreeStatistics:
    """What CoHiClust's loss reads from one batch.

    Parameters
    ----------
    projection_1, projection_2 : torch.Tensor
        Projections of the first and second views, float32, ``(B, dim)``
        each (per sample: a data-parallel run all-gathers them for NT-Xent).
    tree : TreeBatchStatistics
        Sums over the batch (a data-parallel run all-reduces them).
    """

    projection_1: torch.Tensor = field(metadata=GATHER)
    projection_2: torch.Tensor = field(metadata=GATHER)
    tree: TreeBatchStatistics


class CoHiClustObjective(Objective):
    """The tree objective of CoHiClust (Znaleźniak et al., ECML PKDD 2023).

    Warm-up epochs train NT-Xent alone; the tree phase adds the
    hierarchical contrastive loss, the paper's balance regulariser (weight
    ``2**-depth``) and ``leaf_balance`` times
    :func:`~skcohiclust.losses.leaf_balance`.  When the tree phase starts
    the tree head is set from the representation (``tree_init``); leaves
    are pruned at the end of epochs by :func:`pruning_schedule`, the
    least massive first.  The pruning mask lives in the network
    (``leaf_mask``).

    Parameters
    ----------
    depth : int
        Depth of the tree.
    n_leaves : int
        Leaves to keep; fewer than ``2**depth`` turns pruning on.
    temperature : float
        NT-Xent's temperature.
    prune_start, prune_stop : int
        Pruning removes leaves at the end of epochs in ``[prune_start, prune_stop)``.
    tree_init : {"kmeans", "bisect", "random"}, default="kmeans"
        How the tree head starts its phase: k-means clusters of the
        representation arranged into a tree (``n_leaves`` leaves from the
        start), bisecting 2-means on it (all leaves), or as initialised; see
        :mod:`skcohiclust.tree_init`.
    leaf_balance : float, default=0.0
        Weight of :func:`~skcohiclust.losses.leaf_balance` in the tree
        phase's objective (0: the paper's objective).
    """

    terms = ("loss", "instance_loss", "tree_loss", "regularizer")
    labels = ("loss", "instance", "tree", "reg")
    phase_name = "tree"

    def __init__(self, depth, n_leaves, temperature, prune_start, prune_stop, tree_init="kmeans", leaf_balance=0.0):
        self.depth = depth
        self.n_leaves = n_leaves
        self.temperature = temperature
        self.prune_start = prune_start
        self.prune_stop = prune_stop
        self.tree_init = tree_init
        self.leaf_balance = leaf_balance
        self.schedule = pruning_schedule(max(0, 2**depth - n_leaves), prune_start, prune_stop)
        self.node_mask = None
        self.mass = None

    def settings(self) -> dict:
        """Depth, leaves, pruning window, temperature, tree start and leaf balance.

        Returns
        -------
        dict
            The constructor's parameters by name.
        """
        return {
            "depth": self.depth,
            "n_leaves": self.n_leaves,
            "prune_start": self.prune_start,
            "prune_stop": self.prune_stop,
            "temperature": self.temperature,
            "tree_init": self.tree_init,
            "leaf_balance": self.leaf_balance,
        }

    def architecture(self) -> dict:
        """The tree's depth, which shapes the tree head.

        Returns
        -------
        dict
            ``{"depth": depth}``.
        """
        return {"depth": self.depth}

    def make_network(self, backbone, projection_dim, input_mean, input_std):
        """A :class:`~skcohiclust.networks.CoHiClustNetwork` of depth ``depth`` around the backbone.

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
        skcohiclust.networks.CoHiClustNetwork
        """
        return CoHiClustNetwork(
            backbone.module,
            backbone.dim,
            self.depth,
            projection_dim,
            input_mean,
            input_std,
            backbone.input_size,
            backbone.channels_last,
        )

    def pairs_neighbours(self, phase):
        """Neighbour positives in the tree phase only (the warm-up learns the representation they come from).

        Parameters
        ----------
        phase : str
            ``"warmup"`` or ``"tree"``.

        Returns
        -------
        bool
            Whether ``phase`` is ``"tree"``.
        """
        return phase == self.phase_name

    def begin_epoch(self, trainer, phase, features):
        """Start the tree when its phase starts; fix the epoch's node mask; reset the leaf mass.

        Parameters
        ----------
        trainer : Trainer
            The trainer (its ``epoch`` is the epoch about to run).
        phase : str
            ``"warmup"`` or ``"tree"``.
        features : torch.Tensor or None
            The normalised representation of every training row, when the
            trainer computed it this epoch, else None; passed to
            :meth:`initialise_tree` at the first tree epoch.
        """
        if phase == self.phase_name and trainer.epoch == trainer.config.warmup_epochs and self.tree_init != "random":
            self.initialise_tree(trainer, features)
        leaf_mask = trainer.network.leaf_mask
        self.node_mask = node_active_mask(leaf_mask, self.depth)
        self.mass = torch.zeros(leaf_mask.shape[0], device=trainer.device)

    def initialise_tree(self, trainer, features=None, max_rows: int = TREE_START_ROWS) -> None:
        """Set the tree head from the current representation (``tree_init``).

        ``"kmeans"`` also sets the leaf mask (see
        :func:`~skcohiclust.tree_init.clustered_tree`).  Uses at most
        ``max_rows`` evenly spaced training rows; deterministic given the
        trainer's seed, so a resumed run initialises exactly as an
        uninterrupted one.

        Parameters
        ----------
        trainer : Trainer
            Its network, data, seed and optimiser.
        features : torch.Tensor, optional
            The routing features of all training rows, when already
            computed (see :meth:`Trainer.representation_features
            <skcohiclust.training.Trainer.representation_features>`); else
            they are computed for the rows used.
        max_rows : int, default=TREE_START_ROWS
            Rows used at most (:func:`tree_start_rows`).
        """
        network = trainer.network
        rows = tree_start_rows(len(trainer.source), max_rows)
        if features is None:
            h = trainer.representation_features(rows)
        else:
            h = features[torch.from_numpy(rows).to(features.device)]
        with torch.no_grad():
            if self.tree_init == "kmeans":
                n_leaves = min(self.n_leaves, len(rows))
                weight, bias, leaf_mask = clustered_tree(h, self.depth, n_leaves, trainer.seed + 3)
                network.leaf_mask.copy_(leaf_mask.to(network.leaf_mask.device))
            else:
                generator = torch.Generator().manual_seed(trainer.seed + 3)
                weight, bias = bisecting_hyperplanes(h, self.depth, generator)
            linear = network.tree_head.linear
            linear.weight.copy_(weight.to(linear.weight))
            linear.bias.copy_(bias.to(linear.bias))
        # the head's Adam moments belong to the old weights
        for param in (linear.weight, linear.bias):
            trainer.optimizer.state.pop(param, None)

    def batch_statistics(self, out, batch_size):
        """Projections of the two views, and the tree's sums over the batch under the epoch's node mask.

        Parameters
        ----------
        out : skcohiclust.networks.NetworkOutput
            Outputs for ``2 * batch_size`` inputs: the first views of the
            batch's samples, then their second views, in the same order.
        batch_size : int
            Samples in the batch.

        Returns
        -------
        TreeStatistics
        """
        projection = out.projection.float()  # the loss in float32 whatever the network ran in
        nodes = node_probabilities(out.head.float(), self.depth)
        return TreeStatistics(
            projection[:batch_size],
            projection[batch_size:],
            tree_batch_statistics(nodes[:batch_size], nodes[batch_size:], self.node_mask),
        )

    def loss(self, stats, phase):
        """NT-Xent; in the tree phase plus the tree loss and the balance terms.

        Parameters
        ----------
        stats : TreeStatistics
            From :meth:`batch_statistics`.
        phase : str
            ``"warmup"`` or ``"tree"``.

        Returns
        -------
        loss : torch.Tensor
            Scalar, with gradients.
        terms : torch.Tensor
            Detached: the total, NT-Xent, the tree loss and the
            regulariser (0 in the warm-up).
        """
        instance = nt_xent(stats.projection_1, stats.projection_2, self.temperature)
        loss = instance
        tree = reg = instance.new_zeros(())
        if phase == self.phase_name:
            depth, mask = self.depth, self.node_mask
            tree = hierarchical_contrastive_loss(stats.tree, depth)
            reg = balance_regularizer(stats.tree, depth, mask) * 2.0**-depth
            if self.leaf_balance:
                reg = reg + self.leaf_balance * leaf_balance(stats.tree, depth, mask)
            loss = loss + tree + reg
        return loss, torch.stack((loss.detach(), instance.detach(), tree.detach(), reg.detach()))

    def observe(self, stats):
        """Add the batch's leaf mass to the epoch's (pruning reads it).

        Parameters
        ----------
        stats : TreeStatistics
            From :meth:`batch_statistics`.
        """
        self.mass += stats.tree.sum_mass[level_slice(self.depth)].detach()

    def end_epoch(self, trainer, phase):
        """Prune the leaves due at this epoch (in the tree phase, by :func:`pruning_schedule`).

        Parameters
        ----------
        trainer : Trainer
            The trainer (its ``epoch`` is still the epoch that ran).
        phase : str
            ``"warmup"`` or ``"tree"``.

        Returns
        -------
        dict
            ``{"n_leaves": active leaves}``.
        """
        leaf_mask = trainer.network.leaf_mask
        n_remove = int(self.schedule[trainer.epoch]) if trainer.epoch < len(self.schedule) else 0
        if phase == self.phase_name and n_remove:
            remove_least_massive(leaf_mask, self.mass, n_remove, self.n_leaves)
        return {"n_leaves": int(leaf_mask.sum())}

    def progress(self, network):
        """The number of active leaves.

        Parameters
        ----------
        network : skcohiclust.networks.CoHiClustNetwork
            The network being trained.

        Returns
        -------
        dict
            ``{"leaves": active leaves}``.
        """
        return {"leaves": int(network.leaf_mask.sum())}

    def state_dict(self, network):
        """The pruning mask as training left it (the estimator may prune further after training).

        Parameters
        ----------
        network : skcohiclust.networks.CoHiClustNetwork
            The network being trained.

        Returns
        -------
        dict
            ``{"leaf_mask": a copy of the network's leaf mask}``.
        """
        return {"leaf_mask": network.leaf_mask.detach().clone()}

    def load_state_dict(self, state, network):
        """Put the saved pruning mask back into the network.

        Parameters
        ----------
        state : dict
            Holds ``"leaf_mask"`` (from :meth:`state_dict`), among other keys.
        network : skcohiclust.networks.CoHiClustNetwork
            The network whose leaf mask is set (in place).
        """
        with torch.no_grad():
            network.leaf_mask.copy_(state["leaf_mask"].to(network.leaf_mask.device))
