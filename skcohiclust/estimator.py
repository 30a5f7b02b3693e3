"""The scikit-learn surface of CoHiClust: parameters, validation, fit/predict/transform/prune.

Everything numeric is delegated: :mod:`skcohiclust.networks` builds the
network, :mod:`skcohiclust.training` trains it, :mod:`skcohiclust.tree`
turns its outputs into leaves, pruning and the linkage matrix.
"""

from __future__ import annotations

import copy
import io
import numbers
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from . import hierarchy
from . import tree as tree_math
from ._data import BatchSource, infer_input_spec, input_statistics, map_batches
from ._validation import MAX_DEPTH, check_float32_range, check_tree_fits_memory, seed_from
from .augment import resolve_augmentation
from .callbacks import EarlyStopping
from .checkpoints import checkpoint_lock
from .networks import BACKBONES, build_network
from .training import Trainer, TrainingConfig, run_metadata

__all__ = ["CoHiClust"]

#: Rows per batch when predicting or transforming: on the CPU every batch is padded to
#: this fixed size, so a sample's outputs never depend on what is predicted with it.
INFERENCE_BATCH_SIZE = {"cpu": 64, "cuda": 1024}


class CoHiClust(ClusterMixin, TransformerMixin, BaseEstimator):
    """Contrastive hierarchical clustering: a soft binary tree of clusters learned end to end.

    A backbone network is trained with SimCLR's contrastive loss on two
    random views of every sample, and a tree head routes each sample down a
    soft binary tree of depth ``depth``; the tree is trained with the
    hierarchical contrastive loss of CoHiClust (Znaleźniak et al., ECML PKDD
    2023), so that two views of one sample share their path and different
    samples part early.  The leaves are the clusters.

    Parameters
    ----------
    depth : int, default=4
        Depth of the tree: ``2**depth`` leaves before pruning.
    n_clusters : int or None, default=None
        Leaves to keep.  ``None`` keeps all ``2**depth``.  A smaller number
        starts the tree phase with that many leaves (``tree_init="kmeans"``,
        the default), or prunes the least used leaf, one at a time, during
        training, as the paper does (the other starts).  Leaves that end up
        with no training sample are dropped as well, so
        ``n_clusters_ <= n_clusters``.
    backbone : str or torch.nn.Module, default="auto"
        ``"auto"`` (``"cnn"`` for images, ``"mlp"`` for vectors), ``"cnn"``
        (a small VGG-style CNN), ``"mlp"``, ``"resnet18"``, ``"resnet34"``,
        ``"resnet50"`` (untrained torchvision ResNets with a 3x3 stride-1
        stem and no max-pool), or your own module mapping a batch of inputs
        to ``(n, features)`` (copied at fit, never changed).
    backbone_params : dict or None, default=None
        Settings of the built-in backbone: ``{"width": w}`` for ``"cnn"``
        (channels of its first stage; the stages have ``w, 2w, 4w``;
        default 24), ``{"hidden": h}`` for ``"mlp"`` (default 256).
    image_shape : tuple of int or None, default=None
        ``(C, H, W)`` or ``(H, W)``: read the rows of a 2-D ``X`` as images.
    max_epochs : int, default=100
        Passes over the data.
    warmup_epochs : int or "auto", default="auto"
        Leading epochs trained with the instance (NT-Xent) loss alone.
        ``"auto"`` is ``max_epochs // 2``.  Must be smaller than ``max_epochs``.
    prune_start : int or "auto", default="auto"
        First epoch at whose end a leaf may be pruned (with ``tree_init``
        ``"bisect"`` or ``"random"``; the ``"kmeans"`` start has no leaves to
        prune).  ``"auto"`` starts halfway through the tree phase; the
        removals are spread evenly up to 80% of ``max_epochs``, and anything
        left is pruned after training.
    tree_init : {"kmeans", "bisect", "random"}, default="kmeans"
        How the tree head starts when the warm-up ends.  ``"kmeans"``
        clusters the representation learned so far into ``n_clusters``
        (or ``2**depth``) clusters with k-means, arranges them into the tree
        top-down (each node splits its clusters into the two groups that are
        furthest apart by Ward's criterion), sets each routing hyperplane
        between its two groups and masks the leaves no cluster needs, as
        DEC-style methods start from k-means; ``"bisect"`` sets every node's
        hyperplane by bisecting 2-means and keeps all leaves, to be pruned
        during training; ``"random"`` keeps the head's random
        initialisation, as the paper does.
    n_neighbors : int, default=20
        Neighbour positives in the tree phase (our addition).  ``0`` pairs
        two views of each sample, as the paper does.  ``k > 0``: when the
        tree phase starts, every sample's ``k`` nearest neighbours in the
        representation are found (cosine similarity, one pass over the
        data), and each positive pair joins a view of a sample with a view
        of one of its neighbours drawn at random, for the tree loss and
        NT-Xent alike, as SCAN does for flat clusters: samples the
        representation puts close together are pulled into one leaf, which
        two views of one image cannot teach.  The neighbours are kept for
        the rest of the run (also by checkpoints and ``warm_start``) and
        looked up again on other data (each new ``partial_fit`` chunk).
    batch_size : int, default=128
        Samples per batch (each gives two views).  Smaller data sets use one
        batch of all samples.
    lr : float, default=1e-3
        Adam's learning rate.
    lr_schedule : {"constant", "cosine"}, default="constant"
        ``"cosine"`` lowers the learning rate from ``lr`` to zero along a
        half cosine within each phase (the warm-up, then the tree phase
        from ``lr`` again), step by step, so that the k-means start and the
        final tree read a settled representation; ``"constant"`` keeps
        ``lr`` throughout, as the paper does.
    leaf_balance : float, default=1.0
        Weight of a term of the tree phase (our addition) that pulls the
        batch's mean leaf probabilities towards equal shares of the active
        leaves (their KL divergence from uniform, as SCAN's entropy term;
        see :func:`~skcohiclust.losses.leaf_balance`).  The paper's balance
        regulariser, kept at its weight ``2**-depth``, balances the two
        children of every node, which equalises the leaves in a full tree
        but not in every pruned one, and weakly.  It assumes clusters of similar size: lower it, or
        set 0 (the paper's objective), when the clusters sought are very
        unequal.
    weight_decay : float, default=1e-6
        Adam's weight decay.
    temperature : float, default=0.5
        Temperature of NT-Xent.
    projection_dim : int, default=128
        Output size of the projection head.
    augmentation : "auto", str, dict or augmentation object, default="auto"
        How views are drawn.  ``"auto"`` is ``"natural"`` (SimCLR's crops,
        flips and colour) for colour images, ``"shapes"`` (small rotations,
        shear, shifts, brightness and contrast jitter, noise) for other
        images and Gaussian noise for vectors.  A dict overrides fields of
        the automatic choice, e.g. ``{"flip": True}``; see
        :class:`~skcohiclust.augment.ImageAugmentation` and
        :class:`~skcohiclust.augment.VectorAugmentation`.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when it is available, else the CPU.
    mixed_precision : bool, default=True
        bfloat16 autocast for the training steps where the device runs
        bfloat16 natively: CUDA GPUs, and CPUs with AVX512-BF16 or AMX
        (with the built-in CNN and ResNets, whose convolutions also run
        channels-last, training steps are then about twice as fast on such
        a CPU; see benchmarks/BENCHMARKS.md).  Ignored elsewhere.  The losses
        and prediction are always computed in float32.
    random_state : int, RandomState instance or None, default=None
        Seeds initialisation, shuffling and augmentation.  With an int, CPU
        runs are repeatable.
    verbose : int, default=0
        0 prints nothing; 1 shows a progress bar per epoch.
    callbacks : list or None, default=None
        Objects with ``on_epoch_end(history, network)`` or callables
        ``f(history)``; returning True stops training.  See
        :mod:`skcohiclust.callbacks`.
    checkpoint_dir : str, path or None, default=None
        Write a checkpoint (network, optimiser, random states, pruning,
        history) there every ``checkpoint_every`` epochs and at the end, and
        resume from it when ``fit`` starts from scratch.  A checkpoint of a
        finished run is loaded without training further; one written for
        other parameters or other data is refused with a ValueError.  Used
        by ``fit`` from scratch only (not by a warm start or ``partial_fit``).
        See the guide ``docs/long_runs.md``.
    checkpoint_every : int, default=1
        Epochs between checkpoints.
    warm_start : bool, default=False
        When True and the model is fitted, ``fit`` trains ``max_epochs``
        more epochs from where training stood (network, optimiser, random
        generators, pruning), instead of starting afresh.  The epoch count,
        and with it the warm-up and pruning schedule, carries on.
    early_stopping : int or None, default=None
        Patience: stop when the loss has not improved for this many epochs
        of the tree phase (see :class:`~skcohiclust.callbacks.EarlyStopping`).
        ``None`` trains all ``max_epochs``.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample, ``0..n_clusters_-1``.
    n_clusters_ : int
        Number of active leaves (clusters).
    leaves_ : ndarray of shape ``(n_clusters_,)``
        Position (``0..2**depth-1``, left to right) of the leaf behind each
        cluster label.
    tree_ : ndarray of shape ``(n_clusters_ - 1, 4)``
        Scipy linkage matrix over the clusters: the learned tree with
        pruned subtrees collapsed.  A merge of level ``l`` has a height in
        ``[depth - l, depth - l + 0.5)``.
    children_ : ndarray of shape ``(n_clusters_ - 1, 2)``
        The merges of ``tree_``, as ``AgglomerativeClustering.children_``.
    distances_ : ndarray of shape ``(n_clusters_ - 1,)``
        The merge heights of ``tree_``.
    n_leaves_ : int
        Leaves of ``tree_`` (equals ``n_clusters_``).
    leaf_sizes_ : ndarray of shape ``(n_clusters_,)``
        Training samples per cluster.
    node_mass_ : ndarray of shape (2**(depth + 1) - 2,)
        Mean probability of the training samples for every node of levels
        ``1..depth`` (level-major, see :mod:`skcohiclust.tree`).
    module_ : CoHiClustNetwork
        The trained torch network (its ``leaf_mask`` buffer holds the pruning).
    backbone_ : str
        The backbone used (``"custom"`` for a module).
    augmentation_ : ImageAugmentation or VectorAugmentation
        The views used (what ``augmentation="auto"`` resolved to).
    device_ : torch.device
        The device trained on.
    history_ : list of dict
        Per epoch: ``epoch``, ``phase`` (``"warmup"`` or ``"tree"``),
        ``loss``, ``instance_loss``, ``tree_loss``, ``regularizer`` (the
        balance terms: the paper's weighted regulariser plus
        ``leaf_balance`` times the leaf term; each a mean
        over the epoch's batches), ``n_leaves`` (active leaves after the
        epoch's pruning) and ``seconds`` (wall time).
        ``pandas.DataFrame(model.history_)`` makes a table of it.
    n_features_in_ : int
        ``X.shape[1]`` at fit.
    input_shape_ : tuple of int
        Shape of one sample of ``X`` at fit.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from skcohiclust import CoHiClust
    >>> X = load_digits().images
    >>> model = CoHiClust(depth=4, n_clusters=10, random_state=0).fit(X)  # doctest: +SKIP
    >>> model.predict(X[:5])  # doctest: +SKIP
    """

    def __init__(
        self,
        depth=4,
        n_clusters=None,
        backbone="auto",
        backbone_params=None,
        image_shape=None,
        max_epochs=100,
        warmup_epochs="auto",
        prune_start="auto",
        tree_init="kmeans",
        n_neighbors=20,
        batch_size=128,
        lr=1e-3,
        lr_schedule="constant",
        leaf_balance=1.0,
        weight_decay=1e-6,
        temperature=0.5,
        projection_dim=128,
        augmentation="auto",
        device="auto",
        mixed_precision=True,
        random_state=None,
        verbose=0,
        callbacks=None,
        checkpoint_dir=None,
        checkpoint_every=1,
        warm_start=False,
        early_stopping=None,
    ):
        self.depth = depth
        self.n_clusters = n_clusters
        self.backbone = backbone
        self.backbone_params = backbone_params
        self.image_shape = image_shape
        self.max_epochs = max_epochs
        self.warmup_epochs = warmup_epochs
        self.prune_start = prune_start
        self.tree_init = tree_init
        self.n_neighbors = n_neighbors
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.leaf_balance = leaf_balance
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.projection_dim = projection_dim
        self.augmentation = augmentation
        self.device = device
        self.mixed_precision = mixed_precision
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.warm_start = warm_start
        self.early_stopping = early_stopping

    # ------------------------------------------------------------------ parameters
    def _training_config(self) -> TrainingConfig:
        _check_int("depth", self.depth, 1, MAX_DEPTH, "(and small enough for memory)")
        n_leaves = 2**self.depth
        if self.n_clusters is not None:
            _check_int(
                "n_clusters", self.n_clusters, 1, n_leaves, f"(a tree of depth {self.depth} has {n_leaves} leaves)"
            )
            n_leaves = self.n_clusters
        _check_int("max_epochs", self.max_epochs, 1)
        if isinstance(self.warmup_epochs, str) and self.warmup_epochs == "auto":
            warmup = self.max_epochs // 2
        else:
            _check_int("warmup_epochs", self.warmup_epochs, 0, self.max_epochs - 1, "(or 'auto')")
            warmup = self.warmup_epochs
        prune_stop = max(warmup + 1, (4 * self.max_epochs) // 5)
        if isinstance(self.prune_start, str) and self.prune_start == "auto":
            prune_start = warmup + (prune_stop - warmup) // 2
        else:
            _check_int("prune_start", self.prune_start, 0, None, "(or 'auto')")
            prune_start = max(self.prune_start, warmup)
            prune_stop = max(prune_stop, prune_start + 1)
        _check_int("batch_size", self.batch_size, 2)
        _check_float("lr", self.lr, positive=True)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}.")
        _check_float("weight_decay", self.weight_decay)
        _check_float("leaf_balance", self.leaf_balance)
        _check_float("temperature", self.temperature, positive=True)
        _check_int("projection_dim", self.projection_dim, 1)
        _check_int("checkpoint_every", self.checkpoint_every, 1)
        if self.tree_init not in ("kmeans", "bisect", "random"):
            raise ValueError(f"tree_init must be 'kmeans', 'bisect' or 'random', got {self.tree_init!r}.")
        _check_int("n_neighbors", self.n_neighbors, 0, None, "(0 pairs two views of each sample)")
        if self.early_stopping is not None:
            _check_int("early_stopping", self.early_stopping, 1, None, "(the patience in epochs, or None)")
        if not isinstance(self.warm_start, (bool, np.bool_)):
            raise ValueError(f"warm_start must be True or False, got {self.warm_start!r}.")
        if not isinstance(self.mixed_precision, (bool, np.bool_)):
            raise ValueError(f"mixed_precision must be True or False, got {self.mixed_precision!r}.")
        backbone = self.backbone
        if not isinstance(backbone, torch.nn.Module) and backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES} or a torch.nn.Module, got {backbone!r}.")
        return TrainingConfig(
            depth=self.depth,
            n_leaves=n_leaves,
            max_epochs=self.max_epochs,
            warmup_epochs=warmup,
            prune_start=prune_start,
            prune_stop=prune_stop,
            batch_size=self.batch_size,
            lr=float(self.lr),
            lr_schedule=self.lr_schedule,
            leaf_balance=float(self.leaf_balance),
            weight_decay=float(self.weight_decay),
            temperature=float(self.temperature),
            mixed_precision=bool(self.mixed_precision),
            verbose=int(self.verbose),
            checkpoint_every=self.checkpoint_every,
            tree_init=self.tree_init,
            n_neighbors=self.n_neighbors,
        )

    def _validate_X(self, X, reset: bool, min_samples=None):
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float32, np.float64, np.uint8],
            allow_nd=True,
            ensure_min_samples=(2 if reset else 1) if min_samples is None else min_samples,
        )
        if X.ndim > 4:
            raise ValueError(f"X must have 2, 3 or 4 dimensions, got shape {X.shape}.")
        check_float32_range(X)
        if not reset and tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"X has samples of shape {tuple(X.shape[1:])}, but CoHiClust was fitted on samples of shape "
                f"{self.input_shape_}."
            )
        return X

    # ------------------------------------------------------------------ fitting
    def fit(self, X: ArrayLike, y: object = None) -> CoHiClust:
        """Train the network and the tree on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, d), (n_samples, H, W) or (n_samples, C, H, W)
            Vectors or images (8-bit 0-255 or float).  Memory-mapped arrays
            are read batch by batch.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : CoHiClust
            The fitted estimator.
        """
        config = self._training_config()
        if self.warm_start and hasattr(self, "module_"):
            _warn_no_checkpoints(self.checkpoint_dir, "a warm-started fit")
            return self._train_more(X, config, config.max_epochs, final=True)
        X = self._validate_X(X, reset=True)
        trainer, source, name, spec = self._new_trainer(X, config, self.checkpoint_dir)
        with checkpoint_lock(self.checkpoint_dir):  # one fit at a time writes a checkpoint_dir
            if not (trainer.resume() and trainer.finished):
                trainer.fit()
        self._end_training(trainer, source, name, spec, final=True)
        return self

    # ---- long runs: partial_fit, warm start (see docs/long_runs.md) ----------------------
    def partial_fit(self, X: ArrayLike, y: object = None) -> CoHiClust:
        """Train one epoch (one pass) on ``X``, a chunk of the data.

        The first call initialises the model (the input statistics come from
        that chunk); later calls continue training where the previous one
        stopped, on chunks of the same sample shape.  Every call counts as
        one epoch: the warm-up, the tree phase and the pruning schedule
        follow the number of calls as they follow epochs in ``fit``
        (``max_epochs`` is the planned number of calls; more calls are
        allowed).  After each call ``labels_`` holds the clusters of the
        samples of that chunk, and ``tree_``, ``predict`` and the other
        fitted attributes reflect the model as it stands (leaves without
        samples in the chunk are left out of them but stay in training).
        ``checkpoint_dir`` is not used: pickle the estimator to keep its
        state between calls.

        Parameters
        ----------
        X : array-like of shape (n_samples, d), (n_samples, H, W) or (n_samples, C, H, W)
            A chunk of at least 2 samples.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : CoHiClust
        """
        config = self._training_config()
        if hasattr(self, "module_"):
            return self._train_more(X, config, 1, final=False)
        X = self._validate_X(X, reset=True)
        _warn_no_checkpoints(self.checkpoint_dir, "partial_fit")
        trainer, source, name, spec = self._new_trainer(X, config, None)
        trainer.fit(n_epochs=1)
        self._end_training(trainer, source, name, spec, final=False)
        return self

    def _callbacks(self) -> list:
        callbacks = list(self.callbacks or [])
        if self.early_stopping is not None:
            callbacks.append(EarlyStopping(patience=self.early_stopping))
        return callbacks

    def _new_trainer(self, X, config, checkpoint_dir):
        """A trainer with a freshly initialised network, its data source, backbone name and input spec."""
        spec = infer_input_spec(X, self.image_shape)
        augmentation = resolve_augmentation(self.augmentation, spec.is_image, spec.shape[0] if spec.is_image else 1)
        device = _resolve_device(self.device)
        seed = seed_from(self.random_state)
        check_tree_fits_memory(self.depth, len(X), config.batch_size, self.backbone, device)
        source = BatchSource(X, spec, device)
        backbone = copy.deepcopy(self.backbone) if isinstance(self.backbone, torch.nn.Module) else self.backbone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, std = input_statistics(source)
            network, name = build_network(
                backbone, spec.shape, self.depth, self.projection_dim, mean, std, params=self.backbone_params
            )
        network.to(device)
        metadata = None
        if checkpoint_dir is not None:
            metadata = run_metadata(X, spec.shape, name, network, augmentation, config, self.projection_dim)
        trainer = Trainer(
            network,
            augmentation,
            source,
            config,
            seed,
            callbacks=self._callbacks(),
            checkpoint_dir=checkpoint_dir,
            metadata=metadata,
        )
        return trainer, source, name, spec

    def _train_more(self, X, config, n_epochs, final):
        """Continue training the fitted model for ``n_epochs`` epochs on ``X``."""
        state = getattr(self, "_training_state", None)
        if state is None:
            raise ValueError(
                "this fitted CoHiClust has no training state to continue from (it was saved by an older "
                "version); fit it with warm_start=False."
            )
        X = self._validate_X(X, reset=False, min_samples=2)
        fitted = self._fit_params
        asked = {
            "depth": self.depth,
            "projection_dim": self.projection_dim,
            "image_shape": _shape_or_none(self.image_shape),
            "backbone_params": dict(self.backbone_params or {}),
        }
        if isinstance(self.backbone, str) and self.backbone != "auto":
            asked["backbone"] = self.backbone
        changed = [f"{k}={v!r} (fitted with {fitted.get(k, {})!r})" for k, v in asked.items() if fitted.get(k, {}) != v]
        if changed:
            raise ValueError(
                f"cannot continue training with {', '.join(changed)}: warm_start and partial_fit go on with "
                "the fitted network; set warm_start=False (or fit anew) to train a new one."
            )
        spec = self._spec
        augmentation = resolve_augmentation(self.augmentation, spec.is_image, spec.shape[0] if spec.is_image else 1)
        device = _resolve_device(self.device)
        network = self.module_.to(device)
        source = BatchSource(X, spec, device)
        trainer = Trainer(network, augmentation, source, config, 0, callbacks=self._callbacks())
        trainer.load_training_state(state, self.history_)
        trainer.fit(n_epochs=n_epochs)
        self._end_training(trainer, source, self.backbone_, spec, final=final)
        return self

    def _end_training(self, trainer, source, name, spec, final):
        """Set the fitted attributes from a trainer; ``final`` prunes any leaves still due."""
        network = trainer.network
        self.module_ = network
        self.backbone_ = name
        self.augmentation_ = trainer.augmentation
        self.device_ = trainer.device
        self.input_shape_ = spec.row_shape
        self._spec = spec
        self._fit_params = {
            "depth": self.depth,
            "projection_dim": self.projection_dim,
            "image_shape": _shape_or_none(self.image_shape),
            "backbone": name,
            "backbone_params": dict(self.backbone_params or {}),
        }
        self.history_ = list(trainer.history)
        # the optimiser and generator states, and the pruning mask as training left it (no data)
        self._training_state = trainer.training_state()
        leaf_prob = self._leaf_probabilities(source)
        if final and int(network.leaf_mask.sum()) > trainer.config.n_leaves:
            network.leaf_mask.copy_(
                tree_math.prune_least_used(leaf_prob, network.leaf_mask.cpu(), trainer.config.n_leaves)
            )
        self._set_leaves(leaf_prob)

    # ---- end of long runs ------------------------------------------------------------------

    def _leaf_probabilities(self, source) -> torch.Tensor:
        network = self.module_
        network.eval()
        with torch.no_grad():
            (leaf,) = map_batches(
                lambda x: (tree_math.leaf_probabilities(network(x, with_projection=False).left_prob, self.depth),),
                source,
                *_inference_batching(source.device),
            )
        return torch.from_numpy(leaf)

    def _set_leaves(self, leaf_prob: torch.Tensor) -> None:
        """Fix the learned attributes from the raw leaf probabilities of the training data."""
        mask = tree_math.drop_empty_leaves(leaf_prob, self.module_.leaf_mask.cpu())
        self.module_.leaf_mask.copy_(mask)
        active = leaf_prob[:, mask]
        self._train_leaf_prob = active.numpy()
        self._refresh_tree(mask, active)

    def _refresh_tree(self, mask: torch.Tensor, active_prob: torch.Tensor) -> None:
        self.leaves_ = np.flatnonzero(mask.numpy())
        self.n_clusters_ = len(self.leaves_)
        self.labels_, self.node_mass_, self.tree_ = tree_math.tree_of_active_leaves(
            active_prob, mask.numpy(), self.depth
        )

    def prune(self, n_clusters: int) -> CoHiClust:
        """Cut the fitted tree to ``n_clusters`` leaves without retraining.

        The least used leaf (smallest mean probability over the training
        samples, the others renormalised) is removed, one at a time, as the
        paper prunes during training; its samples move to their next most
        probable leaf.  ``labels_``, ``tree_``, ``predict`` and
        ``predict_proba`` follow.  Leaves left without training samples are
        dropped too.

        Parameters
        ----------
        n_clusters : int
            Leaves to keep, ``1 <= n_clusters <= n_clusters_``.

        Returns
        -------
        self : CoHiClust
        """
        check_is_fitted(self)
        _check_int("n_clusters", n_clusters, 1, self.n_clusters_, f"(the fitted tree has {self.n_clusters_} leaves)")
        active = torch.from_numpy(self._train_leaf_prob)
        keep = tree_math.prune_least_used(active, torch.ones(self.n_clusters_, dtype=torch.bool), n_clusters)
        keep = tree_math.drop_empty_leaves(active, keep)
        mask = torch.zeros(2**self.depth, dtype=torch.bool)
        mask[torch.from_numpy(self.leaves_[keep.numpy()])] = True
        self.module_.leaf_mask.copy_(mask)
        self._train_leaf_prob = self._train_leaf_prob[:, keep.numpy()]
        self._refresh_tree(mask, active[:, keep])
        return self

    # ------------------------------------------------------------------ inference
    def _infer(self, X, what: str) -> np.ndarray:
        check_is_fitted(self)
        X = self._validate_X(X, reset=False)
        # values are read on the scale seen at fit (8-bit data was divided by 255 then)
        source = BatchSource(X, self._spec, self.device_)
        network = self.module_
        network.eval()
        mask = network.leaf_mask

        def run(x):
            out = network(x, with_projection=False)
            if what == "transform":
                return (out.representation,)
            leaf = tree_math.leaf_probabilities(out.left_prob, self.depth)
            return (tree_math.masked_leaf_probabilities(leaf, mask),)

        with torch.no_grad():
            (result,) = map_batches(run, source, *_inference_batching(source.device))
        return result

    def predict_proba(self, X: ArrayLike, level: int | None = None) -> np.ndarray:
        """Probability of each cluster (active leaf) for every sample.

        Parameters
        ----------
        X : array-like of the shape seen at fit
            Samples.
        level : int or None, default=None
            A level ``0..depth`` of the tree: the probability of each of its
            clusters (the sum over the leaves below).  ``None`` is the leaves.

        Returns
        -------
        ndarray of shape ``(n_samples, n_clusters_)``
            Rows sum to 1; column ``k`` is cluster ``k`` (at ``level``: the
            columns are that level's clusters, see :meth:`labels_at_level`).
        """
        proba = self._infer(X, "proba")
        return proba if level is None else hierarchy.level_probabilities(proba, self.leaves_, self.depth, level)

    def predict(self, X: ArrayLike, level: int | None = None) -> np.ndarray:
        """Cluster of each sample: the most probable active leaf.

        Parameters
        ----------
        X : array-like of the shape seen at fit
            Samples.
        level : int or None, default=None
            A level ``0..depth`` of the tree: the label of the ancestor, at
            that level, of the sample's leaf (so the levels nest; see
            :meth:`labels_at_level`).  ``None`` is the leaves.

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels in ``0..n_clusters_-1``, numbered as the leaves of ``tree_``.
        """
        labels = self.predict_proba(X).argmax(axis=1)
        return labels if level is None else hierarchy.leaf_to_level(self.leaves_, self.depth, level)[labels]

    def transform(self, X: ArrayLike) -> np.ndarray:
        """The learned representation (backbone output) of each sample.

        Parameters
        ----------
        X : array-like of the shape seen at fit
            Samples.

        Returns
        -------
        ndarray of shape (n_samples, representation_dim)
        """
        return self._infer(X, "transform")

    def score(self, X: ArrayLike, y: object = None) -> float:
        """Mean probability of the assigned cluster (assignment confidence).

        Higher is better: 1 when every sample sits in one leaf with
        certainty, ``1 / n_clusters_`` at worst.  It is not comparable across
        trees with different numbers of leaves; compare those with an
        external score such as ``adjusted_rand_score``.

        Parameters
        ----------
        X : array-like of the shape seen at fit
            Samples.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        float
        """
        return float(self.predict_proba(X).max(axis=1).mean())

    # ------------------------------------------------------------------ hierarchy (see skcohiclust.hierarchy)
    @property
    def children_(self) -> np.ndarray:
        """ndarray of shape ``(n_clusters_ - 1, 2)``: the two nodes each merge of ``tree_`` joins.

        As in :class:`~sklearn.cluster.AgglomerativeClustering`: values below
        ``n_leaves_`` are leaf clusters, value ``n_leaves_ + i`` is the node
        made by merge ``i``.  Derived from ``tree_``, so it follows :meth:`prune`.
        """
        check_is_fitted(self)
        return self.tree_[:, :2].astype(np.intp)

    @property
    def distances_(self) -> np.ndarray:
        """ndarray of shape ``(n_clusters_ - 1,)``: the height of each merge of ``tree_``."""
        check_is_fitted(self)
        return self.tree_[:, 2].copy()

    @property
    def n_leaves_(self) -> int:
        """int: number of leaves of ``tree_``, i.e. ``n_clusters_``."""
        check_is_fitted(self)
        return self.tree_.shape[0] + 1

    @property
    def leaf_sizes_(self) -> np.ndarray:
        """ndarray of shape ``(n_clusters_,)``: training samples in each cluster."""
        check_is_fitted(self)
        return np.bincount(self.labels_, minlength=self.n_clusters_)

    def labels_at_level(self, level: int) -> np.ndarray:
        """Cluster of each training sample at a level of the tree.

        The clusters of level ``l`` are its nodes with an active leaf below,
        numbered ``0..m-1`` left to right; a sample belongs to the ancestor
        of its leaf, so the levels nest.  The partition equals
        ``fcluster(tree_, skcohiclust.tree.level_cut_height(depth, l),
        criterion="distance")``.  Level 0 puts everything in cluster 0,
        level ``depth`` gives ``labels_``.

        Parameters
        ----------
        level : int
            A level in ``0..depth``.

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return hierarchy.leaf_to_level(self.leaves_, self.depth, level)[self.labels_]

    def similarity(self, X: ArrayLike, Y: ArrayLike | None = None, kind: str = "bhattacharyya") -> np.ndarray:
        """Tree similarity between samples, in ``[0, 1]``.

        ``"bhattacharyya"`` is CoHiClust's own similarity: the Bhattacharyya
        coefficient ``sum_i sqrt(P_l^i(x) P_l^i(y))`` of the two samples'
        node distributions at level ``l``, averaged over levels ``1..depth``;
        the probabilities are the pruned, renormalised ones of
        :meth:`predict_proba`, so every sample has similarity 1 with itself.
        ``"lca"`` is the level of the lowest common ancestor of the two
        samples' leaves divided by ``depth``.  Either works as a
        ``precomputed`` affinity (e.g. for ``SpectralClustering``).

        Parameters
        ----------
        X : array-like of the shape seen at fit
            Samples.
        Y : array-like of the shape seen at fit or None, default=None
            ``None`` compares ``X`` with itself (a symmetric matrix).
        kind : {"bhattacharyya", "lca"}, default="bhattacharyya"

        Returns
        -------
        ndarray of shape (n_samples_X, n_samples_Y)
        """
        if kind not in hierarchy.SIMILARITY_KINDS:
            raise ValueError(f"kind must be one of {hierarchy.SIMILARITY_KINDS}, got {kind!r}.")
        proba_x = self.predict_proba(X)
        proba_y = None if Y is None else self.predict_proba(Y)
        if kind == "lca":
            labels_x = proba_x.argmax(axis=1)
            labels_y = labels_x if proba_y is None else proba_y.argmax(axis=1)
            return hierarchy.lca_similarity(labels_x, labels_y, self.leaves_, self.depth)
        return hierarchy.bhattacharyya_similarity(proba_x, proba_y, self.leaves_, self.depth)

    def to_newick(self, leaf_names: Sequence[str] | None = None) -> str:
        """The tree ``tree_`` in Newick format, branch lengths from its heights.

        Parameters
        ----------
        leaf_names : sequence of str or None, default=None
            A name per cluster; ``None`` names cluster ``k`` ``"c<k>"``.

        Returns
        -------
        str
            E.g. ``"((c0:1,c1:1):1.25,c2:2.25);"``.
        """
        check_is_fitted(self)
        if leaf_names is None:
            leaf_names = [f"c{k}" for k in range(self.n_clusters_)]
        return hierarchy.linkage_to_newick(self.tree_, list(leaf_names))

    def to_dict(self) -> dict:
        """The active tree as a nested dict that ``json.dumps`` accepts.

        Every node: ``id`` (heap index), ``level``, ``position`` within the
        level, ``label`` (its cluster at its level, as :meth:`labels_at_level`
        numbers them), ``size`` (training samples), ``mass`` (mean
        probability), ``leaf`` and ``children``.  See
        :func:`skcohiclust.hierarchy.tree_to_dict`.

        Returns
        -------
        dict
            The root node.
        """
        check_is_fitted(self)
        return hierarchy.tree_to_dict(self.leaves_, self.depth, self.node_mass_, self.leaf_sizes_)

    # ------------------------------------------------------------------ end of hierarchy
    # ------------------------------------------------------------------ pickling
    def __getstate__(self):
        state = super().__getstate__()
        if "module_" in state:
            buffer = io.BytesIO()
            torch.save(state["module_"], buffer)
            state = dict(state, module_=buffer.getvalue())
        return state

    def __setstate__(self, state):
        module = state.get("module_")
        if isinstance(module, bytes):
            device = torch.device(state.get("device_", "cpu"))
            if device.type == "cuda" and not torch.cuda.is_available():
                device = torch.device("cpu")
            state = dict(state, device_=device)
            state["module_"] = torch.load(io.BytesIO(module), map_location=device, weights_only=False)
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def _shape_or_none(shape):
    return None if shape is None else tuple(int(s) for s in shape)


def _warn_no_checkpoints(checkpoint_dir, what):
    if checkpoint_dir is not None:
        warnings.warn(
            f"checkpoint_dir is used by fit from scratch only; {what} writes no checkpoint (pickle the "
            "estimator to keep its state).",
            UserWarning,
            stacklevel=3,
        )


def _inference_batching(device: torch.device):
    """Batch size and padding for inference on ``device``."""
    if device.type == "cpu":
        return INFERENCE_BATCH_SIZE["cpu"], True
    return INFERENCE_BATCH_SIZE["cuda"], False


def _resolve_device(device) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was asked for, but CUDA is not available here; use device='auto' or 'cpu'."
        )
    return resolved


def _check_int(name, value, low=None, high=None, note=""):
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    ok = ok and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        if high is None:
            bounds = f">= {low}"
        else:
            bounds = f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an int {bounds}{(' ' + note) if note else ''}; got {value!r}.")


def _check_float(name, value, positive=False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"{name} must be a {'positive' if positive else 'non-negative'} float; got {value!r}.")
