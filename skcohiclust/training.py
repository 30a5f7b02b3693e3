"""The fit loop: warm-up and tree phases, pruning schedule, progress, checkpoints.

:class:`Trainer` owns everything that changes while training (network,
optimiser, random generators, epoch counter, pruning mask, history) and can
save and restore all of it, so that

* an interrupted run resumes exactly from its last checkpoint
  (:meth:`Trainer.save_checkpoint`, :meth:`Trainer.resume`);
* Ctrl-C leaves the model as it stood at the end of the last completed epoch;
* a fitted estimator keeps a :class:`TrainingState` (no data, picklable) from
  which ``warm_start`` and ``partial_fit`` continue.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .augment import ImageAugmentation
from .callbacks import call_hook, notify
from .checkpoints import read_checkpoint, write_checkpoint
from .losses import balance_regularizer, hierarchical_contrastive_loss, leaf_balance, nt_xent, tree_batch_statistics
from .neighbors import MAX_CANDIDATES, nearest_neighbors
from .tree import level_slice, node_active_mask, node_probabilities
from .tree_init import bisecting_hyperplanes, clustered_tree

__all__ = [
    "TrainingConfig",
    "Trainer",
    "TrainingState",
    "pruning_schedule",
    "learning_rate_factor",
    "native_bfloat16",
    "data_fingerprint",
    "tree_start_rows",
    "run_metadata",
    "CHECKPOINT_NAME",
]

#: File name of the checkpoint inside ``checkpoint_dir``.
CHECKPOINT_NAME = "checkpoint.pt"
#: Version of the checkpoint layout; other versions are refused.
CHECKPOINT_FORMAT = 1
#: Settings that do not change the trajectory of training (not compared on resume).
_COSMETIC_SETTINGS = ("verbose", "checkpoint_every")


@dataclass
class TrainingConfig:
    """Resolved training settings (no ``"auto"`` left).

    Attributes
    ----------
    depth : int
        Depth of the tree.
    n_leaves : int
        Leaves to keep; fewer than ``2**depth`` turns pruning on.
    max_epochs, warmup_epochs : int
        Total epochs, and epochs with the instance loss alone.
    prune_start, prune_stop : int
        Pruning removes leaves at the end of epochs in ``[prune_start, prune_stop)``.
    batch_size : int
        Samples per batch (each gives two views).
    lr, weight_decay, temperature : float
        Adam's settings and NT-Xent's temperature.
    mixed_precision : bool
        bfloat16 autocast for the network's training steps, where the
        device runs bfloat16 natively (see :func:`native_bfloat16`).
    verbose : int
        0 silent; 1 a progress bar per epoch.
    checkpoint_every : int
        Epochs between checkpoints (when a directory is given).
    tree_init : {"kmeans", "bisect", "random"}
        How the tree head starts its phase: k-means clusters of the
        representation arranged into a tree (``n_leaves`` leaves from the
        start), bisecting 2-means on it (all leaves), or as initialised; see
        :mod:`skcohiclust.tree_init`.
    n_neighbors : int
        0: the positive pairs of the tree phase are two views of one sample
        (the paper).  ``k > 0``: when the tree phase starts, each sample's
        ``k`` nearest neighbours in the representation are found, and the
        second view of each pair is a view of one of them, drawn at random
        (see :mod:`skcohiclust.neighbors`).
    lr_schedule : {"constant", "cosine"}
        ``"cosine"``: within each phase the learning rate falls from ``lr``
        to zero along a half cosine, step by step (see :func:`learning_rate_factor`).
    leaf_balance : float
        Weight of :func:`~skcohiclust.losses.leaf_balance` in the tree
        phase's objective (0: the paper's objective).
    """

    depth: int
    n_leaves: int
    max_epochs: int
    warmup_epochs: int
    prune_start: int
    prune_stop: int
    batch_size: int
    lr: float
    weight_decay: float
    temperature: float
    mixed_precision: bool = False
    verbose: int = 0
    checkpoint_every: int = 1
    tree_init: str = "kmeans"
    n_neighbors: int = 0
    lr_schedule: str = "constant"
    leaf_balance: float = 0.0


#: Training rows the data-dependent tree starts look at, at most.
TREE_START_ROWS = 20000


def tree_start_rows(n: int, max_rows: int = TREE_START_ROWS) -> np.ndarray:
    """The evenly spaced training rows a tree start uses: all ``n`` up to ``max_rows``.

    Parameters
    ----------
    n : int
        Training rows, ``n >= 1``.
    max_rows : int, default=TREE_START_ROWS

    Returns
    -------
    numpy.ndarray of int64
        Sorted, distinct row indices in ``[0, n)``.
    """
    return np.unique(np.linspace(0, n - 1, min(n, max_rows)).astype(np.int64))


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` computes in bfloat16 natively (so autocast to it pays).

    CUDA GPUs that support bfloat16, and CPUs with AVX512-BF16 or AMX
    instructions.  On other CPUs bfloat16 is emulated and slower than
    float32, so mixed precision is left off there.

    Parameters
    ----------
    device : torch.device

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


def data_fingerprint(X, n_rows: int = 64) -> str:
    """A cheap fingerprint of a data set: its shape, dtype and a sample of rows.

    Only ``n_rows`` evenly spaced rows are read, so a memory-mapped file is
    not read whole.  Two arrays that differ only outside those rows share a
    fingerprint: it guards against resuming on the wrong data by mistake,
    it is not a checksum.

    Parameters
    ----------
    X : array-like
        Anything with ``shape``, ``dtype`` and row indexing by an integer array.
    n_rows : int, default=64
        Rows to hash.

    Returns
    -------
    str
        Hexadecimal digest.
    """
    n = int(X.shape[0])
    rows = np.unique(np.linspace(0, max(n - 1, 0), num=min(n, n_rows)).round().astype(np.int64))
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((tuple(int(s) for s in X.shape), str(X.dtype))).encode())
    digest.update(np.ascontiguousarray(X[rows]).tobytes())
    return digest.hexdigest()


def run_metadata(X, model_input_shape, backbone, network, augmentation, config, projection_dim) -> dict:
    """What a checkpoint must match before it is loaded.

    Parameters
    ----------
    X : array-like
        The validated training data (only its shape, dtype and a few rows
        are read, see :func:`data_fingerprint`).
    model_input_shape : tuple of int
        Shape of one model input (``(C, H, W)`` or ``(d,)``).
    backbone : str
        Resolved backbone name (``"custom"`` for a module).
    network : CoHiClustNetwork
        The network (names the class of a custom backbone).
    augmentation : object
        The resolved augmentation (compared by ``repr``).
    config : TrainingConfig
        Training settings; all but ``verbose`` and ``checkpoint_every`` are compared.
    projection_dim : int
        Output size of the projection head.

    Returns
    -------
    dict
        Plain Python values, in the order they are checked.
    """
    if backbone == "custom":
        cls = type(network.backbone)
        backbone = f"custom:{cls.__module__}.{cls.__qualname__}"
    settings = {k: v for k, v in asdict(config).items() if k not in _COSMETIC_SETTINGS}
    return _plain(
        {
            "depth": config.depth,
            "backbone": backbone,
            "projection_dim": projection_dim,
            "input_shape": tuple(X.shape[1:]),
            "model_input_shape": tuple(model_input_shape),
            "dtype": str(X.dtype),
            "augmentation": repr(augmentation),
            "settings": settings,
            "n_samples": int(X.shape[0]),
            "data": data_fingerprint(X),
        }
    )


class TrainingState:
    """What training needs, besides the network, to continue exactly.

    Optimiser state, random generator states, epoch counter, the pruning
    mask as training left it, and the seed.  It holds no reference to the
    training data.  Pickling stores it as bytes (``torch.save``); unpickling
    puts its tensors on the CPU, and :class:`Trainer` moves them where the
    network is.

    Parameters
    ----------
    state : dict
        From :meth:`Trainer.training_state`.
    """

    def __init__(self, state: dict):
        self.state = state

    @property
    def epoch(self) -> int:
        """Epochs trained so far."""
        return int(self.state["epoch"])

    def __getstate__(self):
        buffer = io.BytesIO()
        torch.save(self.state, buffer)
        return {"payload": buffer.getvalue()}

    def __setstate__(self, data):
        self.state = torch.load(io.BytesIO(data["payload"]), map_location="cpu", weights_only=True)

    def __repr__(self) -> str:
        return f"TrainingState(epoch={self.epoch})"


class Trainer:
    """Trains a :class:`~skcohiclust.networks.CoHiClustNetwork`.

    Parameters
    ----------
    network : CoHiClustNetwork
        The network, already on ``source.device``.
    augmentation : ImageAugmentation or VectorAugmentation
        How views are drawn.
    source : BatchSource
        The training data.
    config : TrainingConfig
        Settings.
    seed : int
        Seeds shuffling, augmentation and torch's global generator during
        training (used by custom modules, e.g. dropout).
    callbacks : sequence, optional
        See :mod:`skcohiclust.callbacks`.
    checkpoint_dir : str or path, optional
        Where to write checkpoints.
    metadata : dict, optional
        Written with each checkpoint and compared on resume (see
        :func:`run_metadata`).

    Attributes
    ----------
    epoch : int
        Epochs completed.
    history : list of dict
        One entry per completed epoch.
    stopped : bool
        Whether a callback stopped the last call of :meth:`fit`.
    """

    def __init__(self, network, augmentation, source, config, seed, callbacks=(), checkpoint_dir=None, metadata=None):
        self.network = network
        self.augmentation = augmentation
        self.source = source
        self.config = config
        self.seed = int(seed)
        self.callbacks = list(callbacks or ())
        self.checkpoint_dir = checkpoint_dir
        self.metadata = _plain(dict(metadata or {}))
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
        #: (n_samples, n_neighbors) int32 table of the tree phase's neighbours, and the data it was mined on
        self.neighbors = None
        self.neighbors_data = None
        self._saved_epoch = None
        self._last = config.max_epochs
        self.schedule = pruning_schedule(
            max(0, 2**config.depth - config.n_leaves), config.prune_start, config.prune_stop
        )

    @property
    def finished(self) -> bool:
        """True once ``max_epochs`` are done or a callback stopped training."""
        return self.stopped or self.epoch >= self.config.max_epochs

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

    def step(self, x, tree_phase: bool, node_mask, partner=None):
        """One optimisation step on a batch; returns the detached loss terms and leaf mass.

        ``partner`` (same shape as ``x``), when given, is a neighbour of
        every sample of ``x``: the second view of each positive pair is
        drawn from it instead of from the sample itself.
        """
        depth = self.config.depth
        batch = x.shape[0]
        v1, v2 = self._views(x, partner)
        with self._autocast():
            out = self.network(torch.cat((v1, v2)))
        projection = out.projection.float()  # the loss in float32 whatever the network ran in
        instance = nt_xent(projection[:batch], projection[batch:], self.config.temperature)
        loss = instance
        tree = reg = instance.new_zeros(())
        nodes = node_probabilities(out.left_prob.float(), depth)
        stats = tree_batch_statistics(nodes[:batch], nodes[batch:], node_mask)
        if tree_phase:
            tree = hierarchical_contrastive_loss(stats, depth)
            reg = balance_regularizer(stats, depth, node_mask) * 2.0**-depth
            if self.config.leaf_balance:
                reg = reg + self.config.leaf_balance * leaf_balance(stats, depth, node_mask)
            loss = loss + tree + reg
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        leaf_mass = stats.sum_mass[level_slice(depth)].detach()
        return torch.stack((loss.detach(), instance.detach(), tree.detach(), reg.detach())), leaf_mass

    def initialise_tree(self, features: torch.Tensor | None = None, max_rows: int = TREE_START_ROWS) -> None:
        """Set the tree head from the current representation (``config.tree_init``).

        ``"kmeans"`` also sets the leaf mask (see
        :func:`~skcohiclust.tree_init.clustered_tree`).  Uses at most
        ``max_rows`` evenly spaced training rows; deterministic
        given the seed, so a resumed run initialises exactly as an
        uninterrupted one.

        Parameters
        ----------
        features : torch.Tensor, optional
            The routing features of all training rows, when already
            computed (see :meth:`routing_features`); else they are computed
            for the rows used.
        max_rows : int, default=TREE_START_ROWS
            Rows used at most (:func:`tree_start_rows`).
        """
        n = len(self.source)
        rows = tree_start_rows(n, max_rows)
        h = self.routing_features(rows) if features is None else features[torch.from_numpy(rows).to(features.device)]
        with torch.no_grad():
            if self.config.tree_init == "kmeans":
                n_leaves = min(self.config.n_leaves, len(rows))
                weight, bias, leaf_mask = clustered_tree(h, self.config.depth, n_leaves, self.seed + 3)
                self.network.leaf_mask.copy_(leaf_mask.to(self.network.leaf_mask.device))
            else:
                generator = torch.Generator().manual_seed(self.seed + 3)
                weight, bias = bisecting_hyperplanes(h, self.config.depth, generator)
            linear = self.network.tree_head.linear
            linear.weight.copy_(weight.to(linear.weight))
            linear.bias.copy_(bias.to(linear.bias))
        # the head's Adam moments belong to the old weights
        for param in (linear.weight, linear.bias):
            self.optimizer.state.pop(param, None)

    def routing_features(self, rows: np.ndarray, bfloat16: bool = False, chunk: int = 256) -> torch.Tensor:
        """The features the tree head routes on (the normalised representation) of some training rows.

        Computed in evaluation mode (BatchNorm's running statistics), without
        gradients, ``chunk`` rows at a time; the network is left in training mode.

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
                        self.network.tree_head.features(
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
            Shape ``(n_samples, d)``: the routing features of all training
            rows (:meth:`routing_features`).

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
        """Run one epoch, apply the pruning step due, and return its history entry."""
        config = self.config
        started = time.perf_counter()
        self.network.train()
        tree_phase = self.epoch >= config.warmup_epochs
        # neighbours are mined once, when the tree phase starts (or on data they were not mined on:
        # another partial_fit chunk), from one pass over the data that the tree's start shares
        pairs_neighbours = tree_phase and config.n_neighbors > 0 and len(self.source) > 1
        fingerprint = data_fingerprint(self.source.X) if pairs_neighbours else None
        mine = pairs_neighbours and fingerprint != self.neighbors_data
        features = self.routing_features(np.arange(len(self.source)), bfloat16=True) if mine else None
        if tree_phase and self.epoch == config.warmup_epochs and config.tree_init != "random":
            self.initialise_tree(features)
        if mine:
            self.neighbors = self.mine_neighbors(features)
            self.neighbors_data = fingerprint
        del features
        neighbors = self.neighbors if pairs_neighbours else None
        leaf_mask = self.network.leaf_mask
        node_mask = node_active_mask(leaf_mask, config.depth)
        sums = torch.zeros(4, device=self.device)
        mass = torch.zeros(leaf_mask.shape[0], device=self.device)
        batches = self._batches()
        progress = _progress(len(batches), self.epoch, self._last, config)
        refresh = max(1, len(batches) // 10)
        try:
            for done, indices in enumerate(batches, start=1):
                self._set_learning_rate(self.epoch + (done - 1) / len(batches))
                partner = None if neighbors is None else self._partner_batch(indices, neighbors)
                terms, leaf_mass = self.step(self.source.take(indices), tree_phase, node_mask, partner)
                sums += terms
                mass += leaf_mass
                if progress is not None:
                    progress.update(1)
                    if done % refresh == 0:
                        progress.set_postfix(_postfix((sums / done).tolist(), int(leaf_mask.sum())), refresh=False)
            n_remove = int(self.schedule[self.epoch]) if self.epoch < len(self.schedule) else 0
            if tree_phase and n_remove:
                remove_least_massive(leaf_mask, mass, n_remove, config.n_leaves)
            means = (sums / len(batches)).tolist()
            entry = {
                "epoch": self.epoch + 1,
                "phase": "tree" if tree_phase else "warmup",
                "loss": means[0],
                "instance_loss": means[1],
                "tree_loss": means[2],
                "regularizer": means[3],
                "n_leaves": int(leaf_mask.sum()),
                "seconds": time.perf_counter() - started,
            }
            if progress is not None:
                progress.set_postfix(_postfix(means, entry["n_leaves"]))
        finally:
            if progress is not None:
                progress.close()
        return entry

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
        with self._own_global_rng():
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
                    self.save_checkpoint()
                    saved = f" It is saved in {self.checkpoint_path()}; fit again to resume."
                warnings.warn(
                    f"training interrupted; the model is left as it was at the end of epoch {self.epoch} "
                    f"(the last completed one), and history_ has {len(self.history)} entries.{saved}",
                    RuntimeWarning,
                    stacklevel=3,
                )
            call_hook(self.callbacks, "on_train_end", self.history, self.network)
        return self.history

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
        """The state beyond the network that :meth:`load_training_state` continues from."""
        return TrainingState(self._training_part())

    def load_training_state(self, state: TrainingState, history) -> None:
        """Continue from a :class:`TrainingState` (the network is expected to be the fitted one).

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
            "leaf_mask": self.network.leaf_mask.detach().clone(),
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
        with torch.no_grad():
            self.network.leaf_mask.copy_(part["leaf_mask"].to(self.network.leaf_mask.device))
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
        """Everything needed to continue training exactly where it stands (a checkpoint)."""
        return {
            "format": CHECKPOINT_FORMAT,
            "network": self.network.state_dict(),
            **self._training_part(),
            "history": _plain(self.history),
            "config": _plain(asdict(self.config)),
            "metadata": self.metadata,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict`, refusing one of another model or other data.

        Raises
        ------
        ValueError
            If the checkpoint's format, architecture, input, settings or data
            differ from this run's, or its network does not load.
        """
        where = self.checkpoint_path() if self.checkpoint_dir is not None else "the checkpoint"
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{where} has checkpoint format {state.get('format')!r}, this version reads format "
                f"{CHECKPOINT_FORMAT}; delete it or use another checkpoint_dir."
            )
        _check_metadata(state.get("metadata", {}), self.metadata, where)
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
        """Path of the checkpoint file in ``checkpoint_dir``."""
        return os.path.join(os.fspath(self.checkpoint_dir), CHECKPOINT_NAME)

    def save_checkpoint(self) -> None:
        """Write the state atomically, with a checksum (see :func:`~skcohiclust.checkpoints.write_checkpoint`)."""
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        write_checkpoint(self.state_dict(), self.checkpoint_path())
        self._saved_epoch = self.epoch

    def resume(self) -> bool:
        """Load the checkpoint in ``checkpoint_dir`` if there is one; True if loaded.

        Raises
        ------
        ValueError
            If the checkpoint cannot be read or belongs to another model or
            other data (see :meth:`load_state_dict`).
        """
        if self.checkpoint_dir is None or not os.path.exists(self.checkpoint_path()):
            return False
        state = read_checkpoint(self.checkpoint_path(), map_location=self.device)  # CheckpointError if unusable
        try:
            self.load_state_dict(state)
        except (KeyError, TypeError, AttributeError, IndexError) as exc:  # the right format, but parts missing
            raise ValueError(
                f"{self.checkpoint_path()} is not a complete skcohiclust checkpoint ({type(exc).__name__}: {exc}); "
                "delete it to start afresh, or use another checkpoint_dir."
            ) from None
        if self.config.verbose:
            state = "finished" if self.finished else "resuming"
            print(f"checkpoint {self.checkpoint_path()}: epoch {self.epoch}, {state}", file=sys.stderr)
        return True


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


#: How the metadata keys are named in errors, and what a mismatch means.
_DATA_KEYS = ("n_samples", "data")


def _check_metadata(saved: dict, current: dict, where: str) -> None:
    """Raise a ValueError naming the first key on which a checkpoint and this run disagree."""
    for key, value in current.items():
        if key not in saved:
            raise ValueError(f"{where} does not record {key!r}; delete it or use another checkpoint_dir.")
        old = saved[key]
        if old == value:
            continue
        if key in _DATA_KEYS:
            raise ValueError(
                f"{where} was written by a fit on other data ({saved.get('n_samples')} samples of shape "
                f"{saved.get('input_shape')}, fingerprint {str(saved.get('data'))[:12]}) than this fit "
                f"({current.get('n_samples')} samples of shape {current.get('input_shape')}, fingerprint "
                f"{str(current.get('data'))[:12]}); use another checkpoint_dir, or delete the checkpoint "
                "to start afresh."
            )
        if key == "settings":
            diff = ", ".join(
                f"{name}={old.get(name)!r} there, {value.get(name)!r} here"
                for name in sorted(set(old) | set(value))
                if old.get(name) != value.get(name)
            )
            raise ValueError(
                f"{where} was written with other training settings ({diff}); use the same parameters, "
                "another checkpoint_dir, or warm_start=True on the fitted model to train further."
            )
        raise ValueError(
            f"{where} was written for {key}={old!r}, but this model has {key}={value!r}; use the matching "
            "parameters and data, another checkpoint_dir, or delete the checkpoint."
        )


def _plain(value):
    """Plain Python data (loadable with ``torch.load(weights_only=True)``): numpy scalars become numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return repr(value)


def _check_finite_loss(entry: dict, epoch: int, config: TrainingConfig, bfloat16: bool) -> None:
    """Stop with a clear error when an epoch's loss is NaN or infinite (training diverged)."""
    if np.isfinite(entry["loss"]):
        return
    hint = "a lower lr" + (" or mixed_precision=False (bfloat16 was used)" if bfloat16 else "")
    raise ValueError(
        f"training diverged: the loss of epoch {epoch} is {entry['loss']} (lr={config.lr}, batch_size="
        f"{config.batch_size}); the network would predict nothing meaningful. Try {hint}, or check the input."
    )


def _postfix(means, n_leaves) -> dict:
    return {
        "loss": f"{means[0]:.4f}",
        "instance": f"{means[1]:.4f}",
        "tree": f"{means[2]:.4f}",
        "reg": f"{means[3]:.4f}",
        "leaves": n_leaves,
    }


def _progress(total, epoch, last, config):
    if not config.verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{last}", leave=True, dynamic_ncols=True, file=sys.stderr)
