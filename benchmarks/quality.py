"""Clustering quality of CoHiClust and its peers on real images, in one run.

Usage::

    python benchmarks/quality.py --dataset digits
    python benchmarks/quality.py --dataset fashion-mnist --seeds 0 1 2
    python benchmarks/quality.py --dataset cifar10 --seeds 0 --methods CoHiClust CoHiClust-unpruned KMeans
    python benchmarks/quality.py --dataset digits --limit 500 --max-epochs 2 --seeds 0 --deepect-epochs 2 6

For every seed and method it fits on the data set (all 1,797 digits, all
70,000 Fashion-MNIST images, train + test, the protocol of the clustering
literature, or the 50,000 CIFAR-10 training images of the shared archive,
``--data`` for another copy: see :func:`skcohiclust.datasets.load_cifar10`),
times the fit, and scores the result against the true classes:
ACC (:func:`skcohiclust.metrics.cluster_accuracy`), NMI and ARI
(scikit-learn), DP (:func:`~skcohiclust.metrics.dendrogram_purity`) and LP
(:func:`~skcohiclust.metrics.leaf_purity`).  Rows go to
``benchmarks/results/quality-<dataset>.json`` (merged with the rows already
there: a row is replaced by a new one of the same method and seed, so
methods can be run separately), a table is printed, and a markdown table
(mean ± sample standard deviation over the seeds) goes into
``benchmarks/BENCHMARKS.md`` between ``<!-- quality-<dataset>:start -->`` and
``<!-- quality-<dataset>:end -->``, beside the published numbers and the
bars of the issue.  With ``--limit`` (a quick check on a fixed random
subsample) the rows go to ``quality-<dataset>-limit<N>.json`` and
BENCHMARKS.md is left alone unless ``--markdown`` names a file.

The methods (rows)
------------------
``CoHiClust``
    ``CoHiClust(depth=4, n_clusters=10, random_state=seed, **COHICLUST_PARAMS[dataset])``:
    the estimator's defaults (a tree of 10 leaves from the k-means start)
    on digits; on Fashion-MNIST the number of epochs that fits the
    30-minute budget with room to spare, half of them warm-up.  DP and LP
    from ``model.tree_`` and ``model.labels_``.
``CoHiClust-unpruned``
    A separate fit with ``n_clusters=None``: the whole tree of 16 leaves
    (leaves that end with no training sample are dropped).  A separate fit
    rather than one unpruned fit cut afterwards with ``.prune(10)``, because
    the ``CoHiClust`` row's tree has 10 leaves from the start of its tree
    phase (the paper's method prunes during training), which shapes the
    tree; it doubles the CoHiClust time.
``CC``
    ``ContrastiveClustering(n_clusters=10, random_state=seed, max_epochs=...)``:
    Contrastive Clustering (Li et al., AAAI 2021) on the same engine, with
    the same backbone, views, batch size, epochs (CoHiClust's of the data
    set, or ``--max-epochs``) and seeds as the ``CoHiClust`` row; its other
    settings are the estimator's defaults (the paper's learning rate,
    weight decay and temperatures, no warm-up).  A flat clusterer has no
    tree: DP is that of a Ward linkage over the clusters' mean
    representations (``model.transform``), computed after the timed fit.
``ConCURL``, ``SeCu``
    ``ConCURL(...)`` and ``SeCu(...)`` (Deshmukh et al. 2021; Qian, ICCV
    2023) run exactly as the ``CC`` row: the same backbone, views, batch
    size, epochs and seeds, the estimators' defaults otherwise, and DP from
    a Ward linkage over the clusters' mean representations.
``KMeans``
    ``KMeans(n_clusters=10, n_init=10, random_state=seed)`` on the raw pixels
    (flattened, original scale).  DP needs a tree: a Ward linkage over the
    10 centroids (scipy), computed after the timed fit.
``Agglomerative-Ward``
    ``AgglomerativeClustering(n_clusters=10, linkage="ward")`` on the raw
    pixels, full tree.  ACC/NMI/ARI/LP score its 10-cluster cut; DP the tree
    cut to those 10 clusters (its last 9 merges), so that every row's DP is
    that of a 10-leaf tree; the DP of the full tree (a leaf per sample) is
    in the row's notes.  Ward keeps all pairwise distances (``n**2 / 2``
    floats: 19.6 GB for 70,000 images), so above ``--ward-max-samples``
    (20,000: 1.6 GB, twice that at peak) it runs on a random subset of that
    size drawn with the seed, and is scored on that subset
    (``n_samples`` and the notes of the row say so).
``DeepECT`` and ``DeepECT-unpruned``
    ClustPy's DeepECT with its defaults (feed-forward autoencoder, up to 20
    leaves, 100 pretraining and 150 clustering epochs; ``--deepect-epochs``
    changes the two epoch counts for quick checks), on the pixels scaled to
    ``[0, 1]`` and flattened.  Its tree (``tree_``, a ClustPy
    ``BinaryClusterTree``) is converted to a linkage over its leaves.
    ``DeepECT-unpruned`` scores the whole tree; ``DeepECT`` the tree cut to
    10 leaves with ClustPy's own ``prune_to_n_leaf_nodes`` (keeping the 10
    leaves created first), as CoHiClust is cut to 10.  Both rows come from
    one fit and carry its time.  DeepECT is slow (about an hour on 70,000
    images on 2 CPU cores), so by default it runs for the first seed only
    (``--deepect-seeds``).  Skipped with a note when ClustPy is not
    installed (``pip install clustpy``).

Every row: ``dataset, method, seed, acc, nmi, ari, dp, lp, fit_seconds,
device`` and ``n_clusters`` (leaves of the scored tree), ``n_samples``,
``peak_rss_gib`` (the process's peak resident memory so far: loading the
data and every fit up to this row, so the first method's row bounds its
own peak), ``notes``.  The JSON file holds ``{"dataset", "machine", "command", "rows"}``
(the machine and command of the latest run).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
from _common import (
    BENCHMARKS_MD,
    RESULTS_DIR,
    command_line,
    machine_description,
    machine_summary,
    markdown_table,
    mean_std,
    read_json,
    replace_section,
    write_json,
)
from scipy.cluster.hierarchy import linkage as scipy_linkage
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from skcohiclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity

# ----------------------------------------------------------------------------- settings
#: Where the CIFAR-10 images are read from by default: the shared archive beside the checkout.
CIFAR10_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpg.tar.gz"

#: Fashion-MNIST training length of CoHiClust: what fits in the 30-minute CPU budget of the
#: quality bar with room to spare (one warm-up epoch of the default CNN on 70,000 images takes
#: about 36 s on 2 cores with bfloat16 and channels-last at its 24x24 working size, 45-80 s at
#: 28x28, depending on the machine and its load, about 2x that in float32; a tree-phase epoch,
#: which also reads the neighbours' rows, about as much).
FASHION_MNIST_MAX_EPOCHS = 22
#: ... of which the warm-up.  Without neighbour positives the tree gained nothing after its
#: third epoch (BENCHMARKS.md, "Precision, memory order and the length of the tree phase"); with
#: them it keeps gaining, and a longer warm-up adds little to the representation's neighbours
#: (BENCHMARKS.md, "Neighbour positives"), so the epochs are shared about evenly.
FASHION_MNIST_WARMUP_EPOCHS = 11

#: CIFAR-10 training length of CoHiClust: what fits in the 60-minute CPU budget of the quality
#: bar with the default CNN, which works at 24x24 (23-32 s an epoch of the 50,000 images on
#: 2 cores, plus about 70 s outside the epochs: 110 epochs took 2,802 s at about 25 s an epoch
#: and still fit the hour at 31 s); the warm-up is the default half.
CIFAR10_MAX_EPOCHS = 110

#: CoHiClust keyword arguments per data set (``random_state`` and ``device`` are added per run).
COHICLUST_PARAMS = {
    "digits": dict(depth=4, n_clusters=10),
    "fashion-mnist": dict(
        depth=4, n_clusters=10, max_epochs=FASHION_MNIST_MAX_EPOCHS, warmup_epochs=FASHION_MNIST_WARMUP_EPOCHS
    ),
    "cifar10": dict(depth=4, n_clusters=10, max_epochs=CIFAR10_MAX_EPOCHS),
}

N_CLUSTERS = 10
WARD_MAX_SAMPLES = 20_000
DEEPECT_EPOCHS = (100, 150)  # ClustPy's defaults: pretraining, clustering
METHODS = ("CoHiClust", "CoHiClust-unpruned", "CC", "ConCURL", "SeCu", "KMeans", "Agglomerative-Ward", "DeepECT")

DATASET_TITLES = {
    "digits": "scikit-learn digits (8×8)",
    "fashion-mnist": "Fashion-MNIST (28×28, train + test)",
    "cifar10": "CIFAR-10 (32×32 colour, the 50,000 training images)",
}

#: Published numbers: {dataset: [(method, source, {metric: value})]}.
PUBLISHED = {
    "cifar10": [
        (
            "CoHiClust",
            "Znaleźniak et al., ECML PKDD 2023; ResNet-50, 1,500 GPU epochs",
            {"acc": 0.839, "nmi": 0.779, "ari": 0.731, "dp": 0.715},
        ),
        ("CC", "Li et al., AAAI 2021", {"acc": 0.790, "nmi": 0.705, "ari": 0.637}),
        ("ConCURL", "Deshmukh et al., 2021", {"acc": 0.846, "nmi": 0.762, "ari": 0.715}),
        ("SeCu", "Qian, ICCV 2023", {"acc": 0.930, "nmi": 0.861, "ari": 0.857}),
    ],
    "fashion-mnist": [
        ("CoHiClust", "Znaleźniak et al., ECML PKDD 2023", {"acc": 0.65, "dp": 0.52}),
        ("TreeVAE", "Manduchi et al., NeurIPS 2023", {"acc": 0.636, "nmi": 0.647, "dp": 0.544, "lp": 0.714}),
        ("DeepECT", "re-run by TreeVAE's authors", {"acc": 0.518, "dp": 0.449}),
    ],
}

#: How the papers' evaluation differs from this script's, per data set (shown under their numbers).
PUBLISHED_PROTOCOL = {
    "cifar10": "the papers score CIFAR-10's 60,000 train + test images, this script the 50,000 training images",
    "fashion-mnist": "the papers' splits need not be the 70,000 train + test images scored here",
}

#: The bars of the issue for the ``CoHiClust`` row: (metric, comparison, value).
BARS = {
    "digits": [("acc", ">=", 0.90), ("nmi", ">=", 0.85), ("fit_seconds", "<", 180.0)],
    "fashion-mnist": [
        ("acc", ">=", 0.65),
        ("nmi", ">=", 0.62),
        ("dp", ">=", 0.55),
        ("lp", ">=", 0.72),
        ("fit_seconds", "<", 1800.0),
    ],
    "cifar10": [("acc", ">=", 0.45), ("nmi", ">=", 0.35), ("fit_seconds", "<=", 3600.0)],
}

METRICS = ("acc", "nmi", "ari", "dp", "lp")
#: The flat peers on the same engine; each must reach KMeans-on-raw-pixels ACC.
PEERS = ("CC", "ConCURL", "SeCu")


# ----------------------------------------------------------------------------- data
def load_dataset(name: str, limit: int | None, data=None):
    """Images, classes and the pixel maximum of a data set, optionally a fixed random subsample.

    ``data`` names CIFAR-10's files (default :data:`CIFAR10_DEFAULT`, else the
    search of :func:`~skcohiclust.datasets.load_cifar10`).
    """
    if name == "digits":
        from skcohiclust.datasets import load_digits_images

        X, y = load_digits_images()
        scale = 16.0
    elif name == "cifar10":
        from skcohiclust.datasets import load_cifar10

        if data is None and CIFAR10_DEFAULT.is_file():
            data = CIFAR10_DEFAULT
        X, y = load_cifar10(data, subset="all")
        scale = 255.0
    else:
        from skcohiclust.datasets import load_fashion_mnist

        X, y = load_fashion_mnist(subset="all")
        scale = 255.0
    if limit is not None and limit < len(y):
        keep = np.sort(np.random.default_rng(0).choice(len(y), size=limit, replace=False))
        X, y = X[keep], y[keep]
    return X, y, scale


# ----------------------------------------------------------------------------- methods
@dataclasses.dataclass
class Outcome:
    """What a method returns: the leaf of every scored sample, a linkage over the leaves, and its fit."""

    leaf_labels: np.ndarray
    linkage: np.ndarray
    fit_seconds: float
    device: str
    y_true: np.ndarray  # the classes of the scored samples (a subset for Ward on large data)
    notes: str = ""


def _epochs(args):
    """CoHiClust's epoch settings for the data set, with ``--max-epochs`` applied."""
    params = dict(COHICLUST_PARAMS[args.dataset])
    if args.max_epochs is not None:
        if "warmup_epochs" in params:  # keep the data set's share of warm-up
            share = params["warmup_epochs"] / params["max_epochs"]
            params["warmup_epochs"] = min(round(args.max_epochs * share), args.max_epochs - 1)
        params["max_epochs"] = args.max_epochs
    return params


