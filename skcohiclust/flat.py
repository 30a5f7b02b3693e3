"""Flat deep clusterers on the package's engine, the peers CoHiClust is measured against.

Each shares the backbones, batched views, trainer, checkpoints, progress and
long-run support of :class:`~skcohiclust.CoHiClust` (through
:class:`~skcohiclust._base.BaseDeepClusterer`) and differs only in its
objective (:mod:`skcohiclust.objectives`) and its fitted clusters: flat
clusterers and the tree can be compared on the same data, with the same
network and the same budget.
"""

from __future__ import annotations

import numpy as np
import torch

from . import tree as tree_math
from ._base import BaseDeepClusterer, _check_float, _check_int, shared_parameter_docs
from .objectives import ContrastiveClusteringObjective

__all__ = ["ContrastiveClustering"]


class _FlatClusterer(BaseDeepClusterer):
    """What the flat clusterers share: clusters are the head's columns that hold training samples."""

    def _architecture(self):
        return {"n_clusters": self.n_clusters}

    def _check_n_clusters(self):
        _check_int("n_clusters", self.n_clusters, 1)

    def _set_clusters(self, trainer, source, final):
        """``labels_`` and the clusters in use from the head's probabilities on the training data."""
        proba = self._network_outputs(source, lambda out: out.head.float())
        mask = torch.ones(proba.shape[1], dtype=torch.bool)
        # a column no training sample picks is dropped, so that the labels are consecutive; the
        # renormalised probabilities could (by rounding) leave another column unpicked: repeat
        while True:
            active = tree_math.masked_leaf_probabilities(proba, mask)
            used = tree_math.drop_empty_leaves(active, torch.ones(active.shape[1], dtype=torch.bool))
            kept = mask.clone()
            kept[mask] = used
            if torch.equal(kept, mask):
                break
            mask = kept
        self.clusters_ = np.flatnonzero(mask.numpy())
        self.n_clusters_ = len(self.clusters_)
        self.labels_ = tree_math.masked_leaf_probabilities(proba, mask).argmax(dim=1).numpy()

    def _cluster_probabilities(self, out):
        mask = torch.zeros(out.head.shape[1], dtype=torch.bool, device=out.head.device)
        mask[torch.as_tensor(self.clusters_, device=out.head.device)] = True
        return tree_math.masked_leaf_probabilities(out.head.float(), mask)

    @property
    def cluster_sizes_(self):
        """ndarray of shape ``(n_clusters_,)``: training samples in each cluster."""
        return np.bincount(self.labels_, minlength=self.n_clusters_)


