"""The scikit-learn surface of CoHiClust: parameters, validation, fit/predict/transform/prune.

Everything numeric is delegated: :mod:`skcohiclust.networks` builds the
network, :mod:`skcohiclust.training` trains it, :mod:`skcohiclust.tree`
turns its outputs into leaves, pruning and the linkage matrix.
"""

from __future__ import annotations

import copy
import io
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from . import tree as tree_math
from ._data import BatchSource, infer_input_spec, input_statistics, map_batches
from .augment import resolve_augmentation
from .networks import BACKBONES, build_network
from .training import Trainer, TrainingConfig

__all__ = ["CoHiClust"]

#: Rows per batch when predicting or transforming.
INFERENCE_BATCH_SIZE = 1024


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
        Leaves to keep.  ``None`` keeps all ``2**depth``; a smaller number
        prunes the least used leaf, one at a time, during training, as the
        paper does.  Leaves that end up with no training sample are dropped
        as well, so ``n_clusters_ <= n_clusters``.
    backbone : str or torch.nn.Module, default="auto"
        ``"auto"`` (``"cnn"`` for images, ``"mlp"`` for vectors), ``"cnn"``
        (a small VGG-style CNN), ``"mlp"``, ``"resnet18"``, ``"resnet34"``,
        ``"resnet50"`` (untrained torchvision ResNets with a 3x3 stride-1
        stem and no max-pool), or your own module mapping a batch of inputs
        to ``(n, features)`` (copied at fit, never changed).
    image_shape : tuple of int or None, default=None
        ``(C, H, W)`` or ``(H, W)``: read the rows of a 2-D ``X`` as images.
    max_epochs : int, default=100
        Passes over the data.
    warmup_epochs : int or "auto", default="auto"
        Leading epochs trained with the instance (NT-Xent) loss alone.
        ``"auto"`` is ``max_epochs // 5``.  Must be smaller than ``max_epochs``.
    prune_start : int or "auto", default="auto"
        First epoch at whose end a leaf may be pruned.  ``"auto"`` starts
        halfway through the tree phase; the removals are spread evenly up to
        80% of ``max_epochs``, and anything left is pruned after training.
    batch_size : int, default=256
        Samples per batch (each gives two views).  Smaller data sets use one
        batch of all samples.
    lr : float, default=1e-3
        Adam's learning rate.
    weight_decay : float, default=1e-6
        Adam's weight decay.
    temperature : float, default=0.5
        Temperature of NT-Xent.
    projection_dim : int, default=128
        Output size of the projection head.
    augmentation : "auto", str, dict or augmentation object, default="auto"
        How views are drawn.  ``"auto"`` is ``"natural"`` (SimCLR's crops,
        flips and colour) for colour images, ``"shapes"`` (small rotations,
        shear, shifts and noise) for other images and Gaussian noise for
        vectors.  A dict overrides fields of the automatic choice, e.g.
        ``{"flip": True}``; see :class:`~skcohiclust.augment.ImageAugmentation`
        and :class:`~skcohiclust.augment.VectorAugmentation`.
    device : str or torch.device, default="auto"
        ``"auto"`` uses CUDA when it is available, else the CPU.
    mixed_precision : bool, default=True
        bfloat16 autocast on CUDA (ignored on the CPU).
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
        Write a checkpoint there every ``checkpoint_every`` epochs, and resume
        from it when ``fit`` starts.
    checkpoint_every : int, default=1
        Epochs between checkpoints.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample, ``0..n_clusters_-1``.
    n_clusters_ : int
        Number of active leaves (clusters).
    leaves_ : ndarray of shape (n_clusters_,)
        Position (``0..2**depth-1``, left to right) of the leaf behind each
        cluster label.
    tree_ : ndarray of shape (n_clusters_ - 1, 4)
        Scipy linkage matrix over the clusters: the learned tree with
        pruned subtrees collapsed.  A merge of level ``l`` has a height in
        ``[depth - l, depth - l + 0.5)``.
    node_mass_ : ndarray of shape (2**(depth + 1) - 2,)
        Mean probability of the training samples for every node of levels
        ``1..depth`` (level-major, see :mod:`skcohiclust.tree`).
    module_ : CoHiClustNetwork
        The trained torch network (its ``leaf_mask`` buffer holds the pruning).
    backbone_ : str
        The backbone used (``"custom"`` for a module).
    device_ : torch.device
        The device trained on.
    history_ : list of dict
        Per epoch: ``epoch``, ``loss``, ``instance_loss``, ``tree_loss``,
        ``regularizer``, ``n_leaves``, ``seconds``.
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
        image_shape=None,
        max_epochs=100,
        warmup_epochs="auto",
        prune_start="auto",
        batch_size=256,
        lr=1e-3,
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
    ):
        self.depth = depth
        self.n_clusters = n_clusters
        self.backbone = backbone
        self.image_shape = image_shape
        self.max_epochs = max_epochs
        self.warmup_epochs = warmup_epochs
        self.prune_start = prune_start
        self.batch_size = batch_size
        self.lr = lr
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

    # ------------------------------------------------------------------ parameters
    def _training_config(self) -> TrainingConfig:
        _check_int("depth", self.depth, 1, 16)
        n_leaves = 2**self.depth
        if self.n_clusters is not None:
            _check_int("n_clusters", self.n_clusters, 1, n_leaves, f"(a tree of depth {self.depth} has {n_leaves} leaves)")
            n_leaves = self.n_clusters
        _check_int("max_epochs", self.max_epochs, 1)
        if isinstance(self.warmup_epochs, str) and self.warmup_epochs == "auto":
            warmup = self.max_epochs // 5
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
        _check_float("weight_decay", self.weight_decay)
        _check_float("temperature", self.temperature, positive=True)
        _check_int("projection_dim", self.projection_dim, 1)
        _check_int("checkpoint_every", self.checkpoint_every, 1)
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
            weight_decay=float(self.weight_decay),
            temperature=float(self.temperature),
            mixed_precision=bool(self.mixed_precision),
            verbose=int(self.verbose),
            checkpoint_every=self.checkpoint_every,
        )

    def _validate_X(self, X, reset: bool):
        X = validate_data(
            self,
            X,
            reset=reset,
            dtype=[np.float32, np.float64, np.uint8],
            allow_nd=True,
            ensure_min_samples=2 if reset else 1,
        )
        if X.ndim > 4:
            raise ValueError(f"X must have 2, 3 or 4 dimensions, got shape {X.shape}.")
        if not reset and tuple(X.shape[1:]) != self.input_shape_:
            raise ValueError(
                f"X has samples of shape {tuple(X.shape[1:])}, but CoHiClust was fitted on samples of shape "
                f"{self.input_shape_}."
            )
        return X

    # ------------------------------------------------------------------ fitting
    def fit(self, X, y=None):
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
        X = self._validate_X(X, reset=True)
        spec = infer_input_spec(X, self.image_shape)
        augmentation = resolve_augmentation(self.augmentation, spec.is_image, spec.shape[0] if spec.is_image else 1)
        device = _resolve_device(self.device)
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 2))
        source = BatchSource(X, spec, device)
        backbone = copy.deepcopy(self.backbone) if isinstance(self.backbone, torch.nn.Module) else self.backbone
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mean, std = input_statistics(source)
            network, name = build_network(backbone, spec.shape, self.depth, self.projection_dim, mean, std)
        network.to(device)
        trainer = Trainer(
            network,
            augmentation,
            source,
            config,
            seed,
            callbacks=self.callbacks,
            checkpoint_dir=self.checkpoint_dir,
            metadata={"depth": self.depth, "backbone": name, "input_shape": spec.shape},
        )
        trainer.resume()
        trainer.fit()
        self.module_ = network
        self.backbone_ = name
        self.device_ = device
        self.input_shape_ = spec.row_shape
        self._spec = spec
        self.history_ = trainer.history
        leaf_prob = self._leaf_probabilities(source)
        if int(network.leaf_mask.sum()) > config.n_leaves:
            network.leaf_mask.copy_(tree_math.prune_least_used(leaf_prob, network.leaf_mask.cpu(), config.n_leaves))
        self._set_leaves(leaf_prob)
        return self

    def _leaf_probabilities(self, source) -> torch.Tensor:
        network = self.module_
        network.eval()
        with torch.no_grad():
            (leaf,) = map_batches(
                lambda x: (tree_math.leaf_probabilities(network(x, with_projection=False).left_prob, self.depth),),
                source,
                INFERENCE_BATCH_SIZE,
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
        proba = tree_math.masked_leaf_probabilities(active_prob, torch.ones(active_prob.shape[1], dtype=torch.bool))
        self.leaves_ = np.flatnonzero(mask.numpy())
        self.n_clusters_ = len(self.leaves_)
        self.labels_ = proba.argmax(dim=1).numpy()
        leaf_mass = np.zeros(2**self.depth)
        leaf_mass[self.leaves_] = proba.double().mean(dim=0).numpy()
        self.node_mass_ = np.concatenate(
            [leaf_mass.reshape(2**level, -1).sum(axis=1) for level in range(1, self.depth + 1)]
        )
        self.tree_ = tree_math.linkage_from_leaf_mask(mask.numpy(), self.depth, self.node_mass_)

    def prune(self, n_clusters):
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
            (result,) = map_batches(run, source, INFERENCE_BATCH_SIZE)
        return result

    def predict_proba(self, X):
        """Probability of each cluster (active leaf) for every sample.

        Parameters
        ----------
        X : array-like of the shape seen at fit

        Returns
        -------
        ndarray of shape (n_samples, n_clusters_)
            Rows sum to 1; column ``k`` is cluster ``k``.
        """
        return self._infer(X, "proba")

    def predict(self, X):
        """Cluster of each sample: the most probable active leaf.

        Parameters
        ----------
        X : array-like of the shape seen at fit

        Returns
        -------
        ndarray of shape (n_samples,)
            Labels in ``0..n_clusters_-1``, numbered as the leaves of ``tree_``.
        """
        return self.predict_proba(X).argmax(axis=1)

    def transform(self, X):
        """The learned representation (backbone output) of each sample.

        Parameters
        ----------
        X : array-like of the shape seen at fit

        Returns
        -------
        ndarray of shape (n_samples, representation_dim)
        """
        return self._infer(X, "transform")

    def score(self, X, y=None):
        """Mean probability of the assigned cluster (assignment confidence).

        Higher is better: 1 when every sample sits in one leaf with
        certainty, ``1 / n_clusters_`` at worst.  It is not comparable across
        trees with different numbers of leaves; compare those with an
        external score such as ``adjusted_rand_score``.

        Parameters
        ----------
        X : array-like of the shape seen at fit
        y : Ignored

        Returns
        -------
        float
        """
        return float(self.predict_proba(X).max(axis=1).mean())

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


def _resolve_device(device) -> torch.device:
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or a torch.device, got {device!r}.") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for, but CUDA is not available here; use device='auto' or 'cpu'.")
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
