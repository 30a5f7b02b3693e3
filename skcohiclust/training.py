"""The fit loop: warm-up and tree phases, pruning schedule, checkpoints.

:class:`Trainer` owns everything that changes while training (network,
optimiser, random generators, epoch counter, history) and can save and
restore all of it, so an interrupted run resumes exactly.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .augment import ImageAugmentation
from .callbacks import notify
from .losses import balance_regularizer, hierarchical_contrastive_loss, nt_xent, tree_batch_statistics
from .tree import level_slice, node_active_mask, node_probabilities

__all__ = ["TrainingConfig", "Trainer", "pruning_schedule", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"


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
        bfloat16 autocast for the network (CUDA).
    verbose : int
        0 silent; 1 a progress bar per epoch.
    checkpoint_every : int
        Epochs between checkpoints (when a directory is given).
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
        Seeds shuffling and augmentation.
    callbacks : sequence, optional
        See :mod:`skcohiclust.callbacks`.
    checkpoint_dir : str or path, optional
        Where to write checkpoints.
    metadata : dict, optional
        Written with each checkpoint and compared on resume.
    """

    def __init__(self, network, augmentation, source, config, seed, callbacks=(), checkpoint_dir=None, metadata=None):
        self.network = network
        self.augmentation = augmentation
        self.source = source
        self.config = config
        self.callbacks = list(callbacks or ())
        self.checkpoint_dir = checkpoint_dir
        self.metadata = dict(metadata or {})
        self.device = source.device
        self.optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.view_generator = torch.Generator(device=self.device).manual_seed(seed)
        self.shuffle_generator = torch.Generator().manual_seed(seed + 1)
        self.epoch = 0
        self.history = []
        self.schedule = pruning_schedule(
            max(0, 2**config.depth - config.n_leaves), config.prune_start, config.prune_stop
        )

    # -- one step ---------------------------------------------------------------------------
    def _views(self, x):
        aug = self.augmentation
        if isinstance(aug, ImageAugmentation):
            size = self.network.input_size
            return aug(x, self.view_generator, size), aug(x, self.view_generator, size)
        mean, std = self.network.input_mean, self.network.input_std
        return aug(x, self.view_generator, mean, std), aug(x, self.view_generator, mean, std)

    def _autocast(self):
        if self.config.mixed_precision and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, x, tree_phase: bool, node_mask):
        """One optimisation step on a batch; returns the detached loss terms and leaf mass."""
        depth = self.config.depth
        batch = x.shape[0]
        v1, v2 = self._views(x)
        with self._autocast():
            out = self.network(torch.cat((v1, v2)))
        instance = nt_xent(out.projection[:batch], out.projection[batch:], self.config.temperature)
        loss = instance
        tree = reg = instance.new_zeros(())
        nodes = node_probabilities(out.left_prob.float(), depth)
        stats = tree_batch_statistics(nodes[:batch], nodes[batch:], node_mask)
        if tree_phase:
            tree = hierarchical_contrastive_loss(stats, depth)
            reg = balance_regularizer(stats, depth, node_mask) * 2.0**-depth
            loss = loss + tree + reg
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        leaf_mass = stats.sum_mass[level_slice(depth)].detach()
        return torch.stack((loss.detach(), instance.detach(), tree.detach(), reg.detach())), leaf_mass

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
        leaf_mask = self.network.leaf_mask
        node_mask = node_active_mask(leaf_mask, config.depth)
        sums = torch.zeros(4, device=self.device)
        mass = torch.zeros(leaf_mask.shape[0], device=self.device)
        batches = self._batches()
        progress = _progress(len(batches), self.epoch, config)
        for indices in batches:
            terms, leaf_mass = self.step(self.source.take(indices), tree_phase, node_mask)
            sums += terms
            mass += leaf_mass
            if progress is not None:
                progress.update(1)
        n_remove = int(self.schedule[self.epoch]) if self.epoch < len(self.schedule) else 0
        if tree_phase and n_remove:
            remove_least_massive(leaf_mask, mass, n_remove, config.n_leaves)
        means = (sums / len(batches)).tolist()
        entry = {
            "epoch": self.epoch + 1,
            "loss": means[0],
            "instance_loss": means[1],
            "tree_loss": means[2],
            "regularizer": means[3],
            "n_leaves": int(leaf_mask.sum()),
            "seconds": time.perf_counter() - started,
        }
        if progress is not None:
            progress.set_postfix({k: round(v, 4) if isinstance(v, float) else v for k, v in entry.items() if k != "epoch"})
            progress.close()
        return entry

    # -- the loop ---------------------------------------------------------------------------
    def fit(self, n_epochs=None) -> list:
        """Train until ``max_epochs`` (or ``n_epochs`` more), a callback stops it, or Ctrl-C.

        Parameters
        ----------
        n_epochs : int, optional
            Run at most this many epochs from the current one.

        Returns
        -------
        list of dict
            The whole history.
        """
        last = self.config.max_epochs if n_epochs is None else self.epoch + n_epochs
        try:
            while self.epoch < last:
                entry = self.train_epoch()
                self.epoch += 1
                self.history.append(entry)
                if self.checkpoint_dir is not None and (
                    self.epoch % self.config.checkpoint_every == 0 or self.epoch == last
                ):
                    self.save_checkpoint()
                if notify(self.callbacks, self.history, self.network):
                    break
        except KeyboardInterrupt:
            warnings.warn(
                f"training interrupted during epoch {self.epoch + 1}; the model keeps the weights it had "
                f"reached, and history_ ends at epoch {self.epoch}.",
                RuntimeWarning,
                stacklevel=2,
            )
        return self.history

    # -- saving and restoring ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to continue training exactly where it stands."""
        return {
            "network": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "view_generator": self.view_generator.get_state(),
            "shuffle_generator": self.shuffle_generator.get_state(),
            "epoch": self.epoch,
            "history": list(self.history),
            "config": asdict(self.config),
            "metadata": self.metadata,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a state from :meth:`state_dict`, refusing one of another model."""
        saved = state.get("metadata", {})
        for key, value in self.metadata.items():
            if key in saved and saved[key] != value:
                raise ValueError(
                    f"the checkpoint was written for {key}={saved[key]!r}, but this model has {key}={value!r}; "
                    "use another checkpoint_dir or the matching parameters."
                )
        self.network.load_state_dict(state["network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.view_generator.set_state(state["view_generator"].cpu() if self.device.type == "cpu" else state["view_generator"])
        self.shuffle_generator.set_state(state["shuffle_generator"].cpu())
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    def checkpoint_path(self):
        """Path of the checkpoint file in ``checkpoint_dir``."""
        return os.path.join(os.fspath(self.checkpoint_dir), CHECKPOINT_NAME)

    def save_checkpoint(self) -> None:
        """Write the state atomically: a temporary file, then a rename."""
        os.makedirs(self.checkpoint_dir, exist_ok=True)
        path = self.checkpoint_path()
        tmp = f"{path}.tmp-{os.getpid()}"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def resume(self) -> bool:
        """Load the checkpoint in ``checkpoint_dir`` if there is one; True if loaded."""
        if self.checkpoint_dir is None or not os.path.exists(self.checkpoint_path()):
            return False
        state = torch.load(self.checkpoint_path(), map_location=self.device, weights_only=False)
        self.load_state_dict(state)
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


def _progress(total, epoch, config):
    if not config.verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"epoch {epoch + 1}/{config.max_epochs}", leave=True, dynamic_ncols=True)
