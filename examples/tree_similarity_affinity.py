"""The tree similarity as a precomputed affinity
=============================================

The tree similarity of a fitted CoHiClust, used as a precomputed affinity.
``model.similarity(X)`` gives, for every pair of samples, CoHiClust's own
similarity: the Bhattacharyya coefficient of their distributions over the
nodes of each level, averaged over the levels (1 for a sample with itself,
0 for samples sent down different subtrees with certainty).  Any method
that takes a precomputed affinity or distance can use it.  This script fits
a tree on scikit-learn's digits, then clusters with the similarity:
``SpectralClustering(affinity="precomputed")`` and average-linkage
``AgglomerativeClustering`` on ``1 - similarity``, and compares them with
the tree's own leaves (accuracy, NMI against the digit classes).  It also
shows the lowest-common-ancestor similarity (``kind="lca"``).

Takes about a minute on two CPU cores.  Run from the repository root::

    python examples/tree_similarity_affinity.py [--max-epochs 15] [--n-samples 1000]
"""

import argparse

import numpy as np
from sklearn.cluster import AgglomerativeClustering, SpectralClustering
from sklearn.metrics import normalized_mutual_info_score

from skcohiclust import CoHiClust
from skcohiclust.datasets import load_digits_images
from skcohiclust.metrics import cluster_accuracy


def report(name, y, labels):
    print(f"{name:<44} accuracy {cluster_accuracy(y, labels):.3f}  NMI {normalized_mutual_info_score(y, labels):.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # no docstring in the gallery
    parser.add_argument("--max-epochs", type=int, default=15)
    parser.add_argument("--n-samples", type=int, default=1000)
    args = parser.parse_args(argv)

    X, y = load_digits_images()
    X, y = X[: args.n_samples], y[: args.n_samples]
    model = CoHiClust(depth=4, max_epochs=args.max_epochs, random_state=0).fit(X)

    similarity = model.similarity(X)  # (n, n), symmetric, in [0, 1], ones on the diagonal
    print(
        f"similarity: shape {similarity.shape}, range [{similarity.min():.3f}, {similarity.max():.3f}], "
        f"mean {similarity.mean():.3f}"
    )
    same_class = y[:, None] == y[None, :]
    print(
        f"mean similarity of pairs of one digit {similarity[same_class].mean():.3f}, "
        f"of different digits {similarity[~same_class].mean():.3f}"
    )

    report(f"CoHiClust leaves ({model.n_clusters_})", y, model.labels_)
    spectral = SpectralClustering(n_clusters=10, affinity="precomputed", random_state=0).fit_predict(similarity)
    report("spectral clustering on the similarity (10)", y, spectral)
    average = AgglomerativeClustering(n_clusters=10, metric="precomputed", linkage="average")
    report("average linkage on 1 - similarity (10)", y, average.fit_predict(1.0 - similarity))

    lca = model.similarity(X[:5], X[:8], kind="lca")
    print("LCA similarity (level of the lowest common ancestor / depth) of the first 5 vs the first 8 digits:")
    print(np.array2string(lca, precision=2))


if __name__ == "__main__":
    main()