def _precision_note(model):
    from skcohiclust.training import native_bfloat16

    bfloat16 = model.mixed_precision and native_bfloat16(model.device_)
    return "; training in bfloat16" if bfloat16 else "; training in float32"


def run_cohiclust(X, y, seed, args, pruned: bool) -> Outcome:
    from skcohiclust import CoHiClust

    params = _epochs(args)
    if not pruned:
        params["n_clusters"] = None
    model = CoHiClust(random_state=seed, device=args.device, verbose=args.verbose, **params)
    start = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - start
    shown = ", ".join(f"{k}={v}" for k, v in params.items()) + _precision_note(model)
    return Outcome(model.labels_, model.tree_, seconds, str(model.device_), y, notes=shown)


def run_cc(X, y, seed, args, method="CC") -> Outcome:
    """A flat peer (CC, ConCURL, SeCu) with CoHiClust's backbone, views, batch size, epochs and seeds."""
    import skcohiclust

    cls = {"CC": skcohiclust.ContrastiveClustering, "ConCURL": skcohiclust.ConCURL, "SeCu": skcohiclust.SeCu}[method]
    params = {"n_clusters": N_CLUSTERS, "max_epochs": _epochs(args).get("max_epochs", 100)}
    model = cls(random_state=seed, device=args.device, verbose=args.verbose, **params)
    start = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - start
    shown = ", ".join(f"{k}={v}" for k, v in params.items()) + _precision_note(model)
    shown += f"; {model.n_clusters_} clusters hold samples; DP tree: Ward linkage of the clusters' mean representations"
    h = model.transform(X).astype(np.float64)
    sums = np.zeros((model.n_clusters_, h.shape[1]))
    np.add.at(sums, model.labels_, h)
    means = sums / np.bincount(model.labels_, minlength=model.n_clusters_)[:, None]
    linkage = scipy_linkage(means, method="ward") if model.n_clusters_ > 1 else np.zeros((0, 4))
    return Outcome(model.labels_, linkage, seconds, str(model.device_), y, notes=shown)


