"""The interface between the trainer and a clustering method: :class:`Objective`."""

from __future__ import annotations

import torch

__all__ = ["Objective"]


class Objective:
    """What a deep clustering method brings to the shared trainer: its head, its loss, its phases, its state.

    :class:`~skcohiclust.training.Trainer` owns everything all methods
    share (the data, the views, the network's forward and backward pass,
    the optimiser, the learning-rate schedule, random generators, neighbour
    positives, callbacks, checkpoints and Ctrl-C); an objective says what
    is trained, through the hooks below, which the trainer calls in this
    order::

        network = objective.make_network(...)          # once, by the estimator
        for every epoch:
            objective.begin_epoch(trainer, phase, features)
            for every batch:
                out = network(both views)                   # trainer
                stats = objective.batch_statistics(out, batch_size)
                loss, terms = objective.loss(stats, phase)
                loss.backward(); optimiser step             # trainer
                objective.observe(stats)
            history entry |= objective.end_epoch(trainer, phase)

    **The batch statistics are the one place where the batch is seen as a
    whole.**  :meth:`batch_statistics` reduces the network outputs of the
    two views to per-sample tensors that every sample's loss compares with
    all others (the projections, for NT-Xent) and to *sums over the batch*
    (e.g. :class:`~skcohiclust.losses.TreeBatchStatistics`,
    :class:`~skcohiclust.losses.ClusterBatchStatistics`); :meth:`loss`
    reads nothing else.  A data-parallel trainer therefore needs to change
    only the step between the two calls: all-gather the per-sample tensors
    and all-reduce the sums.

    The phases: epochs before the trainer's ``warmup_epochs`` are the
    ``"warmup"`` phase (instance loss alone, by convention); later epochs
    are the phase named :attr:`phase_name`.

    Attributes
    ----------
    terms : tuple of str
        The history keys of the loss terms that :meth:`loss` returns, the
        total first.
    labels : tuple of str
        Their short names in the progress bar.
    phase_name : str
        Name of the phase after the warm-up (history's ``phase``).
    """

    terms = ("loss", "instance_loss")
    labels = ("loss", "instance")
    phase_name = "train"

    def settings(self) -> dict:
        """The objective's settings, recorded in checkpoints and compared on resume (plain values).

        Returns
        -------
        dict
            Setting name to value (empty by default).
        """
        return {}

    def architecture(self) -> dict:
        """The settings that shape the network (compared first on resume).

        Returns
        -------
        dict
            Setting name to value, e.g. ``{"depth": 4}`` (empty by default).
        """
        return {}

    def make_network(self, backbone, projection_dim: int, input_mean, input_std):
        """The network this method trains, around a built backbone.

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
        skcohiclust.networks.ContrastiveNetwork
        """
        raise NotImplementedError

    def pairs_neighbours(self, phase: str) -> bool:
        """Whether the positive pairs of ``phase`` may join a sample with a neighbour (when ``n_neighbors > 0``).

        Parameters
        ----------
        phase : str
            ``"warmup"`` or :attr:`phase_name`.

        Returns
        -------
        bool
            False by default (two views of one sample in every phase).
        """
        return False

    def begin_epoch(self, trainer, phase: str, features: torch.Tensor | None) -> None:
        """Prepare an epoch (reset the epoch's tallies; set a head from the data where the method does).

        Parameters
        ----------
        trainer : Trainer
            The trainer (its ``epoch`` is the epoch about to run).
        phase : str
            ``"warmup"`` or :attr:`phase_name`.
        features : torch.Tensor or None
            The normalised representation of every training row, when the
            trainer computed it this epoch (to mine neighbours), else None.
        """

    def batch_statistics(self, out, batch_size: int):
        """Reduce the network outputs of one batch's two views to what :meth:`loss` reads.

        Parameters
        ----------
        out : skcohiclust.networks.NetworkOutput
            Outputs for ``2 * batch_size`` inputs: the first views of the
            batch's samples, then their second views, in the same order.
        batch_size : int
            Samples in the batch.

        Returns
        -------
        object
            Per-sample tensors and sums over the batch (see the class docstring).
        """
        raise NotImplementedError

    def loss(self, stats, phase: str):
        """The loss to minimise and its terms.

        Parameters
        ----------
        stats : object
            From :meth:`batch_statistics`.
        phase : str
            ``"warmup"`` or :attr:`phase_name`.

        Returns
        -------
        loss : torch.Tensor
            Scalar, with gradients.
        terms : torch.Tensor
            Detached, one value per name of :attr:`terms`.
        """
        raise NotImplementedError

    def observe(self, stats) -> None:
        """Add a batch's statistics to the epoch's tallies, after the optimiser step (nothing by default).

        Parameters
        ----------
        stats : object
            From :meth:`batch_statistics`.
        """

    def end_epoch(self, trainer, phase: str) -> dict:
        """Finish an epoch (e.g. prune), after its last batch.

        Parameters
        ----------
        trainer : Trainer
            The trainer (its ``epoch`` is still the epoch that ran).
        phase : str
            ``"warmup"`` or :attr:`phase_name`.

        Returns
        -------
        dict
            Extra values of the epoch's history entry (empty by default).
        """
        return {}

    def progress(self, network) -> dict:
        """Extra values shown in the progress bar.

        Parameters
        ----------
        network : skcohiclust.networks.ContrastiveNetwork
            The network being trained.

        Returns
        -------
        dict
            Label to value (empty by default).
        """
        return {}

    def state_dict(self, network) -> dict:
        """The method's training state beyond the network's parameters (plain tensors and values).

        Saved with checkpoints and the fitted estimator's training state,
        as keys of the trainer's state; they must not clash with the
        trainer's own keys.

        Parameters
        ----------
        network : skcohiclust.networks.ContrastiveNetwork
            The network being trained.

        Returns
        -------
        dict
            Key to value (empty by default).
        """
        return {}

    def load_state_dict(self, state: dict, network) -> None:
        """Restore what :meth:`state_dict` saved (nothing by default).

        Parameters
        ----------
        state : dict
            The trainer's state, which holds the keys of :meth:`state_dict`
            among others.
        network : skcohiclust.networks.ContrastiveNetwork
            The network being trained (already loaded).
        """
