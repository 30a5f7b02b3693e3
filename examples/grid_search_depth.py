"""Choosing the depth with GridSearchCV
====================================

Choosing the depth of the tree with GridSearchCV.
CoHiClust is an ordinary scikit-learn estimator, so ``GridSearchCV`` can pick
its ``depth`` (and any other parameter): each candidate is fitted on one
fold without the labels and scored on the other fold by how well
``predict`` agrees with the digit classes there (``adjusted_rand_score``).
The search refits the best depth on all the data at the end.

To finish in about a minute on two CPU cores this uses 600 of scikit-learn's
digits and few epochs (``--max-epochs``), so the scores only illustrate the
mechanics; with more epochs deeper trees pay off.  Run from the repository
root::

    python examples/grid_search_depth.py [--n-samples 600] [--max-epochs 4]
"""

import argparse

from sklearn.model_selection import GridSearchCV, KFold

from skcohiclust import CoHiClust
from skcohiclust.datasets import load_digits_images


def main(argv=None):
    parser = argparse.ArgumentParser(description=(__doc__ or "").partition("\n")[0])  # no docstring in the gallery
    parser.add_argument("--n-samples", type=int, default=600)
    parser.add_argument("--max-epochs", type=int, default=4)
    args = parser.parse_args(argv)

    X, y = load_digits_images()
    X, y = X[: args.n_samples], y[: args.n_samples]

    search = GridSearchCV(
        CoHiClust(max_epochs=args.max_epochs, batch_size=128, random_state=0),
        param_grid={"depth": [2, 3, 4]},
        scoring="adjusted_rand_score",
        cv=KFold(n_splits=2, shuffle=True, random_state=0),
    )
    search.fit(X, y)  # y is used by the scorer only, never by CoHiClust.fit

    for depth, mean, std in zip(
        search.cv_results_["param_depth"],
        search.cv_results_["mean_test_score"],
        search.cv_results_["std_test_score"],
        strict=True,
    ):
        print(f"depth {depth}: ARI on held-out folds {mean:.3f} +- {std:.3f}")
    best = search.best_estimator_
    print(f"best depth {search.best_params_['depth']}: {best.n_clusters_} leaves, sizes {best.leaf_sizes_.tolist()}")


if __name__ == "__main__":
    main()
