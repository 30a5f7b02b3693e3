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
from ._base import SHARED_PARAMETERS, BaseDeepClusterer, _check_float, _check_int, shared_parameter_docs
from .objectives import ConCURLObjective, ContrastiveClusteringObjective, SeCuObjective

__all__ = ["ContrastiveClustering", "ConCURL", "SeCu"]


class _FlatClusterer(BaseDeepClusterer):
    """What the flat clusterers share: clusters are the head's columns that hold training samples."""

    def _check_n_clusters(self):
        _check_int("n_clusters", self.n_clusters, 1)

    def _set_clusters(self, trainer, source, final):
        """``labels_`` and the clusters in use from the head's probabilities on the training data."""
        proba = self._network_outputs(source, lambda out: self._head_probabilities(out.head))
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

    def _head_probabilities(self, head):
        """Cluster probabilities from the head's output (the head gives them directly by default)."""
        return head.float()

    def _cluster_probabilities(self, out):
        proba = self._head_probabilities(out.head)
        mask = torch.zeros(proba.shape[1], dtype=torch.bool, device=proba.device)
        mask[torch.as_tensor(self.clusters_, device=proba.device)] = True
        return tree_math.masked_leaf_probabilities(proba, mask)

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


class _PrototypeClusterer(_FlatClusterer):
    """Flat clusterers whose head embeds samples and compares them with one prototype per cluster."""

    # their batch statistics hold the prototypes and per-sample state, which the data-parallel
    # step does not yet know how to combine: refused rather than trained wrongly
    _supports_distributed = False

    def _head_probabilities(self, head):
        return self.module_.cluster_head.probabilities(head)


_FITTED_ATTRIBUTES = """labels_ : ndarray of shape ``(n_samples,)``
        Cluster of each training sample, ``0..n_clusters_-1``.
    n_clusters_ : int
        Clusters that hold training samples (``<= n_clusters``).
    clusters_ : ndarray of shape ``(n_clusters_,)``
        Prototype behind each cluster label.
    cluster_sizes_ : ndarray of shape ``(n_clusters_,)``
        Training samples per cluster.
    module_ : FlatClusteringNetwork
        The trained torch network (its ``cluster_head`` is a
        :class:`~skcohiclust.networks.PrototypeHead`).
    backbone_ : str
        The backbone used (``"custom"`` for a module).
    augmentation_ : ImageAugmentation or VectorAugmentation
        The views used (what ``augmentation="auto"`` resolved to).
    device_ : torch.device
        The device trained on.
    n_features_in_ : int
        ``X.shape[1]`` at fit.
    input_shape_ : tuple of int
        Shape of one sample of ``X`` at fit."""


def _prototype_docs(cls):
    """Fill a prototype clusterer's docstring: the shared parameters and its fitted attributes."""
    cls.__doc__ = cls.__doc__ % {**SHARED_PARAMETERS, "fitted": _FITTED_ATTRIBUTES}
    return cls