def run_kmeans(X, y, seed, args) -> Outcome:
    from sklearn.cluster import KMeans

    pixels = X.reshape(len(X), -1).astype(np.float32)
    start = time.perf_counter()
    model = KMeans(n_clusters=N_CLUSTERS, n_init=10, random_state=seed).fit(pixels)
    seconds = time.perf_counter() - start
    linkage = scipy_linkage(model.cluster_centers_.astype(np.float64), method="ward")
    return Outcome(model.labels_, linkage, seconds, "cpu", y, notes="n_init=10; DP tree: Ward linkage of the centroids")


def run_ward(X, y, seed, args) -> Outcome:
    from sklearn.cluster import AgglomerativeClustering

    notes = []
    if len(y) > args.ward_max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(y), size=args.ward_max_samples, replace=False))
        X, y = X[keep], y[keep]
        notes.append(f"random subset of {len(keep)} samples (seed {seed}): Ward needs O(n^2) memory")
    pixels = X.reshape(len(X), -1).astype(np.float64)
    start = time.perf_counter()
    model = AgglomerativeClustering(n_clusters=N_CLUSTERS, linkage="ward", compute_full_tree=True).fit(pixels)
    seconds = time.perf_counter() - start
    full = full_linkage(model.children_, len(y))
    leaf_labels, top = cut_linkage(full, N_CLUSTERS)
    notes.append(f"DP of the full tree (a leaf per sample): {dendrogram_purity(y, np.arange(len(y)), full):.4f}")
    return Outcome(leaf_labels, top, seconds, "cpu", y, notes="; ".join(notes))


