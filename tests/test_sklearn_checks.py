"""scikit-learn's own estimator checks, run on every estimator of the package with small settings."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skcohiclust import CoHiClust, ConCURL, ContrastiveClustering, SeCu


def _small_estimators():
    # a shallow tree / few clusters and short training: the checks fit dozens of times on 20-50 samples
    return [
        CoHiClust(depth=2, max_epochs=40, warmup_epochs=10, batch_size=64, random_state=0),
        ContrastiveClustering(max_epochs=40, batch_size=64, random_state=0),
        ConCURL(max_epochs=40, batch_size=64, random_state=0),
        SeCu(max_epochs=40, batch_size=64, random_state=0),
    ]


@parametrize_with_checks(_small_estimators())
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