@_prototype_docs
class ConCURL(_PrototypeClusterer):
    """ConCURL: clusters from exemplar, population and consensus consistency.

    The method of Deshmukh, Regatti, Manavoglu and Dogan ("Representation
    Learning for Clustering via Building Consensus", 2021).  A backbone
    feeds a projection head and a prototype head (an MLP embedding ``e``
    and ``n_clusters`` learnable prototypes ``c_k``).  The loss
    (:class:`~skcohiclust.objectives.ConCURLObjective`) adds three
    consistencies between two random views of every sample:

    - exemplar: NT-Xent between the views' projections;
    - population (SwAV's swapped prediction): with scores
      ``s = cos(e, c)``, each view's soft assignment ``softmax(s /
      assignment_temperature)`` predicts the other view's Sinkhorn-balanced
      targets ``q = Sinkhorn(exp(s / sinkhorn_epsilon))``:
      ``-(q_2·log p_1 + q_1·log p_2) / 2``;
    - consensus: ``n_projections`` fixed Gaussian random projections
      ``R_m`` of the embedding space, drawn anew each epoch; in each, the
      soft assignment ``softmax(cos(e R_m, c R_m) / assignment_temperature)``
      of one view predicts the other view's targets ``q`` of the
      embedding space (the prototypes get no gradient through it), averaged
      over the projections: all the projected clusterings and the
      clustering itself must agree.

    A sample's cluster is its most probable prototype,
    ``argmax_k cos(e, c_k)``.

    Where this implementation departs from the paper (ResNet backbones,
    BYOL or NCE for the exemplar term, SwAV's multi-crop and queue, about
    1,000 epochs, SGD/LARS):

    - The network is this package's (any of its backbones; by default a
      small CNN for images, an MLP for vectors), the exemplar term is
      NT-Xent on the package's projection head, and the optimiser is Adam.
    - The views are this package's batched augmentations (two per sample,
      no multi-crop); there is no queue of past embeddings for the Sinkhorn
      targets, which are computed on the batch alone.
    - The random projections are Gaussian (one of the paper's choices),
      ``n_projections=4`` to ``projected_dim=32`` by default, redrawn every
      epoch from the seed; the prototypes are normalised inside the scores
      rather than after each step.
    - Defaults fit a CPU budget: ``max_epochs=100``, ``lr=1e-3``.
    - Optional (off by default): ``warmup_epochs`` of NT-Xent alone.
    - After training, prototypes that no training sample picks are dropped
      (scikit-learn wants labels ``0..k-1``), so ``n_clusters_ <=
      n_clusters``.

    Parameters
    ----------
    n_clusters : int, default=10
        Number of prototypes (clusters sought).
    %(backbone)s
    %(backbone_params)s
    %(image_shape)s
    %(max_epochs)s
    warmup_epochs : int or "auto", default=0
        Leading epochs trained with NT-Xent alone (``"auto"`` is 0).
    %(batch_size)s
    %(lr)s
    lr_schedule : {"constant", "cosine"}, default="constant"
        Learning-rate schedule (see :class:`ContrastiveClustering`).
    %(weight_decay)s
    temperature : float, default=0.5
        NT-Xent's temperature.
    assignment_temperature : float, default=0.1
        Softmax temperature of the soft assignments to the prototypes (the paper's 0.1).
    sinkhorn_epsilon : float, default=0.05
        Entropic regularisation of the Sinkhorn targets (the paper's 0.05).
    sinkhorn_iterations : int, default=3
        Sinkhorn iterations (the paper's 3).
    n_projections : int, default=4
        Random projections in the consensus loss.
    projected_dim : int, default=32
        Dimension of each projected space (at most ``embedding_dim``).
    embedding_dim : int, default=128
        Size of the prototype head's embedding.
    exemplar_weight : float, default=1.0
        Weight of the exemplar (NT-Xent) term.
    population_weight : float, default=1.0
        Weight of the population term.
    consensus_weight : float, default=1.0
        Weight of the consensus term.
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
    %(fitted)s
    history_ : list of dict
        Per epoch: ``epoch``, ``phase``, ``loss``, ``exemplar_loss``,
        ``population_loss``, ``consensus_loss`` (means over the epoch's
        batches; the last two are 0 in the warm-up) and ``seconds``.

    See Also
    --------
    ContrastiveClustering : flat clusters by instance- and cluster-level contrast.
    SeCu : flat clusters by stable cluster discrimination.

    Examples
    --------
    >>> from skcohiclust import ConCURL
    >>> from skcohiclust.datasets import load_digits_images
    >>> X, y = load_digits_images()
    >>> model = ConCURL(n_clusters=10, random_state=0).fit(X)  # doctest: +SKIP
    >>> model.predict(X[:5])  # doctest: +SKIP
    """

    _method = "ConCURL"

    def __init__(
        self,
        n_clusters=10,
        backbone="auto",
        backbone_params=None,
        image_shape=None,
        max_epochs=100,
        warmup_epochs=0,
        batch_size=128,
        lr=1e-3,
        lr_schedule="constant",
        weight_decay=1e-6,
        temperature=0.5,
        assignment_temperature=0.1,
        sinkhorn_epsilon=0.05,
        sinkhorn_iterations=3,
        n_projections=4,
        projected_dim=32,
        embedding_dim=128,
        exemplar_weight=1.0,
        population_weight=1.0,
        consensus_weight=1.0,
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
        self.assignment_temperature = assignment_temperature
        self.sinkhorn_epsilon = sinkhorn_epsilon
        self.sinkhorn_iterations = sinkhorn_iterations
        self.n_projections = n_projections
        self.projected_dim = projected_dim
        self.embedding_dim = embedding_dim
        self.exemplar_weight = exemplar_weight
        self.population_weight = population_weight
        self.consensus_weight = consensus_weight
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
        _check_int("embedding_dim", self.embedding_dim, 1)
        _check_int("n_projections", self.n_projections, 1)
        _check_int("projected_dim", self.projected_dim, 1)
        _check_int("sinkhorn_iterations", self.sinkhorn_iterations, 1)
        for name in ("temperature", "assignment_temperature", "sinkhorn_epsilon"):
            _check_float(name, getattr(self, name), positive=True)
        for name in ("exemplar_weight", "population_weight", "consensus_weight"):
            _check_float(name, getattr(self, name))
        return ConCURLObjective(
            n_clusters=self.n_clusters,
            embedding_dim=self.embedding_dim,
            temperature=float(self.temperature),
            assignment_temperature=float(self.assignment_temperature),
            sinkhorn_epsilon=float(self.sinkhorn_epsilon),
            sinkhorn_iterations=self.sinkhorn_iterations,
            n_projections=self.n_projections,
            projected_dim=self.projected_dim,
            exemplar_weight=float(self.exemplar_weight),
            population_weight=float(self.population_weight),
            consensus_weight=float(self.consensus_weight),
        )


@_prototype_docs
class SeCu(_PrototypeClusterer):
    """SeCu: stable cluster discrimination with a global entropy constraint.

    The method of Qian ("Stable Cluster Discrimination for Deep
    Clustering", ICCV 2023).  A backbone and an MLP embed every sample
    (``x``, L2-normalised); the ``n_clusters`` centres ``w_k`` (unit
    vectors) are not parameters of the network: they are moved by their
    own rule.  Every training sample keeps an assignment ``y_i``
    (:class:`~skcohiclust.objectives.SeCuObjective`); in every step:

    - assignment under the global entropy constraint: the batch's samples
      take ``argmin_k -cos(x_i, w_k) + alpha * delta_ik``, where
      ``delta_ik`` is the change of ``sum_k p_k log p_k`` (the negative
      entropy of the cluster sizes over the data set) if sample ``i`` moves
      to ``k``, and ``alpha = entropy_weight * n_samples``;
    - representation: the network minimises the cross entropy of
      ``softmax(x·w' / temperature)`` (``w'``: the centres frozen at the
      start of the epoch) against ``label_weight * onehot(y_i) + (1 -
      label_weight) * softmax`` of the other view, both views;
    - centres: the stable cluster discrimination loss
      ``-log softmax(x_i·w / center_temperature)[y_i]``, in which only the
      assigned centre is moved (no negative pushes a centre, and the
      features are fixed), has the closed-form gradient ``g_k = -sum_{i:
      y_i = k} (1 - p_ik) x_i / (B * center_temperature)`` (hard samples
      weigh more); after the network's step the centres take
      ``w_k <- normalize(w_k - center_lr * g_k)``.

    A sample's cluster is its nearest centre, ``argmax_k cos(x, w_k)``.

    Where this implementation departs from the paper and the authors'
    configuration (ResNet-18, 400 epochs of SGD with a cosine schedule and
    an 11-epoch warm-up, ten clustering heads with 10 to 100 clusters, the
    size-constrained variant for the headline numbers):

    - The network is this package's (by default a small CNN for images,
      an MLP for vectors) and trained by Adam; its projection head is used
      only in the optional warm-up.
    - One clustering head of ``n_clusters`` centres, not ten.
    - The centres take plain projected gradient steps of constant size (the
      paper trains them by SGD with momentum, weight decay and the network's
      schedule, through the normalisation).
    - The constraint is the paper's global entropy constraint; its weight is
      given per training sample (``entropy_weight``; the authors' ``alpha
      = 6000`` on CIFAR-10's 50,000 images is 0.12), so that it does not
      depend on the size of the data.
    - The views are this package's batched augmentations; defaults fit a
      CPU budget (``max_epochs=100``).
    - Optional (off by default): ``warmup_epochs`` of NT-Xent alone (the
      paper's first epoch trains nothing and only assigns).
    - ``partial_fit`` on a chunk of another size starts the stored
      assignments afresh.  Centres that no training sample picks are dropped
      after training, so ``n_clusters_ <= n_clusters``.

    Parameters
    ----------
    n_clusters : int, default=10
        Number of centres (clusters sought).
    %(backbone)s
    %(backbone_params)s
    %(image_shape)s
    %(max_epochs)s
    warmup_epochs : int or "auto", default=0
        Leading epochs trained with NT-Xent alone (``"auto"`` is 0).
    %(batch_size)s
    %(lr)s
    lr_schedule : {"constant", "cosine"}, default="constant"
        Learning-rate schedule of the network (see :class:`ContrastiveClustering`).
    %(weight_decay)s
    temperature : float, default=0.05
        Temperature of the representation loss and of ``predict_proba`` (the paper's 0.05).
    center_temperature : float, default=0.05
        Temperature of the centres' loss (the paper's 0.05).
    label_weight : float, default=0.2
        Weight of the assigned cluster in the representation's targets (the paper's 0.2).
    entropy_weight : float, default=0.12
        Weight of the global entropy constraint per training sample.
    center_lr : float, default=1.2
        Step size of the centre updates (the paper's centre learning rate).
    embedding_dim : int, default=128
        Size of the embedding.
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
    %(fitted)s
    history_ : list of dict
        Per epoch: ``epoch``, ``phase``, ``loss``, ``representation_loss``,
        ``center_loss``, ``smallest_cluster``, ``largest_cluster`` (of the
        stored assignments) and ``seconds``.

    See Also
    --------
    ConCURL : flat clusters from exemplar, population and consensus consistency.
    ContrastiveClustering : flat clusters by instance- and cluster-level contrast.

    Examples
    --------
    >>> from skcohiclust import SeCu
    >>> from skcohiclust.datasets import load_digits_images
    >>> X, y = load_digits_images()
    >>> model = SeCu(n_clusters=10, random_state=0).fit(X)  # doctest: +SKIP
    >>> model.predict(X[:5])  # doctest: +SKIP
    """

    _method = "SeCu"

    def __init__(
        self,
        n_clusters=10,
        backbone="auto",
        backbone_params=None,
        image_shape=None,
        max_epochs=100,
        warmup_epochs=0,
        batch_size=128,
        lr=1e-3,
        lr_schedule="constant",
        weight_decay=1e-6,
        temperature=0.05,
        center_temperature=0.05,
        label_weight=0.2,
        entropy_weight=0.12,
        center_lr=1.2,
        embedding_dim=128,
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
        self.center_temperature = center_temperature
        self.label_weight = label_weight
        self.entropy_weight = entropy_weight
        self.center_lr = center_lr
        self.embedding_dim = embedding_dim
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
        _check_int("embedding_dim", self.embedding_dim, 1)
        for name in ("temperature", "center_temperature"):
            _check_float(name, getattr(self, name), positive=True)
        for name in ("entropy_weight", "center_lr"):
            _check_float(name, getattr(self, name))
        _check_float("label_weight", self.label_weight)
        if self.label_weight > 1:
            raise ValueError(f"label_weight must be a float in [0, 1]; got {self.label_weight!r}.")
        return SeCuObjective(
            n_clusters=self.n_clusters,
            embedding_dim=self.embedding_dim,
            temperature=float(self.temperature),
            center_temperature=float(self.center_temperature),
            label_weight=float(self.label_weight),
            entropy_weight=float(self.entropy_weight),
            center_lr=float(self.center_lr),
        )