def run_deepect(X, y, seed, args, scale):
    """One DeepECT fit; returns the outcomes of the tree cut to 10 leaves and of the whole tree."""
    import torch
    from clustpy.deep import DeepECT

    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    pixels = (X.reshape(len(X), -1).astype(np.float32) / scale).astype(np.float32)
    pretrain, clustering = args.deepect_epochs
    model = DeepECT(pretrain_epochs=pretrain, clustering_epochs=clustering, device=device, random_state=seed)
    start = time.perf_counter()
    model.fit(pixels)
    seconds = time.perf_counter() - start
    settings = f"pretrain_epochs={pretrain}, clustering_epochs={clustering}, max_n_leaf_nodes={model.max_n_leaf_nodes}"
    leaf_labels, linkage = clustpy_tree_to_linkage(model.tree_, model.labels_)
    whole = Outcome(leaf_labels, linkage, seconds, str(device), y, notes=settings)
    n_leaves = linkage.shape[0] + 1
    if n_leaves > N_CLUSTERS:
        tree = copy.deepcopy(model.tree_)
        tree.prune_to_n_leaf_nodes(N_CLUSTERS, model.labels_)
        leaf_labels, linkage = clustpy_tree_to_linkage(tree, model.labels_)
        cut = Outcome(
            leaf_labels, linkage, seconds, str(device), y, notes=settings + f"; tree cut to {N_CLUSTERS} leaves"
        )
    else:
        cut = dataclasses.replace(whole, notes=settings + f"; the tree has only {n_leaves} leaves: not cut")
    return cut, whole


