"""CoHiClust, the scikit-learn estimator: its parameters, its tree, pruning and the hierarchy.

The shared surface (validation, fitting, long runs, inference, pickling)
is :class:`~skcohiclust._base.BaseDeepClusterer`'s; what CoHiClust trains is
:class:`~skcohiclust.objectives.CoHiClustObjective`; :mod:`skcohiclust.tree`
turns the network's outputs into leaves, pruning and the linkage matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from numpy.typing import ArrayLike
from sklearn.utils.validation import check_is_fitted

from . import hierarchy
from . import tree as tree_math
from ._base import BaseDeepClusterer, _check_float, _check_int, shared_parameter_docs
from ._validation import MAX_DEPTH, check_tree_fits_memory
from .objectives import CoHiClustObjective

__all__ = ["CoHiClust"]


@shared_parameter_docs
class CoHiClust(BaseDeepClusterer):
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
    %(backbone)s
    %(backbone_params)s
    %(image_shape)s
    %(max_epochs)s
    warmup_epochs : int or "auto", default="auto"
        Leading epochs trained with the instance (NT-Xent) loss alone.
        ``"auto"`` is ``max_epochs // 2``.  Must be smaller than ``max_epochs``.
    prune_start : int or "auto", default="auto"
        First epoch at whose end a leaf may be pruned (with ``tree_init``
        ``"bisect"`` or ``"random"``; the ``"kmeans"`` start has no leaves to
        prune).  ``"auto"`` starts halfway through the tree phase; the
        removals are spread evenly up to 80%% of ``max_epochs``, and anything
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
        two views of one image cannot teach.  The neighbours are kept (also
        by checkpoints and ``warm_start``) for the rest of the run, or up to
        the next refresh (``refresh_neighbors``), and looked up again on
        other data (each new ``partial_fit`` chunk).
    refresh_neighbors : "auto" or int, default="auto"
        Epochs of the tree phase between two minings of the neighbour
        positives (our addition): as the tree phase trains the
        representation, every ``refresh_neighbors`` epochs each sample's
        neighbours are found again in it (one more pass over the data).
        ``0`` keeps the neighbours found when the tree phase starts for
        the rest of the run.  ``"auto"`` mines them again after every
        250,000 samples or so of training, in whole epochs
        (:func:`skcohiclust.neighbors.refresh_epochs`): every 5 epochs of
        CIFAR-10's 50,000 images, every 4 of Fashion-MNIST's 70,000, and
        never on data as small as digits, whose first neighbours are
        already nearly all of one class and whose tree phase is too short
        for the representation to move far.  No effect with
        ``n_neighbors=0``.  On CIFAR-10 (110 epochs) ``"auto"`` raised ACC
        from 0.409 to 0.425 and NMI from 0.294 to 0.312 over ``0``; on
        digits a refresh every 5 epochs had lowered ACC from 0.958 to 0.941,
        where ``"auto"`` leaves it as it was (see BENCHMARKS.md, "CIFAR-10:
        where it stands").
    %(batch_size)s
    %(lr)s
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
    %(weight_decay)s
    temperature : float, default=0.5
        Temperature of NT-Xent.
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

    _method = "CoHiClust"

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
        refresh_neighbors="auto",
        batch_size=128,
        lr=1e-3,
        lr_schedule="constant",
        leaf_balance=1.0,
        weight_decay=1e-6,
        temperature=0.5,
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
        self.refresh_neighbors = refresh_neighbors
        self.batch_size = batch_size
        self.lr = lr
        self.lr_schedule = lr_schedule
        self.leaf_balance = leaf_balance
        self.weight_decay = weight_decay
        self.temperature = temperature
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

    # ------------------------------------------------------------------ parameters
    def _default_warmup(self, max_epochs):
        return max_epochs // 2

    def _n_neighbors(self):
        _check_int("n_neighbors", self.n_neighbors, 0, None, "(0 pairs two views of each sample)")
        return self.n_neighbors

    def _refresh_neighbors(self):
        if isinstance(self.refresh_neighbors, str) and self.refresh_neighbors == "auto":
            return "auto"
        _check_int("refresh_neighbors", self.refresh_neighbors, 0, None, "(0 mines the neighbours once) or 'auto'")
        return int(self.refresh_neighbors)

    def _check_fits_memory(self, n_samples, batch_size, device):
        check_tree_fits_memory(self.depth, n_samples, batch_size, self.backbone, device)

    def _objective(self, config):
        _check_int("depth", self.depth, 1, MAX_DEPTH, "(and small enough for memory)")
        n_leaves = 2**self.depth
        if self.n_clusters is not None:
            _check_int(
                "n_clusters", self.n_clusters, 1, n_leaves, f"(a tree of depth {self.depth} has {n_leaves} leaves)"
            )
            n_leaves = self.n_clusters
        warmup = config.warmup_epochs
        prune_stop = max(warmup + 1, (4 * config.max_epochs) // 5)
        if isinstance(self.prune_start, str) and self.prune_start == "auto":
            prune_start = warmup + (prune_stop - warmup) // 2
        else:
            _check_int("prune_start", self.prune_start, 0, None, "(or 'auto')")
            prune_start = max(self.prune_start, warmup)
            prune_stop = max(prune_stop, prune_start + 1)
        _check_float("leaf_balance", self.leaf_balance)
        _check_float("temperature", self.temperature, positive=True)
        if self.tree_init not in ("kmeans", "bisect", "random"):
            raise ValueError(f"tree_init must be 'kmeans', 'bisect' or 'random', got {self.tree_init!r}.")
        return CoHiClustObjective(
            depth=self.depth,
            n_leaves=n_leaves,
            temperature=float(self.temperature),
            prune_start=prune_start,
            prune_stop=prune_stop,
            tree_init=self.tree_init,
            leaf_balance=float(self.leaf_balance),
        )

    # ------------------------------------------------------------------ the fitted tree
    def _set_clusters(self, trainer, source, final):
        """The tree's attributes from the training data; ``final`` prunes any leaves still due."""
        network = self.module_
        leaf_prob = self._network_outputs(source, lambda out: tree_math.leaf_probabilities(out.head, self.depth))
        n_leaves = trainer.objective.n_leaves
        if final and int(network.leaf_mask.sum()) > n_leaves:
            network.leaf_mask.copy_(tree_math.prune_least_used(leaf_prob, network.leaf_mask.cpu(), n_leaves))
        self._set_leaves(leaf_prob)

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
    def _cluster_probabilities(self, out):
        leaf = tree_math.leaf_probabilities(out.head, self.depth)
        return tree_math.masked_leaf_probabilities(leaf, self.module_.leaf_mask)

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
        proba = super().predict_proba(X)
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
        ndarray of shape ``(n_samples,)``
            Labels in ``0..n_clusters_-1``, numbered as the leaves of ``tree_``.
        """
        labels = self.predict_proba(X).argmax(axis=1)
        return labels if level is None else hierarchy.leaf_to_level(self.leaves_, self.depth, level)[labels]

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
        ndarray of shape ``(n_samples,)``
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
        ndarray of shape ``(n_samples_X, n_samples_Y)``
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
