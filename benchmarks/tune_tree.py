"""Tree-phase experiments on Fashion-MNIST from one shared warm-up.

Usage::

    python benchmarks/tune_tree.py warmup --out /tmp/warm.pkl --threads 2
    python benchmarks/tune_tree.py tree --start /tmp/warm.pkl --name default
    python benchmarks/tune_tree.py tree --start /tmp/warm.pkl --name lr3e-4 --set lr=3e-4
    python benchmarks/tune_tree.py starts --start /tmp/warm.pkl --restarts 30

The warm-up (instance loss only) is the expensive and common part of a fit,
so it is run once: ``warmup`` fits ``CoHiClust(depth=4, max_epochs=E)`` on
all 70,000 images and stops when the warm-up ends (epoch ``E // 2``),
pickling the estimator.  ``tree`` loads it and continues it (as
``warm_start=True`` does) to ``max_epochs`` with the given estimator parameters
(``--set name=value``, values read as Python literals), which gives exactly
the fit an uninterrupted ``fit`` would give when nothing is changed.

After every epoch a callback scores a fixed 10,000-image subset of the
training images: the tree's leaves under the current pruning mask (ACC, NMI,
DP, LP) and k-means (10 clusters) on the L2-normalised representation (ACC,
NMI), which separates the quality of the representation from that of the
tree.  At the end the fitted estimator is scored on all 70,000 images.  A
JSON line per experiment is printed and appended to
``benchmarks/results/tuning-tree.jsonl``; BENCHMARKS.md quotes them.

``starts`` asks how much the k-means start depends on k-means' own luck:
on the warm-up's routing features of the rows the tree start uses, it runs
``--restarts`` single k-means starts (10 clusters, one random state each)
and scores each against the classes (ACC, NMI, LP of every image's nearest
centroid) beside its inertia, then the package's own choice
(:func:`~skcohiclust.tree_init.clustered_tree`'s best of
:data:`~skcohiclust.tree_init.KMEANS_N_INIT`).  Its JSON line goes to
``benchmarks/results/tuning-starts.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time

import numpy as np
import torch
from _common import append_json_line
from _tuning import parse_settings, representation_scores, tree_scores
from quality import load_dataset

from skcohiclust import CoHiClust
from skcohiclust import tree as tree_math
from skcohiclust.callbacks import Callback
from skcohiclust.metrics import cluster_accuracy, leaf_purity
from skcohiclust.objectives.cohiclust import tree_start_rows
from skcohiclust.tree_init import KMEANS_N_INIT

DEPTH = 4
N_EVAL = 10_000


class Probe(Callback):
    """Scores the network on a fixed subset after every epoch; stops at ``stop_at`` if given."""

    def __init__(self, X, y, stop_at=None):
        self.x = torch.from_numpy(X[:, None].astype(np.float32) / 255.0)
        self.y = y
        self.stop_at = stop_at

    def on_epoch_end(self, history, network):
        network.eval()
        with torch.no_grad():
            outs = [network(self.x[i : i + 1000], with_projection=False) for i in range(0, len(self.x), 1000)]
        network.train()
        h = torch.cat([o.representation for o in outs]).float().numpy()
        leaf = tree_math.leaf_probabilities(torch.cat([o.left_prob for o in outs]).float(), DEPTH)
        mask = tree_math.drop_empty_leaves(leaf, network.leaf_mask.cpu())
        labels, _, linkage = tree_math.tree_of_active_leaves(leaf[:, mask], mask.numpy(), DEPTH)
        entry = history[-1]
        entry.update(tree_scores(self.y, labels, linkage))
        entry.update(representation_scores(self.y, h, n_init=3))
        entry["used_leaves"] = int(mask.sum())
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in entry.items()}), flush=True)
        return self.stop_at is not None and len(history) >= self.stop_at


def kmeans_starts(model, X, y, restarts: int) -> dict:
    """Inertia and class agreement of single k-means starts on a warm-up's routing features.

    The features are the tree head's (:meth:`~skcohiclust.networks.TreeHead.features`
    of the representation, in float32; the trainer computes them in bfloat16
    when it trains in it) of the rows the tree start uses
    (:func:`~skcohiclust.objectives.cohiclust.tree_start_rows`); every image is then
    scored by its nearest centroid.  The best of
    :data:`~skcohiclust.tree_init.KMEANS_N_INIT` runs with the k-means seed
    of the fit the warm-up pickle would continue.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    x = model.module_.tree_head.features(torch.from_numpy(model.transform(X))).double().numpy()
    rows = tree_start_rows(len(x))

    def scored(kmeans):
        labels = kmeans.predict(x)
        return {
            "inertia": round(float(kmeans.inertia_), 1),
            "acc": round(cluster_accuracy(y, labels), 4),
            "nmi": round(normalized_mutual_info_score(y, labels), 4),
            "lp": round(leaf_purity(y, labels), 4),
        }

    singles = [scored(KMeans(10, n_init=1, random_state=r).fit(x[rows])) for r in range(restarts)]
    singles.sort(key=lambda row: row["inertia"])
    # the trainer's seed is drawn from random_state; CoHiClustObjective.initialise_tree gives k-means that seed + 3
    kmeans_seed = int(model._training_state.state["seed"]) + 3
    started = time.perf_counter()
    chosen = KMeans(10, n_init=KMEANS_N_INIT, random_state=kmeans_seed).fit(x[rows])
    return {
        "seed": model.random_state,
        "kmeans_seed": kmeans_seed,
        "restarts": singles,
        f"best_of_{KMEANS_N_INIT}": {**scored(chosen), "seconds": round(time.perf_counter() - started, 1)},
    }