# ----------------------------------------------------------------------------- trees
def full_linkage(children, n_samples) -> np.ndarray:
    """Scipy linkage (a leaf per sample) from scikit-learn's ``children_``; heights are the merge order.

    The DP uses only the tree, and merge ranks are non-decreasing heights
    that scipy accepts, whatever ``distances_`` hold.
    """
    children = np.asarray(children, dtype=np.float64)
    rows = np.arange(len(children), dtype=np.float64)
    counts = np.zeros(len(children))  # sample counts are not needed by the metrics; scipy wants them plausible
    sizes = np.ones(n_samples + len(children))
    for i, (a, b) in enumerate(children.astype(np.int64)):  # not a hot path: once per fit
        sizes[n_samples + i] = sizes[a] + sizes[b]
    counts[:] = sizes[n_samples:]
    return np.column_stack([children, rows + 1.0, counts])


def cut_linkage(linkage, n_clusters):
    """Cut a linkage over samples to its top ``n_clusters`` clusters.

    The clusters are the nodes below the last ``n_clusters - 1`` merges (the
    merges are in order, so this is the usual ``maxclust`` cut).  Returns
    the cluster (``0..n_clusters-1``) of every sample and the linkage of the
    top merges over those clusters.
    """
    linkage = np.asarray(linkage, dtype=np.float64)
    n = linkage.shape[0] + 1
    n_clusters = min(n_clusters, n)
    top = linkage[n - n_clusters :]  # the last merges
    children = linkage[:, :2].astype(np.int64)
    first_top = n + (n - n_clusters)  # id of the first top merge
    top_children = top[:, :2].astype(np.int64).ravel()
    roots = np.sort(top_children[top_children < first_top]) if n_clusters > 1 else np.array([2 * n - 2])
    # ancestor of every node among the roots, by pointer doubling over parents
    parent = np.arange(2 * n - 1)
    parent[children.ravel()] = np.repeat(np.arange(n, 2 * n - 1), 2)
    parent[roots] = roots
    while True:
        jumped = parent[parent]
        if np.array_equal(jumped, parent):
            break
        parent = jumped
    cluster_of_root = np.full(2 * n - 1, -1)
    cluster_of_root[roots] = np.arange(len(roots))
    leaf_labels = cluster_of_root[parent[:n]]
    # relabel the top merges over clusters 0..n_clusters-1 then merges n_clusters..
    new_id = np.full(2 * n - 1, -1)
    new_id[roots] = np.arange(len(roots))
    new_id[first_top:] = np.arange(len(roots), len(roots) + len(top))
    top_linkage = top.copy()
    top_linkage[:, :2] = np.sort(new_id[top[:, :2].astype(np.int64)], axis=1)
    sizes = np.ones(len(roots) + len(top))
    for i, (a, b) in enumerate(top_linkage[:, :2].astype(np.int64)):
        sizes[len(roots) + i] = sizes[a] + sizes[b]
    top_linkage[:, 3] = sizes[len(roots) :]
    return leaf_labels, top_linkage


