"""Quickstart: a tree on handwritten digits
========================================

Quickstart: a CoHiClust tree on scikit-learn's handwritten digits.
Fits ``CoHiClust(depth=4, n_clusters=10, random_state=0)`` with the
estimator's defaults on the 1,797 real 8x8 digits shipped with
scikit-learn, prints accuracy, NMI and ARI against the known digit classes
(and dendrogram and leaf purity of the learned tree), compares with k-means
on raw pixels, and saves the tree with typical digits at its leaves.

Run from the repository root::

    python examples/quickstart.py [--output quickstart_tree.png] [--max-epochs 100]
"""

import argparse
import time

import matplotlib

matplotlib.use("Agg")  # draw to a file, no display needed

from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from skcohiclust import CoHiClust, plot_tree
from skcohiclust.datasets import load_digits_images
from skcohiclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity


def main():
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # no docstring in the gallery
    parser.add_argument("--output", default="quickstart_tree.png", help="where to save the tree picture")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the default training length")
    args = parser.parse_args()

    X, y = load_digits_images()
    extra = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    model = CoHiClust(depth=4, n_clusters=10, random_state=0, **extra)
    started = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - started

    labels = model.labels_
    print(f"CoHiClust on digits: {model.n_clusters_} leaves, fit {seconds:.0f} s on {model.device_}")
    print(
        f"  ACC {cluster_accuracy(y, labels):.3f}  NMI {normalized_mutual_info_score(y, labels):.3f}  "
        f"ARI {adjusted_rand_score(y, labels):.3f}  "
        f"DP {dendrogram_purity(y, labels, model.tree_):.3f}  LP {leaf_purity(y, labels):.3f}"
    )
    kmeans = KMeans(n_clusters=10, n_init=10, random_state=0).fit_predict(X.reshape(len(X), -1))
    print(
        f"k-means on raw pixels, for reference: ACC {cluster_accuracy(y, kmeans):.3f}  "
        f"NMI {normalized_mutual_info_score(y, kmeans):.3f}  ARI {adjusted_rand_score(y, kmeans):.3f}"
    )
    print(
        f"  new data: predict -> {model.predict(X[:8]).tolist()}, "
        f"predict_proba rows sum to {model.predict_proba(X[:2]).sum(1).round(6).tolist()}"
    )

    figure = plot_tree(model, X)
    figure.savefig(args.output, dpi=90, bbox_inches="tight")
    print(f"tree with typical digits at its leaves saved to {args.output}")


if __name__ == "__main__":
    main()
