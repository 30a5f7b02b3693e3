"""The fit loop shared by every method: epochs, views, steps, schedule, progress, state.

:class:`Trainer` owns everything that changes while training (network,
optimiser, random generators, epoch counter, neighbour table, history) and
can save and restore all of it; what is trained (the head, the loss, the
phases, pruning) is an :class:`~skcohiclust.objectives.Objective`.  So that

* an interrupted run resumes exactly from its last checkpoint
  (:meth:`Trainer.save_checkpoint`, :meth:`Trainer.resume`; the file format
  is in :mod:`skcohiclust.checkpoints`);
* Ctrl-C leaves the model as it stood at the end of the last completed epoch;
* a fitted estimator keeps a :class:`~skcohiclust.checkpoints.TrainingState`
  (no data, picklable) from which ``warm_start`` and ``partial_fit`` continue.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .augment import ImageAugmentation
from .callbacks import call_hook, notify
from .checkpoints import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    TrainingState,
    check_format,
    check_metadata,
    data_fingerprint,
    plain,
    read_checkpoint,
    write_checkpoint,
)
from .distributed import (
    ProcessGroup,
    all_reduce_gradients,
    broadcast_module,
    broadcast_object,
    broadcast_tensor,
    combine_statistics,
    shard_sizes,
    synchronised_batchnorm,
)
from .neighbors import MAX_CANDIDATES, nearest_neighbors, refresh_epochs
from .networks import normalized_representation

__all__ = ["TrainingConfig", "Trainer", "learning_rate_factor", "native_bfloat16"]


@dataclass
class TrainingConfig:
    """Resolved settings of the loop, common to every method (no ``"auto"`` left but ``refresh_neighbors``).

    The method's own settings are its :class:`~skcohiclust.objectives.Objective`'s.

    Parameters
    ----------
    max_epochs, warmup_epochs : int
        Total epochs, and the leading epochs of the ``"warmup"`` phase
        (the instance loss alone).
    batch_size : int
        Samples per batch (each gives two views).
    lr, weight_decay : float
        Adam's settings.
    mixed_precision : bool, default=False
        bfloat16 autocast for the network's training steps, where the
        device runs bfloat16 natively (see :func:`native_bfloat16`).
    verbose : int, default=0
        0 silent; 1 a progress bar per epoch.
    checkpoint_every : int, default=1
        Epochs between checkpoints (when a directory is given).
    n_neighbors : int, default=0
        0: the positive pairs are two views of one sample.  ``k > 0``: in the
        phases the objective allows (:meth:`Objective.pairs_neighbours
        <skcohiclust.objectives.Objective.pairs_neighbours>`), each sample's
        ``k`` nearest neighbours in the representation are found (when the
        first such phase starts, and again every ``refresh_neighbors``
        epochs), and the second view of each pair is a view of one of them,
        drawn at random (see :mod:`skcohiclust.neighbors`).
    refresh_neighbors : int or "auto", default=0
        With ``n_neighbors > 0``: mine the neighbours again, from the
        representation as it is then, every this many epochs after the
        first phase that pairs them starts (``warmup_epochs``); 0 keeps the
        first table for the rest of the run.  ``"auto"``, the one setting
        left unresolved because it depends on the data: the number of epochs
        that :func:`~skcohiclust.neighbors.refresh_epochs` derives from the
        number of samples.
    lr_schedule : {"constant", "cosine"}, default="constant"
        ``"cosine"``: within each phase the learning rate falls from ``lr``
        to zero along a half cosine, step by step (see :func:`learning_rate_factor`).
    """

    max_epochs: int
    warmup_epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    mixed_precision: bool = False
    verbose: int = 0
    checkpoint_every: int = 1
    n_neighbors: int = 0
    refresh_neighbors: int | str = 0
    lr_schedule: str = "constant"


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (so autocast to it pays).

    CUDA GPUs that support bfloat16, and CPUs with AVX512-BF16 or AMX
    instructions.  On other CPUs bfloat16 is emulated and slower than
    float32, so mixed precision is left off there.

    Parameters
    ----------
    device : torch.device
        The device training runs on.

    Returns
    -------
    bool
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # private helpers of torch.cpu, missing from some torch releases: missing means unknown, so no
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def learning_rate_factor(epoch: float, warmup_epochs: int, max_epochs: int, schedule: str) -> float:
    """The learning rate at a point of training, as a fraction of ``lr``.

    ``"constant"`` is 1 throughout.  ``"cosine"`` restarts a half cosine
    from 1 down to 0 at the start of each phase, the warm-up
    (``[0, warmup_epochs)``) and the tree phase (``[warmup_epochs,
    max_epochs)``), so that the representation has settled when the
    k-means start reads it and again when training ends.  Epochs past
    ``max_epochs`` (a warm start, more ``partial_fit`` calls than planned)
    follow further cycles of ``max_epochs`` epochs each.

    Parameters
    ----------
    epoch : float
        Epochs completed, with the fraction of the current one (step ``i``
        of ``n`` in epoch ``e`` is ``e + i / n``).
    warmup_epochs, max_epochs : int
        The phases' bounds.
    schedule : {"constant", "cosine"}
        The schedule (:class:`TrainingConfig`'s ``lr_schedule``).

    Returns
    -------
    float
        In ``(0, 1]``.
    """
    if schedule == "constant":
        return 1.0
    if epoch < warmup_epochs:
        start, length = 0, warmup_epochs
    elif epoch < max_epochs:
        start, length = warmup_epochs, max_epochs - warmup_epochs
    else:
        start, length = max_epochs + ((epoch - max_epochs) // max_epochs) * max_epochs, max_epochs
    # (1 + cos(pi t)) / 2 written as cos(pi t / 2)**2, which stays above zero up to the phase's end
    return float(np.cos(0.5 * np.pi * (epoch - start) / length) ** 2)


class Trainer:
    """Trains a :class:`~skcohiclust.networks.ContrastiveNetwork` for an objective.

    Parameters
    ----------
    network : ContrastiveNetwork
        The network (from ``objective.make_network``), already on ``source.device``.
    augmentation : ImageAugmentation or VectorAugmentation
        How views are drawn.
    source : BatchSource
        The training data.
    config : TrainingConfig
        Settings of the loop.
    objective : Objective
        What is trained: loss, phases, the method's state.
    seed : int
        Seeds shuffling, augmentation and torch's global generator during
        training (used by custom modules, e.g. dropout).
    callbacks : sequence, optional
        See :mod:`skcohiclust.callbacks`.
    checkpoint_dir : str or path, optional
        Where to write checkpoints.
    metadata : dict, optional
        Written with each checkpoint and compared on resume (see
        :func:`~skcohiclust.checkpoints.run_metadata`).
    group : ProcessGroup, optional
        Train data-parallel in this process group (see
        :mod:`skcohiclust.distributed`): each process runs the network on
        its part of every batch, the loss is that of the whole batch, and
        rank 0 alone writes checkpoints and shows progress.

    Attributes
    ----------
    epoch : int
        Epochs completed.
    history : list of dict
        One entry per completed epoch.
    stopped : bool
        Whether a callback stopped the last call of :meth:`fit`.
    batch_indices : ndarray or None
        The training rows of the batch being trained (set before each
        step; objectives with per-sample state, such as SeCu's cluster
        assignments, read it).
    """

    def __init__(
        self,
        network,
        augmentation,
        source,
        config,
        objective,
        seed,
        callbacks=(),
        checkpoint_dir=None,
        metadata=None,
        group: ProcessGroup | None = None,
    ):
        self.network = network
        self.group = group
        self.augmentation = augmentation
        self.source = source
        self.config = config
        self.objective = objective
        self.seed = int(seed)
        self.callbacks = list(callbacks or ())
        self.checkpoint_dir = checkpoint_dir
        self.metadata = plain(dict(metadata or {}))
        self.device = source.device
        self.bfloat16 = config.mixed_precision and native_bfloat16(self.device)
        # the fused kernel: one op for all parameters instead of several per tensor (4x faster on CPU)
        self.optimizer = torch.optim.Adam(
            network.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
        )
        self.view_generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self.shuffle_generator = torch.Generator().manual_seed(self.seed + 1)
        self.global_rng = {"cpu": torch.Generator().manual_seed(self.seed + 2).get_state(), "cuda": None}
        self.epoch = 0
        self.history = []
        self.stopped = False
        #: (n_samples, n_neighbors) int32 table of the neighbour positives, and the data it was mined on
        self.neighbors = None
        self.neighbors_data = None
        #: the training rows of the batch being trained (sorted), set before every step
        self.batch_indices = None
        self._saved_epoch = None
        self._last = config.max_epochs

    @property
    def finished(self) -> bool:
        """True once ``max_epochs`` are done or a callback stopped training."""
        return self.stopped or self.epoch >= self.config.max_epochs

    def settings(self) -> dict:
        """Every setting of the run: the loop's and the objective's (for checkpoints).

        Returns
        -------
        dict
            The fields of ``config`` and :meth:`Objective.settings
            <skcohiclust.objectives.Objective.settings>`, by name.
        """
        return {**asdict(self.config), **self.objective.settings()}

    def phase(self, epoch: int) -> str:
        """The phase of an epoch.

        Parameters
        ----------
        epoch : int
            Epoch index (0 for the first).

        Returns
        -------
        str
            ``"warmup"`` before ``warmup_epochs``, then the objective's
            :attr:`~skcohiclust.objectives.Objective.phase_name`.
        """
        return "warmup" if epoch < self.config.warmup_epochs else self.objective.phase_name

    # -- one step ---------------------------------------------------------------------------
    def _views(self, x, partner=None):
        """Two random views: of ``x`` twice, or of ``x`` and of its neighbours ``partner``."""
        second = x if partner is None else partner
        aug = self.augmentation
        if isinstance(aug, ImageAugmentation):
            size = self.network.input_size
            return aug(x, self.view_generator, size), aug(second, self.view_generator, size)
        mean, std = self.network.input_mean, self.network.input_std
        return aug(x, self.view_generator, mean, std), aug(second, self.view_generator, mean, std)

    def _autocast(self):
        if self.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, x, phase: str, partner=None) -> torch.Tensor:
        """One optimisation step on a batch.

        Parameters
        ----------
        x : torch.Tensor
            The batch's raw inputs, on the device.
        phase : str
            ``"warmup"`` or the objective's phase (passed to its loss).
        partner : torch.Tensor, optional
            Same shape as ``x``: a neighbour of every sample of ``x``; the
            second view of each positive pair is drawn from it instead of
            from the sample itself.

        Returns
        -------
        torch.Tensor
            Detached, one value per name of ``objective.terms``.
        """
        batch = x.shape[0]
        v1, v2 = self._views(x, partner)
        if self.group is not None:  # the views of the whole batch, as one process draws them; then our part
            sizes = shard_sizes(batch, self.group.world_size)
            part = self.group.shard(batch)
            v1, v2, batch = v1[part], v2[part], part.stop - part.start
        with self._autocast():
            out = self.network(torch.cat((v1, v2)))
        stats = self.objective.batch_statistics(out, batch)
        if self.group is not None:
            stats = combine_statistics(stats, sizes, self.group)
        loss, terms = self.objective.loss(stats, phase)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.group is not None:
            all_reduce_gradients(list(self.network.parameters()))
        self.optimizer.step()
        self.objective.observe(stats)
        return terms

    def representation_features(self, rows: np.ndarray, bfloat16: bool = False, chunk: int = 256) -> torch.Tensor:
        """The normalised representation of some training rows.

        :func:`~skcohiclust.networks.normalized_representation`: what the
        tree head routes on, the tree starts cluster and the neighbours are
        mined from.  Computed in evaluation mode (BatchNorm's running
        statistics), without gradients, ``chunk`` rows at a time; the
        network is left in training mode.

        Parameters
        ----------
        rows : numpy.ndarray
            Sorted row indices of the training data.
        bfloat16 : bool, default=False
            Run the network under the trainer's bfloat16 autocast (when it
            uses one): faster, for uses that only rank the features.
        chunk : int, default=256
            Rows per forward pass.

        Returns
        -------
        torch.Tensor
            Shape ``(len(rows), representation_dim)``, float32, on the device.
        """
        self.network.eval()
        autocast = self._autocast() if bfloat16 else contextlib.nullcontext()
        try:
            with torch.no_grad(), autocast:
                return torch.cat(
                    [
                        normalized_representation(
                            self.network(self.source.take(rows[i : i + chunk]), with_projection=False).representation
                        )
                        for i in range(0, len(rows), chunk)
                    ]
                )
        finally:
            self.network.train()

    def mine_neighbors(self, features: torch.Tensor) -> torch.Tensor:
        """Every training sample's ``config.n_neighbors`` nearest neighbours by cosine similarity.

        Above :data:`~skcohiclust.neighbors.MAX_CANDIDATES` rows the
        neighbours are searched among a random subset of that size, drawn
        from the seed.  The similarities are computed in bfloat16 when the
        trainer trains in it (only their order matters).

        Parameters
        ----------
        features : torch.Tensor
            Shape ``(n_samples, d)``: the normalised representation of all
            training rows (:meth:`representation_features`).

        Returns
        -------
        torch.Tensor
            int32 tensor of shape ``(n_samples, k)`` on the CPU, ``k`` the
            smaller of ``n_neighbors`` and the number of candidates less one.
        """
        n = features.shape[0]
        candidates = None
        if n > MAX_CANDIDATES:
            generator = torch.Generator().manual_seed(self.seed + 5)
            candidates = torch.randperm(n, generator=generator)[:MAX_CANDIDATES].sort().values
        k = min(self.config.n_neighbors, (n if candidates is None else MAX_CANDIDATES) - 1)
        dtype = torch.bfloat16 if self.bfloat16 else torch.float32
        return nearest_neighbors(features, k, candidates, dtype=dtype).to(device="cpu", dtype=torch.int32)

    def _refresh_due(self) -> bool:
        """Whether this epoch mines the neighbours again (every ``refresh_epochs(...)`` epochs after the warm-up)."""
        every = refresh_epochs(self.config.refresh_neighbors, len(self.source))
        since = self.epoch - self.config.warmup_epochs
        return every > 0 and since > 0 and since % every == 0

    def _partner_batch(self, indices: np.ndarray, neighbors: torch.Tensor) -> torch.Tensor:
        """One neighbour of every sample of a batch, drawn at random among its ``n_neighbors``."""
        pick = torch.randint(0, neighbors.shape[1], (len(indices),), generator=self.shuffle_generator)
        partners = neighbors[torch.from_numpy(indices), pick].numpy().astype(np.int64)
        unique, inverse = np.unique(partners, return_inverse=True)  # sorted rows: memmaps read in order
        rows = self.source.take(unique)
        return rows[torch.as_tensor(inverse.reshape(-1), device=rows.device)]

    def _set_learning_rate(self, epoch: float) -> None:
        config = self.config
        lr = config.lr * learning_rate_factor(epoch, config.warmup_epochs, config.max_epochs, config.lr_schedule)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    # -- one epoch --------------------------------------------------------------------------
    def _batches(self):
        n = len(self.source)
        batch_size = min(self.config.batch_size, n)
        order = torch.randperm(n, generator=self.shuffle_generator).numpy()
        # equal-sized batches (no runt batch that BatchNorm cannot use)
        return [np.sort(part) for part in np.array_split(order, max(1, n // batch_size))]

    def train_epoch(self) -> dict:
        """Run one epoch and let the objective finish it (e.g. prune).

        Does not advance ``epoch`` (:meth:`fit` does).

        Returns
        -------
        dict
            The epoch's history entry: ``epoch`` (counted from 1),
            ``phase``, the mean of every loss term over the batches, the
            objective's extra values and ``seconds``.
        """
        config, objective = self.config, self.objective
        started = time.perf_counter()
        self.network.train()
        phase = self.phase(self.epoch)
        # neighbours are mined when a phase that pairs them starts (or on data they were not mined on:
        # another partial_fit chunk), and again every refresh_neighbors epochs, from one pass over the
        # data that the objective's start shares; the refresh epochs follow from the epoch alone, so a
        # resumed run mines where an uninterrupted one does
        pairs_neighbours = objective.pairs_neighbours(phase) and config.n_neighbors > 0 and len(self.source) > 1
        fingerprint = data_fingerprint(self.source.X) if pairs_neighbours else None
        mine = pairs_neighbours and (fingerprint != self.neighbors_data or self._refresh_due())
        features = self.representation_features(np.arange(len(self.source)), bfloat16=True) if mine else None
        objective.begin_epoch(self, phase, features)
        if mine:
            self.neighbors = self.mine_neighbors(features)
            if self.group is not None:  # every process mined the same table; rank 0's is the one used
                self.neighbors = broadcast_tensor(self.neighbors, self.device)
            self.neighbors_data = fingerprint
        del features
        neighbors = self.neighbors if pairs_neighbours else None
        sums = torch.zeros(len(objective.terms), device=self.device)
        batches = self._batches()
        progress = _progress(len(batches), self.epoch, self._last, config) if self.is_main else None
        refresh = max(1, len(batches) // 10)
        try:
            for done, indices in enumerate(batches, start=1):
                self._set_learning_rate(self.epoch + (done - 1) / len(batches))
                partner = None if neighbors is None else self._partner_batch(indices, neighbors)
                self.batch_indices = indices  # the rows of the batch, for objectives that keep per-sample state
                sums += self.step(self.source.take(indices), phase, partner)
                if progress is not None:
                    progress.update(1)
                    if done % refresh == 0:
                        progress.set_postfix(self._postfix((sums / done).tolist()), refresh=False)
            extra = objective.end_epoch(self, phase)
            means = (sums / len(batches)).tolist()
            entry = {
                "epoch": self.epoch + 1,
                "phase": phase,
                **dict(zip(objective.terms, means, strict=True)),
                **extra,
                "seconds": time.perf_counter() - started,
            }
            if progress is not None:
                progress.set_postfix(self._postfix(means))
        finally:
            if progress is not None:
                progress.close()
        return entry

    def _postfix(self, means) -> dict:
        shown = {label: f"{value:.4f}" for label, value in zip(self.objective.labels, means, strict=True)}
        return {**shown, **self.objective.progress(self.network)}

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, n_epochs=None) -> list:
        """Train until ``max_epochs`` (or ``n_epochs`` more), a callback stops it, or Ctrl-C.

        After every epoch the callbacks are notified, then a checkpoint is
        written when one is due (every ``checkpoint_every`` epochs, and at
        the last epoch or a callback's stop).  Ctrl-C (``KeyboardInterrupt``)
        restores the state at the end of the last completed epoch, writes it
        as a checkpoint if it is newer than the last one, warns, and returns.

        Parameters
        ----------
        n_epochs : int, optional
            Run at most this many epochs from the current one (ignoring
            ``max_epochs``).

        Returns
        -------
        list of dict
            The whole history.
        """
        self._last = self.config.max_epochs if n_epochs is None else self.epoch + n_epochs
        self.stopped = False
        if self.group is not None:  # one model: rank 0's (the same already, unless a process loaded another)
            broadcast_module(self.network)
        with self._own_global_rng(), self._synchronised_batchnorm():
            snapshot = self._snapshot()
            try:
                call_hook(self.callbacks, "on_train_begin", self.history, self.network)
                while self.epoch < self._last:
                    entry = self.train_epoch()
                    _check_finite_loss(entry, self.epoch + 1, self.config, self.bfloat16)
                    self.epoch += 1
                    self.history.append(entry)
                    self._capture_global_rng()
                    snapshot = self._snapshot()
                    self.stopped = notify(self.callbacks, self.history, self.network)
                    if self.group is not None:  # rank 0's callbacks decide for all
                        self.stopped = bool(broadcast_object(self.stopped))
                    if self.checkpoint_dir is not None and (
                        self.stopped or self.epoch >= self._last or self.epoch % self.config.checkpoint_every == 0
                    ):
                        self.save_checkpoint()
                    if self.stopped:
                        break
            except KeyboardInterrupt:
                self._restore(snapshot)
                saved = ""
                if self.checkpoint_dir is not None and self._saved_epoch != self.epoch and self.epoch > 0:
                    self.save_checkpoint(wait=False)
                    saved = f" It is saved in {self.checkpoint_path()}; fit again to resume."
                warnings.warn(
                    f"training interrupted; the model is left as it was at the end of epoch {self.epoch} "
                    f"(the last completed one), and history_ has {len(self.history)} entries.{saved}",
                    RuntimeWarning,
                    stacklevel=3,
                )
            call_hook(self.callbacks, "on_train_end", self.history, self.network)
        return self.history

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints and shows progress (always, unless data-parallel rank > 0)."""
        return self.group is None or self.group.is_main

    def _synchronised_batchnorm(self):
        if self.group is None:
            return contextlib.nullcontext()
        return synchronised_batchnorm(self.network, self.device)

    @contextlib.contextmanager
    def _own_global_rng(self):
        """Run with torch's global generators in this run's own state, then give the caller's back."""
        cuda = self.device.type == "cuda"
        devices = [self.device.index if self.device.index is not None else torch.cuda.current_device()] if cuda else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.global_rng["cpu"])
            if cuda:
                with torch.cuda.device(devices[0]):
                    if self.global_rng.get("cuda") is not None:
                        torch.cuda.set_rng_state(self.global_rng["cuda"])
                    else:
                        torch.cuda.manual_seed(self.seed + 2)
            yield

    def _capture_global_rng(self) -> None:
        self.global_rng = {"cpu": torch.get_rng_state(), "cuda": None}
        if self.device.type == "cuda":
            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            self.global_rng["cuda"] = torch.cuda.get_rng_state(index)

    # -- state ------------------------------------------------------------------------------
    def training_state(self) -> TrainingState:
        """The state beyond the network that :meth:`load_training_state` continues from.

        Returns
        -------
        TrainingState
            Optimiser, generators, epoch, neighbour table and the objective's
            state (no data).
        """
        return TrainingState(self._training_part())

    def load_training_state(self, state: TrainingState, history) -> None:
        """Continue from a :class:`~skcohiclust.checkpoints.TrainingState` (the network must be the fitted one).

        Parameters
        ----------
        state : TrainingState
            From a previous :meth:`training_state`.
        history : list of dict
            The history so far (copied).
        """
        self._load_training_part(state.state)
        self.history = list(history)

    def _training_part(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "view_generator": self.view_generator.get_state(),
            "shuffle_generator": self.shuffle_generator.get_state(),
            "global_rng": dict(self.global_rng),
            **self.objective.state_dict(self.network),
            "neighbors": self.neighbors,
            "neighbors_data": self.neighbors_data,
            "epoch": self.epoch,
            "stopped": self.stopped,
            "seed": self.seed,
            "device_type": self.device.type,
        }

    def _load_training_part(self, part: dict) -> None:
        self.optimizer.load_state_dict(part["optimizer"])
        for group in self.optimizer.param_groups:  # this run's settings win (its lr is set at every step)
            group["weight_decay"] = self.config.weight_decay
        self.seed = int(part["seed"])
        self.epoch = int(part["epoch"])
        self.stopped = bool(part["stopped"])
        self.shuffle_generator.set_state(part["shuffle_generator"].cpu())
        rng = part["global_rng"]
        same_device = part["device_type"] == self.device.type
        if same_device:
            self.view_generator.set_state(part["view_generator"].cpu())
        else:  # a CUDA generator's state does not fit a CPU one (and back): derive a fresh seed
            self.view_generator.manual_seed(self.seed + 3 + self.epoch)
        self.global_rng = {
            "cpu": rng["cpu"].cpu(),
            "cuda": rng["cuda"].cpu() if same_device and rng.get("cuda") is not None else None,
        }
        self.objective.load_state_dict(part, self.network)
        neighbors = part.get("neighbors")  # absent from states saved before neighbour positives
        self.neighbors = None if neighbors is None else neighbors.to(device="cpu", dtype=torch.int32)
        self.neighbors_data = part.get("neighbors_data")

    def _snapshot(self) -> dict:
        """A copy of everything that one more epoch changes (restored on Ctrl-C)."""
        return {
            "network": {k: v.detach().clone() for k, v in self.network.state_dict().items()},
            "training": copy.deepcopy(self._training_part()),
            "n_history": len(self.history),
        }

    def _restore(self, snapshot: dict) -> None:
        self.network.load_state_dict(snapshot["network"])
        self._load_training_part(snapshot["training"])
        del self.history[snapshot["n_history"] :]

    def state_dict(self) -> dict:
        """Everything needed to continue training exactly where it stands (a checkpoint).

        Returns
        -------
        dict
            The checkpoint format, the network's state, the training state,
            the history, the settings and the run's metadata.
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "network": self.network.state_dict(),
            **self._training_part(),
            "history": plain(self.history),
            "config": plain(self.settings()),
            "metadata": self.metadata,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict`, refusing one of another model or other data.

        Parameters
        ----------
        state : dict
            From :meth:`state_dict` (e.g. read from a checkpoint).

        Raises
        ------
        ValueError
            If the checkpoint's format, method, architecture, input, settings
            or data differ from this run's, or its network does not load.
        """
        where = self.checkpoint_path() if self.checkpoint_dir is not None else "the checkpoint"
        check_format(state, where)
        check_metadata(state.get("metadata", {}), self.metadata, where)
        try:
            self.network.load_state_dict(state["network"])
        except RuntimeError as exc:
            raise ValueError(
                f"the network saved in {where} does not fit this model's network (a different custom "
                f"backbone?); delete it or use another checkpoint_dir.\n{exc}"
            ) from exc
        self._load_training_part(state)
        self.history = list(state["history"])
        self._saved_epoch = self.epoch

    def checkpoint_path(self) -> str:
        """Path of the checkpoint file in ``checkpoint_dir``.

        Returns
        -------
        str
            ``checkpoint_dir`` joined with :data:`~skcohiclust.checkpoints.CHECKPOINT_NAME`.
        """
        return os.path.join(os.fspath(self.checkpoint_dir), CHECKPOINT_NAME)

    def save_checkpoint(self, wait: bool = True) -> None:
        """Write the state atomically, with a checksum (see :func:`~skcohiclust.checkpoints.write_checkpoint`).

        In a data-parallel run rank 0 alone writes, and every process waits
        for it (unless ``wait`` is False: after Ctrl-C, when the others may
        be gone).

        Parameters
        ----------
        wait : bool, default=True
            Whether the processes of a data-parallel run wait for the write.
        """
        if self.is_main:
            os.makedirs(self.checkpoint_dir, exist_ok=True)
            write_checkpoint(self.state_dict(), self.checkpoint_path())
        if self.group is not None and wait:
            self.group.barrier()
        self._saved_epoch = self.epoch

    def resume(self) -> bool:
        """Load the checkpoint in ``checkpoint_dir`` if there is one.

        Returns
        -------
        bool
            True if a checkpoint was loaded.

        Raises
        ------
        ValueError
            If the checkpoint cannot be read or belongs to another model or
            other data (see :meth:`load_state_dict`).
        """
        if self.checkpoint_dir is None:
            return False
        if self.group is not None:  # rank 0 may still be writing the checkpoint of an interrupted fit
            self.group.barrier()
        if not os.path.exists(self.checkpoint_path()):
            return False
        state = read_checkpoint(self.checkpoint_path(), map_location=self.device)  # CheckpointError if unusable
        try:
            self.load_state_dict(state)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:  # the right format, but parts missing
            raise ValueError(
                f"{self.checkpoint_path()} is not a complete skcohiclust checkpoint ({type(exc).__name__}: {exc}); "
                "delete it to start afresh, or use another checkpoint_dir."
            ) from None
        if self.config.verbose and self.is_main:
            state = "finished" if self.finished else "resuming"
            print(f"checkpoint {self.checkpoint_path()}: epoch {self.epoch}, {state}", file=sys.stderr)
        return True


def _check_finite_loss(entry: dict, epoch: int, config: TrainingConfig, bfloat16: bool) -> None:
    """Stop with a clear error when an epoch's loss is NaN or infinite (training diverged)."""
    if np.isfinite(entry["loss"]):
        return
    hint = "a lower lr" + (" or mixed_precision=False (bfloat16 was used)" if bfloat16 else "")
    raise ValueError(
        f"training diverged: the loss of epoch {epoch} is {entry['loss']} (lr={config.lr}, batch_size="
        f"{config.batch_size}); the network would predict nothing meaningful. Try {hint}, or check the input."
    )


def _progress(total, epoch, last, config):
    if not config.verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{last}", leave=True, dynamic_ncols=True, file=sys.stderr)