def main(argv=None) -> dict | None:
    """Run the warm-up or one tree-phase experiment."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("stage", choices=("warmup", "tree", "starts"))
    parser.add_argument("--out", help="where the warm-up pickle goes")
    parser.add_argument("--start", help="the warm-up pickle to continue from")
    parser.add_argument("--name", default="default")
    parser.add_argument("--max-epochs", type=int, default=14)
    parser.add_argument("--set", action="append", default=[], help="estimator parameter, name=value")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="random_state of the warm-up")
    parser.add_argument("--restarts", type=int, default=30, help="single k-means starts (starts stage)")
    parser.add_argument("--save", help="pickle the fitted estimator here (tree stage)")
    parser.add_argument("--limit", type=int, default=None, help="a random subset of this size (for a quick check)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    X, y, _ = load_dataset("fashion-mnist", args.limit)
    eval_rows = np.sort(np.random.default_rng(1).choice(len(y), size=min(N_EVAL, len(y)), replace=False))
    if args.stage == "warmup":
        probe = Probe(X[eval_rows], y[eval_rows], stop_at=args.max_epochs // 2)
        model = CoHiClust(depth=DEPTH, max_epochs=args.max_epochs, random_state=args.seed, callbacks=[probe])
        model.fit(X)
        with open(args.out, "wb") as handle:
            pickle.dump(model, handle)
        return None

    with open(args.start, "rb") as handle:
        model = pickle.load(handle)
    if args.stage == "starts":
        row = kmeans_starts(model, X, y, args.restarts)
        append_json_line("tuning-starts.jsonl", row)
        return row
    changes = parse_settings(args.set)
    settings = {"n_clusters": 10, "max_epochs": args.max_epochs, "callbacks": [Probe(X[eval_rows], y[eval_rows])]}
    model.set_params(**{**settings, **changes})
    start = time.perf_counter()
    # warm_start's fit trains max_epochs more; this goes on only to max_epochs, as one fit would
    model._train_more(X, model._training_config(), args.max_epochs - len(model.history_), final=True)
    seconds = time.perf_counter() - start
    if args.save:
        model.set_params(callbacks=None)
        with open(args.save, "wb") as handle:
            pickle.dump(model, handle)
    row = {
        "name": args.name,
        "changes": changes,
        "tree_init": model.tree_init,
        "max_epochs": args.max_epochs,
        "tree_phase_seconds": round(seconds, 1),
        "threads": args.threads,
        **tree_scores(y, model.labels_, model.tree_),
        "epochs": [{k: v for k, v in e.items() if k != "seconds"} for e in model.history_],
    }
    append_json_line("tuning-tree.jsonl", row)
    return row


if __name__ == "__main__":
    main()