def clustpy_tree_to_linkage(tree, labels):
    """A ClustPy ``BinaryClusterTree`` as (leaf of every sample, scipy linkage over its leaves).

    Leaves are numbered left to right; each leaf holds the ClustPy labels in
    its ``labels`` list.  A node's height is its number of levels above its
    deepest leaf, so heights grow towards the root.
    """
    leaves, internal = [], []  # internal: (height, left, right) with children as ("leaf", i) / ("node", j)

    def visit(node):  # recursion over at most a few dozen nodes
        if node.is_leaf_node():
            leaves.append(node)
            return ("leaf", len(leaves) - 1), 0
        left, left_height = visit(node.left_node_)
        right, right_height = visit(node.right_node_)
        height = 1 + max(left_height, right_height)
        internal.append((height, left, right))
        return ("node", len(internal) - 1), height

    visit(tree.root_node_)
    label_to_leaf = {int(label): i for i, leaf in enumerate(leaves) for label in leaf.labels}
    leaf_labels = np.array([label_to_leaf[int(label)] for label in labels])
    n_leaves = len(leaves)
    order = sorted(range(len(internal)), key=lambda j: internal[j][0])  # children are lower, so formed first
    node_id = {j: n_leaves + rank for rank, j in enumerate(order)}
    sizes = {}

    def ident(child):
        return child[1] if child[0] == "leaf" else node_id[child[1]]

    rows = []
    for j in order:
        height, left, right = internal[j]
        size = sum(1 if c[0] == "leaf" else sizes[c[1]] for c in (left, right))
        sizes[j] = size
        a, b = sorted((ident(left), ident(right)))
        rows.append((a, b, float(height), float(size)))
    return leaf_labels, np.array(rows, dtype=np.float64).reshape(-1, 4)


# ----------------------------------------------------------------------------- scoring and output
def score(dataset, method, seed, outcome: Outcome) -> dict:
    y, leaf = outcome.y_true, outcome.leaf_labels
    return {
        "dataset": dataset,
        "method": method,
        "seed": int(seed),
        "acc": cluster_accuracy(y, leaf),
        "nmi": float(normalized_mutual_info_score(y, leaf)),
        "ari": float(adjusted_rand_score(y, leaf)),
        "dp": dendrogram_purity(y, leaf, outcome.linkage),
        "lp": leaf_purity(y, leaf),
        "fit_seconds": round(float(outcome.fit_seconds), 3),
        "device": outcome.device,
        "n_clusters": int(outcome.linkage.shape[0] + 1),
        "n_samples": int(len(y)),
        "peak_rss_gib": round(peak_rss_gib(), 3),
        "notes": outcome.notes,
    }