@shared_parameter_docs
class ContrastiveClustering(_FlatClusterer):
    """Contrastive Clustering (CC): instance- and cluster-level contrastive learning of flat clusters.

    The method of Li, Hu, Liu, Peng, Zhou and Peng (AAAI 2021).  A backbone
    feeds two heads: a projection head trained with NT-Xent on two random
    views of every sample (instance level, the rows), and a cluster head,
    Linear-ReLU-Linear with a softmax over ``n_clusters``.  Its two views'
    ``(B, n_clusters)`` probability matrices are contrasted by their
    *columns*: each cluster, as the vector of its probabilities over the
    batch, should match the same cluster in the other view and differ from
    the other clusters (NT-Xent over the ``2 * n_clusters`` columns, by
    cosine similarity at ``cluster_temperature``), while an entropy term
    keeps the batch's mean assignment spread over all clusters.  The loss is
    ``instance + cluster + entropy_weight * entropy``
    (:class:`~skcohiclust.objectives.ContrastiveClusteringObjective`).  A
    sample's cluster is the argmax of the cluster head.

    Where this implementation departs from the paper and the authors'
    published configuration (ResNet-34 on 224x224 inputs, 1,000 epochs,
    batch 128, Adam at 3e-4 without weight decay, temperatures 0.5 and 1.0):

    - The network is this package's: any of its backbones (by default a
      small CNN for images, an MLP for vectors), and the projection head
      CoHiClust uses (Linear-BatchNorm-ReLU-Linear; the paper's instance
      projector has no BatchNorm), so that CC and CoHiClust can be compared
      on one network.  The cluster head is the paper's.
    - The views are this package's batched augmentations (by default
      ``"shapes"`` for grey images and ``"natural"`` for colour ones: crop,
      flip, colour jitter, greyscale, without the Gaussian blur the authors
      add on the ImageNet subsets; noise for vectors).
    - Defaults fit a CPU budget: ``max_epochs=100``; the learning rate,
      weight decay and temperatures default to the paper's.
    - Each view's own column (row, for NT-Xent) is left out of the
      denominators, as in the authors' code; the paper's formulas list it.
    - The entropy term is reported as ``log(n_clusters) - H`` per view
      (>= 0, 0 at balanced clusters), the paper's ``-H`` plus a constant:
      the gradients are the paper's.
    - Optional (off by default): ``warmup_epochs`` of NT-Xent alone before
      the cluster terms start, the cosine learning rate.
    - After training, clusters that no training sample falls into are
      dropped (scikit-learn wants labels ``0..k-1``), so ``n_clusters_ <=
      n_clusters``, and ``predict`` takes the argmax over the clusters kept.

    Parameters
    ----------
    n_clusters : int, default=10
        Outputs of the cluster head (clusters sought).
    %(backbone)s
    %(backbone_params)s
    %(image_shape)s
    %(max_epochs)s
    warmup_epochs : int or "auto", default=0
        Leading epochs trained with the instance (NT-Xent) loss alone (not
        in the paper, which trains both levels from the start; ``"auto"``
        is 0).  Must be smaller than ``max_epochs``.
    %(batch_size)s
    lr : float, default=3e-4
        Adam's learning rate (the paper's).
    lr_schedule : {"constant", "cosine"}, default="constant"
        ``"cosine"`` lowers the learning rate from ``lr`` to zero along a
        half cosine within each phase (the warm-up, if any, then the rest
        from ``lr`` again), step by step; ``"constant"`` keeps ``lr``
        throughout, as the paper does.
    weight_decay : float, default=0.0
        Adam's weight decay (none in the paper).
    temperature : float, default=0.5
        Temperature of NT-Xent (the paper's instance temperature).
    cluster_temperature : float, default=1.0
        Temperature of the cluster-level contrastive loss.
    entropy_weight : float, default=1.0
        Weight of the entropy term (1 in the paper; 0 lets clusters collapse).
    %(projection_dim)s
    %(augmentation)s
    %(device)s
    %(distributed)s
    %(mixed_precision)s
    %(random_state)s
    %(verbose)s
    %(callbacks)s
    %(checkpoint_dir)s
    %(checkpoint_every)s
    %(warm_start)s
    %(early_stopping)s

    Attributes
    ----------
    labels_ : ndarray of shape ``(n_samples,)``
        Cluster of each training sample, ``0..n_clusters_-1``.
    n_clusters_ : int
        Clusters that hold training samples (``<= n_clusters``).
    clusters_ : ndarray of shape ``(n_clusters_,)``
        Column of the cluster head behind each cluster label.
    cluster_sizes_ : ndarray of shape ``(n_clusters_,)``
        Training samples per cluster.
    module_ : FlatClusteringNetwork
        The trained torch network.
    backbone_ : str
        The backbone used (``"custom"`` for a module).
    augmentation_ : ImageAugmentation or VectorAugmentation
        The views used (what ``augmentation="auto"`` resolved to).
    device_ : torch.device
        The device trained on.
    history_ : list of dict
        Per epoch: ``epoch``, ``phase`` (``"warmup"`` or ``"clustering"``),
        ``loss``, ``instance_loss``, ``cluster_loss``, ``entropy`` (each a
        mean over the epoch's batches; the cluster terms are 0 in the
        warm-up) and ``seconds`` (wall time).
    n_features_in_ : int
        ``X.shape[1]`` at fit.
    input_shape_ : tuple of int
        Shape of one sample of ``X`` at fit.

    See Also
    --------
    CoHiClust : the hierarchical method on the same engine.

    Examples
    --------
    >>> from skcohiclust import ContrastiveClustering
    >>> from skcohiclust.datasets import load_digits_images
    >>> X, y = load_digits_images()
    >>> model = ContrastiveClustering(n_clusters=10, random_state=0).fit(X)  # doctest: +SKIP
    >>> model.predict(X[:5])  # doctest: +SKIP
    """

    _method = "ContrastiveClustering"

    def __init__(
        self,
        n_clusters=10,
        backbone="auto",
        backbone_params=None,
        image_shape=None,
        max_epochs=100,
        warmup_epochs=0,
        batch_size=128,
        lr=3e-4,
        lr_schedule="constant",
        weight_decay=0.0,
        temperature=0.5,
        cluster_temperature=1.0,
        entropy_weight=1.0,
        projection_dim=128,
        augmentation="auto",
        device="auto",
        distributed="auto",
        mixed_precision=True,
        random_state=None,
        verbose=0,
        callbacks=None,
        checkpoint_dir=None,
        checkpoint_every=1,
        warm_start=False,
        early_stopping=None,
    ):
        self.n_clusters = n_clusters
        self.backbone = backbone
        self.backbone_params = backbone_params
        self.image_shape = image_shape
        self.max_epochs = max_epochs
        self.warmup_epochs = warmup_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.weight_decay = weight_decay
        self.temperature = temperature
        self.cluster_temperature = cluster_temperature
        self.entropy_weight = entropy_weight
        self.projection_dim = projection_dim
        self.augmentation = augmentation
        self.device = device
        self.distributed = distributed
        self.mixed_precision = mixed_precision
        self.random_state = random_state
        self.verbose = verbose
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir
        self.checkpoint_every = checkpoint_every
        self.warm_start = warm_start
        self.early_stopping = early_stopping

    def _objective(self, config):
        self._check_n_clusters()
        _check_float("temperature", self.temperature, positive=True)
        _check_float("cluster_temperature", self.cluster_temperature, positive=True)
        _check_float("entropy_weight", self.entropy_weight)
        return ContrastiveClusteringObjective(
            n_clusters=self.n_clusters,
            temperature=float(self.temperature),
            cluster_temperature=float(self.cluster_temperature),
            entropy_weight=float(self.entropy_weight),
        )
