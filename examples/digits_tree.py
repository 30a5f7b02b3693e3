"""The digits tree, with typical images at its leaves
==================================================

The tree CoHiClust learns on handwritten digits, with typical images at its leaves.
Fits a depth-4 tree with at most 10 leaves on scikit-learn's 1,797 real
8x8 digits, prints how well the leaves and the tree match the digit classes
(accuracy, NMI, leaf and dendrogram purity) and the cluster sizes at every
level, and draws the tree with the five most typical digits of every leaf
(``skcohiclust.plot_tree``).  Each leaf is named after its majority digit
and that digit's share of the leaf.  The picture goes to
``docs/digits_tree.png``.

Takes about two minutes on two CPU cores with the estimator's default
training length (``--max-epochs`` shortens it, at a cost in quality).  Run from the repository root::

    python examples/digits_tree.py [--max-epochs 100] [--output docs/digits_tree.png]
"""

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # draw to a file, no display needed

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

from skcohiclust import CoHiClust, plot_tree
from skcohiclust.datasets import load_digits_images
from skcohiclust.metrics import cluster_accuracy, dendrogram_purity, leaf_purity


def majority_names(y, labels, n_clusters, class_names):
    """Name every cluster after its most frequent class and that class's share."""
    counts = np.zeros((n_clusters, len(class_names)), dtype=int)
    np.add.at(counts, (labels, y), 1)
    top = counts.argmax(axis=1)
    share = counts.max(axis=1) / np.maximum(counts.sum(axis=1), 1)
    return [f"c{k}: {class_names[t]} {s:.0%}" for k, (t, s) in enumerate(zip(top, share, strict=True))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # no docstring in the gallery
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--output", default=None, help="where to save the picture (default: docs/digits_tree.png)")
    args = parser.parse_args(argv)
    if args.output is None:  # this repository's docs/ (the gallery always passes --output: no __file__ there)
        args.output = str(Path(__file__).resolve().parents[1] / "docs" / "digits_tree.png")

    X, y = load_digits_images()
    model = CoHiClust(depth=4, n_clusters=10, max_epochs=args.max_epochs, random_state=0).fit(X)

    labels = model.labels_
    print(f"{model.n_clusters_} leaves after {args.max_epochs} epochs")
    print(
        f"accuracy {cluster_accuracy(y, labels):.3f}  NMI {normalized_mutual_info_score(y, labels):.3f}  "
        f"leaf purity {leaf_purity(y, labels):.3f}  "
        f"dendrogram purity {dendrogram_purity(y, labels, model.tree_):.3f}"
    )
    for level in range(model.depth + 1):
        print(f"level {level}: cluster sizes {np.bincount(model.labels_at_level(level)).tolist()}")
    print("Newick:", model.to_newick())

    names = majority_names(y, labels, model.n_clusters_, [str(d) for d in range(10)])
    fig = plot_tree(model, X, n_images=5, leaf_names=names)
    fig.suptitle(
        f"CoHiClust on scikit-learn digits: depth {model.depth}, {model.n_clusters_} leaves, "
        "5 most typical digits per leaf"
    )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=72, metadata={"Software": None})
    print("saved", args.output)


if __name__ == "__main__":
    main()