def peak_rss_gib() -> float:
    """The largest resident memory of this process so far (data loading and every fit up to now), GiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def print_row(row):
    print(
        f"{row['method']:<20} seed {row['seed']:<3} ACC {row['acc']:.4f}  NMI {row['nmi']:.4f}  ARI {row['ari']:.4f}  "
        f"DP {row['dp']:.4f}  LP {row['lp']:.4f}  leaves {row['n_clusters']:<3} fit {row['fit_seconds']:8.1f} s  "
        f"[{row['device']}]",
        flush=True,
    )


def merge_rows(old, new):
    """``old`` rows with those of the same (method, seed) as a new row replaced, methods in benchmark order."""
    replaced = {(r["method"], r["seed"]) for r in new}
    rows = [r for r in old if (r["method"], r["seed"]) not in replaced] + list(new)
    order = {
        m: i
        for i, m in enumerate(
            (
                "CoHiClust",
                "CoHiClust-unpruned",
                "CC",
                "ConCURL",
                "SeCu",
                "KMeans",
                "Agglomerative-Ward",
                "DeepECT",
                "DeepECT-unpruned",
            )
        )
    }
    return sorted(rows, key=lambda r: (order.get(r["method"], len(order)), r["method"], r["seed"]))


def summary_rows(rows):
    """Per method, in order: (method, rows of that method)."""
    methods = list(dict.fromkeys(r["method"] for r in rows))
    return [(m, [r for r in rows if r["method"] == m]) for m in methods]


def bar_report(dataset, rows):
    """Lines saying whether the CoHiClust row meets each bar of the issue."""
    mine = [r for r in rows if r["method"] == "CoHiClust"]
    if not mine:
        return ["No `CoHiClust` row yet."]
    lines = []
    for metric, op, value in BARS[dataset]:
        mean = float(np.nanmean([r[metric] for r in mine]))
        ok = {">=": mean >= value, "<=": mean <= value, "<": mean < value}[op]
        shown = f"{mean:.1f} s" if metric == "fit_seconds" else f"{mean:.3f}"
        target = f"{value:.0f} s" if metric == "fit_seconds" else f"{value}"
        name = "fit time" if metric == "fit_seconds" else metric.upper()
        lines.append(
            f"- {name} {op.replace('>=', '≥').replace('<=', '≤')} {target}: {shown} — {'met' if ok else 'NOT met'}"
        )
    for peer in PEERS:
        theirs = [r for r in rows if r["method"] == peer]
        kmeans = [r for r in rows if r["method"] == "KMeans"]
        if theirs and kmeans:
            mean, bar = float(np.mean([r["acc"] for r in theirs])), float(np.mean([r["acc"] for r in kmeans]))
            verdict = "met" if mean >= bar else "NOT met"
            lines.append(f"- {peer}: ACC ≥ KMeans on raw pixels ({bar:.3f}): {mean:.3f} — {verdict}")
    if dataset == "fashion-mnist":
        references = {"DeepECT, published (TreeVAE's re-run)": {"acc": 0.518, "dp": 0.449}}
        measured = [r for r in rows if r["method"] == "DeepECT"]
        if measured:
            references["DeepECT, measured here"] = {
                m: float(np.nanmean([r[m] for r in measured])) for m in ("acc", "dp")
            }
        for name, ref in references.items():
            for metric in ("dp", "acc"):
                mean = float(np.nanmean([r[metric] for r in mine]))
                verdict = "met" if mean > ref[metric] else "NOT met"
                lines.append(f"- {metric.upper()} above {name} ({ref[metric]:.3f}): {mean:.3f} — {verdict}")
    return lines


def markdown_section(dataset, rows, machine, limit, command) -> str:
    n_samples = max(r["n_samples"] for r in rows)
    lines = [f"### Quality on {DATASET_TITLES[dataset]}"]
    if limit is not None:
        lines.append(f"\n**Quick check on a random subsample of {limit} samples: not the benchmark.**")
    lines.append(
        f"\n`{command}` — {n_samples} samples, "
        f"mean ± sample standard deviation over the seeds; fit time in seconds on {machine_summary(machine)} "
        f"({machine['date']}).\n"
    )
    table = []
    for method, group in summary_rows(rows):
        seeds = ",".join(str(r["seed"]) for r in group)
        leaves = "/".join(sorted({str(r["n_clusters"]) for r in group}, key=int))
        cells = [method, leaves] + [mean_std([r[m] for r in group]) for m in METRICS]
        cells += [
            mean_std([r["fit_seconds"] for r in group], digits=1),
            seeds,
            "/".join(sorted({r["device"] for r in group})),
        ]
        table.append(cells)
    lines.append(
        markdown_table(["Method", "leaves", "ACC", "NMI", "ARI", "DP", "LP", "fit (s)", "seeds", "device"], table)
    )
    notes = [f"- {method}: {group[0]['notes']}" for method, group in summary_rows(rows) if group[0]["notes"]]
    if notes:
        lines.append("\nSettings and notes (first seed):\n")
        lines += notes
    if dataset in PUBLISHED:
        lines.append(
            f"\nPublished on {DATASET_TITLES[dataset].split(' (')[0]} (as quoted in DESIGN.md and the issues; "
            f"evaluation protocols may differ: {PUBLISHED_PROTOCOL[dataset]}):\n"
        )
        published = [
            [f"{method} ({source})"] + [f"{vals[m]:.3f}" if m in vals else "–" for m in METRICS]
            for method, source, vals in PUBLISHED[dataset]
        ]
        lines.append(markdown_table(["Method", "ACC", "NMI", "ARI", "DP", "LP"], published))
    lines.append("\nBars of the issues for `CoHiClust` and the flat peers:\n")
    lines += bar_report(dataset, rows)
    return "\n".join(lines)


def print_table(rows):
    print()
    header = f"{'method':<20} {'leaves':>6} " + " ".join(f"{m.upper():>15}" for m in METRICS) + f" {'fit (s)':>16}"
    print(header)
    print("-" * len(header))
    for method, group in summary_rows(rows):
        leaves = "/".join(sorted({str(r["n_clusters"]) for r in group}, key=int))
        cells = " ".join(f"{mean_std([r[m] for r in group]):>15}" for m in METRICS)
        print(f"{method:<20} {leaves:>6} {cells} {mean_std([r['fit_seconds'] for r in group], 1):>16}")
    print()


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, choices=sorted(COHICLUST_PARAMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument(
        "--max-epochs", type=int, default=None, help="max_epochs of CoHiClust and CC (overrides the data set's)"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="score a fixed random subsample of this size (quick check)"
    )
    parser.add_argument("--device", default="auto", help="for CoHiClust, CC and DeepECT: auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--deepect-seeds", type=int, nargs="+", default=None, help="seeds for DeepECT (default: the first of --seeds)"
    )
    parser.add_argument(
        "--deepect-epochs",
        type=int,
        nargs=2,
        default=list(DEEPECT_EPOCHS),
        metavar=("PRETRAIN", "CLUSTERING"),
        help="DeepECT's pretraining and clustering epochs "
        f"(default: ClustPy's {DEEPECT_EPOCHS[0]} {DEEPECT_EPOCHS[1]})",
    )
    parser.add_argument("--ward-max-samples", type=int, default=WARD_MAX_SAMPLES)
    parser.add_argument(
        "--data", type=Path, default=None, help="CIFAR-10's files (default: the shared archive beside the checkout)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="file for the table (default: benchmarks/BENCHMARKS.md; none with --limit)",
    )
    parser.add_argument("--no-markdown", action="store_true", help="do not write the markdown table")
    parser.add_argument("--verbose", type=int, default=0, help="verbose of CoHiClust and CC")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 20:
        parser.error("--limit must be at least 20")
    if args.deepect_seeds is None:
        args.deepect_seeds = args.seeds[:1]
    return args


def main(argv=None):
    args = parse_args(argv)
    X, y, scale = load_dataset(args.dataset, args.limit, args.data)
    machine = machine_description(None if args.device == "auto" else args.device)
    suffix = f"-limit{args.limit}" if args.limit is not None else ""
    results_path = args.results_dir / f"quality-{args.dataset}{suffix}.json"
    markdown = None if args.no_markdown else args.markdown or (BENCHMARKS_MD if args.limit is None else None)
    command = command_line("quality.py", argv)
    print(f"{args.dataset}: {len(y)} samples of shape {X.shape[1:]}; {machine_summary(machine)}", flush=True)

    have_clustpy = True
    if "DeepECT" in args.methods:
        try:
            import clustpy.deep  # noqa: F401
        except ImportError as exc:
            have_clustpy = False
            print(f"note: DeepECT skipped: ClustPy does not import ({exc}); `pip install clustpy` to include it.")

    previous = read_json(results_path, default={}).get("rows", [])
    new_rows = []

    def record(method, seed, outcome):
        row = score(args.dataset, method, seed, outcome)
        new_rows.append(row)
        print_row(row)
        write_json(
            results_path,
            {"dataset": args.dataset, "machine": machine, "command": command, "rows": merge_rows(previous, new_rows)},
        )

    for seed in args.seeds:
        for method in args.methods:
            if method == "CoHiClust":
                record(method, seed, run_cohiclust(X, y, seed, args, pruned=True))
            elif method == "CoHiClust-unpruned":
                record(method, seed, run_cohiclust(X, y, seed, args, pruned=False))
            elif method in ("CC", "ConCURL", "SeCu"):
                record(method, seed, run_cc(X, y, seed, args, method))
            elif method == "KMeans":
                record(method, seed, run_kmeans(X, y, seed, args))
            elif method == "Agglomerative-Ward":
                record(method, seed, run_ward(X, y, seed, args))
            elif method == "DeepECT" and have_clustpy and seed in args.deepect_seeds:
                cut, whole = run_deepect(X, y, seed, args, scale)
                record("DeepECT", seed, cut)
                record("DeepECT-unpruned", seed, whole)

    rows = merge_rows(previous, new_rows)
    print_table(rows)
    print(f"rows written to {results_path}")
    if markdown is not None and rows:
        replace_section(
            f"quality-{args.dataset}", markdown_section(args.dataset, rows, machine, args.limit, command), markdown
        )
        print(f"table written to {markdown}")
    return rows


if __name__ == "__main__":
    main()
