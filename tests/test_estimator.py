"""The CoHiClust estimator: outputs, tree, pruning, persistence, scikit-learn composition, errors."""

import io
import pickle

import joblib
import numpy as np
import pytest
import torch
from scipy.cluster.hierarchy import dendrogram, fcluster, is_valid_linkage
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skcohiclust import CoHiClust
from skcohiclust.augment import ImageAugmentation

from .conftest import FAST


@pytest.fixture(scope="module")
def fitted(small_digits):
    images, _ = small_digits
    return CoHiClust(depth=3, n_clusters=6, **FAST).fit(images)


def test_fit_returns_self_with_learned_attributes(small_digits):
    images, _ = small_digits
    model = CoHiClust(depth=2, **FAST)
    assert model.fit(images) is model
    for name in ("labels_", "tree_", "n_clusters_", "module_", "history_", "n_features_in_", "leaves_", "node_mass_"):
        assert hasattr(model, name), name
    assert model.backbone_ == "cnn"
    assert model.device_.type == "cpu"
    assert len(model.history_) == FAST["max_epochs"]
    assert set(model.history_[0]) >= {
        "epoch",
        "loss",
        "instance_loss",
        "tree_loss",
        "regularizer",
        "n_leaves",
        "seconds",
    }
    assert model.n_features_in_ == 8


def test_labels_are_contiguous_and_match_predict(fitted, small_digits):
    images, _ = small_digits
    labels = fitted.labels_
    assert labels.shape == (len(images),)
    assert np.array_equal(np.unique(labels), np.arange(fitted.n_clusters_))
    assert fitted.n_clusters_ <= 6
    np.testing.assert_array_equal(fitted.predict(images), labels)


def test_predict_proba_rows_sum_to_one(fitted, small_digits):
    images, _ = small_digits
    proba = fitted.predict_proba(images[:50])
    assert proba.shape == (50, fitted.n_clusters_)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(proba.argmax(1), fitted.predict(images[:50]))


def test_transform_gives_the_representation(fitted, small_digits):
    images, _ = small_digits
    h = fitted.transform(images[:10])
    assert h.shape == (10, fitted.module_.backbone.output_dim)
    assert np.isfinite(h).all()


def test_predictions_do_not_depend_on_batching(fitted, small_digits):
    images, _ = small_digits
    whole = fitted.predict_proba(images)
    parts = np.concatenate([fitted.predict_proba(images[i : i + 7]) for i in range(0, len(images), 7)])
    np.testing.assert_allclose(whole, parts, atol=1e-6)


def test_score_is_mean_assignment_confidence(fitted, small_digits):
    images, _ = small_digits
    score = fitted.score(images)
    assert 1.0 / fitted.n_clusters_ <= score <= 1.0
    assert score == pytest.approx(fitted.predict_proba(images).max(1).mean())


def test_tree_is_a_valid_linkage_consistent_with_predict(fitted, small_digits):
    images, _ = small_digits
    Z = fitted.tree_
    k = fitted.n_clusters_
    assert Z.shape == (k - 1, 4) and Z.dtype == np.float64
    assert is_valid_linkage(Z)
    drawn = dendrogram(Z, no_plot=True)
    assert sorted(int(x) for x in drawn["ivl"]) == list(range(k))
    # cutting the tree into k clusters gives back each leaf on its own
    flat = fcluster(Z, k, criterion="maxclust")
    assert len(np.unique(flat)) == k
    # every predicted label is a leaf of the linkage
    assert set(np.unique(fitted.predict(images))) <= set(range(k))


@pytest.mark.parametrize("keep", [1, 2, 4])
def test_prune_keeps_exactly_k_leaves(small_digits, keep):
    images, _ = small_digits
    # six epochs: after one warm-up epoch (FAST's three) the tree may keep fewer than 4 used leaves
    model = CoHiClust(depth=3, **{**FAST, "max_epochs": 6}).fit(images)
    before = model.n_clusters_
    assert before >= 4
    assert model.prune(keep) is model
    assert model.n_clusters_ == keep <= before
    assert model.tree_.shape == (keep - 1, 4)
    if keep > 1:
        assert is_valid_linkage(model.tree_)
    assert np.array_equal(np.unique(model.labels_), np.arange(keep))
    predicted = model.predict(images)
    np.testing.assert_array_equal(predicted, model.labels_)
    assert len(np.unique(predicted)) == keep
    assert model.predict_proba(images).shape == (len(images), keep)
    assert int(model.module_.leaf_mask.sum()) == keep


def test_prune_merges_the_least_used_leaf(small_digits):
    images, _ = small_digits
    model = CoHiClust(depth=3, **FAST).fit(images)
    sizes = np.bincount(model.labels_, minlength=model.n_clusters_)
    mass = model.predict_proba(images).mean(0)
    least = int(np.argmin(mass))
    leaves_before = model.leaves_.copy()
    model.prune(model.n_clusters_ - 1)
    assert leaves_before[least] not in model.leaves_
    # the other samples keep their leaf
    moved = np.isin(leaves_before[np.arange(len(sizes))], model.leaves_)
    assert moved.sum() == len(sizes) - 1


def test_prune_rejects_bad_k(fitted):
    model = pickle.loads(pickle.dumps(fitted))
    with pytest.raises(ValueError, match="n_clusters"):
        model.prune(model.n_clusters_ + 1)
    with pytest.raises(ValueError, match="n_clusters"):
        model.prune(0)
    with pytest.raises(ValueError, match="n_clusters"):
        model.prune(2.5)


def test_prune_before_fit_is_an_error():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        CoHiClust().prune(2)


def test_n_clusters_with_the_kmeans_start_trains_that_many_leaves_from_the_tree_phase_on(small_digits):
    images, _ = small_digits
    # four warm-up epochs: after three, one of the five k-means leaves of these 300 digits can end empty
    model = CoHiClust(depth=3, n_clusters=5, max_epochs=8, batch_size=64, random_state=0).fit(images)
    leaves = [entry["n_leaves"] for entry in model.history_]
    assert leaves == [8, 8, 8, 8, 5, 5, 5, 5]  # the warm-up, then the k-means start masks 3 leaves
    assert model.n_clusters_ == 5


def test_n_clusters_with_the_bisecting_start_prunes_during_training(small_digits):
    images, _ = small_digits
    model = CoHiClust(depth=3, n_clusters=5, max_epochs=10, batch_size=64, random_state=0, tree_init="bisect").fit(
        images
    )
    leaves = [entry["n_leaves"] for entry in model.history_]
    assert leaves[:6] == [8] * 6  # five warm-up epochs and the first tree epoch keep every leaf
    assert leaves == sorted(leaves, reverse=True) and leaves[-1] == 5
    assert len(set(leaves)) > 2  # removed over more than one epoch
    assert model.n_clusters_ <= 5


def test_same_random_state_gives_identical_fits(small_digits):
    images, _ = small_digits
    a = CoHiClust(depth=2, **FAST).fit(images)
    b = CoHiClust(depth=2, **FAST).fit(images)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    for (name, p), q in zip(a.module_.state_dict().items(), b.module_.state_dict().values(), strict=True):
        assert torch.equal(p, q), name


def test_pickle_and_joblib_round_trip(fitted, small_digits, tmp_path):
    images, _ = small_digits
    expected = fitted.predict_proba(images)
    restored = pickle.loads(pickle.dumps(fitted))
    np.testing.assert_array_equal(restored.predict_proba(images), expected)
    np.testing.assert_array_equal(restored.labels_, fitted.labels_)
    joblib.dump(fitted, tmp_path / "model.joblib")
    loaded = joblib.load(tmp_path / "model.joblib")
    np.testing.assert_array_equal(loaded.predict_proba(images), expected)
    np.testing.assert_array_equal(loaded.tree_, fitted.tree_)
    # pruning still works after loading
    loaded.prune(2)
    assert loaded.n_clusters_ == 2


def test_model_trained_on_cuda_loads_on_a_machine_without_one(fitted, small_digits, monkeypatch):
    images, _ = small_digits
    expected = fitted.predict(images)
    state = fitted.__getstate__()
    # what a GPU-fitted model's pickle holds: device_ is CUDA and the saved tensors were CUDA tensors
    # (torch.save records their device; loading maps them to the CPU when CUDA is unavailable)
    state["device_"] = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    seen = {}
    real_load = torch.load

    def recording_load(f, map_location=None, **kwargs):
        seen["map_location"] = map_location
        return real_load(f, map_location=map_location, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    restored = CoHiClust.__new__(CoHiClust)
    restored.__setstate__(state)
    assert seen["map_location"] == torch.device("cpu")
    assert restored.device_ == torch.device("cpu")
    assert all(t.device.type == "cpu" for t in restored.module_.state_dict().values())
    np.testing.assert_array_equal(restored.predict(images), expected)


def test_clone_and_grid_search_over_depth(small_digits):
    images, target = small_digits
    model = CoHiClust(max_epochs=2, batch_size=64, random_state=0)
    assert clone(model).get_params() == model.get_params()
    search = GridSearchCV(model, {"depth": [1, 2]}, scoring="adjusted_rand_score", cv=2)
    search.fit(images, target)
    assert search.best_params_["depth"] in (1, 2)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()


def test_pipeline_on_tabular_vectors():
    X, y = make_blobs(n_samples=240, centers=4, n_features=6, random_state=0, cluster_std=0.6)
    X = X * 50 + 100  # unscaled features: the scaler matters
    pipe = make_pipeline(StandardScaler(), CoHiClust(depth=2, max_epochs=30, batch_size=64, random_state=0))
    labels = pipe.fit(X).predict(X)
    from sklearn.metrics import adjusted_rand_score

    assert pipe[-1].backbone_ == "mlp"
    assert adjusted_rand_score(y, labels) > 0.6


@pytest.mark.parametrize(
    "shape",
    [(40, 8, 8), (40, 1, 8, 8), (40, 3, 8, 8), (40, 64)],
)
def test_input_layouts(shape):
    rng = np.random.default_rng(0)
    X = rng.random(shape).astype(np.float32)
    model = CoHiClust(depth=2, **FAST).fit(X)
    assert model.predict(X).shape == (40,)
    assert model.input_shape_ == shape[1:]


def test_uint8_images_and_image_shape_for_flat_rows(small_digits):
    images, _ = small_digits
    as_uint8 = (images * 255 / 16).astype(np.uint8)
    model = CoHiClust(depth=2, **FAST).fit(as_uint8)
    assert model.predict(as_uint8).shape == (len(images),)
    flat = as_uint8.reshape(len(images), 64)
    flat_model = CoHiClust(depth=2, image_shape=(1, 8, 8), **FAST).fit(flat)
    assert flat_model.backbone_ == "cnn"
    np.testing.assert_array_equal(flat_model.labels_, model.labels_)


def test_resnet_and_custom_backbones():
    rng = np.random.default_rng(0)
    X = rng.random((16, 3, 8, 8)).astype(np.float32)
    model = CoHiClust(depth=1, backbone="resnet18", max_epochs=1, batch_size=8, random_state=0).fit(X)
    assert model.transform(X).shape == (16, 512)
    custom = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 12), torch.nn.ReLU())
    model = CoHiClust(depth=1, backbone=custom, max_epochs=1, batch_size=8, random_state=0).fit(X)
    assert model.backbone_ == "custom"
    assert model.transform(X).shape == (16, 12)
    # the user's module is copied, never trained in place
    assert model.module_.backbone is not custom


def test_augmentation_options(small_digits):
    images, _ = small_digits
    for aug in ("none", "natural", {"rotation": 5.0}, ImageAugmentation(rotation=3.0)):
        CoHiClust(depth=1, augmentation=aug, max_epochs=1, batch_size=64, random_state=0).fit(images[:64])
    with pytest.raises(ValueError, match="augmentation"):
        CoHiClust(augmentation="bogus", max_epochs=1).fit(images[:64])
    with pytest.raises(ValueError, match="unknown keys"):
        CoHiClust(augmentation={"rotate": 5}, max_epochs=1).fit(images[:64])


@pytest.mark.parametrize(
    "params,match",
    [
        ({"depth": 0}, "depth"),
        ({"depth": 2.5}, "depth"),
        ({"n_clusters": 9, "depth": 3}, "n_clusters"),
        ({"n_clusters": 0}, "n_clusters"),
        ({"max_epochs": 0}, "max_epochs"),
        ({"warmup_epochs": 5, "max_epochs": 5}, "warmup_epochs"),
        ({"batch_size": 1}, "batch_size"),
        ({"lr": -1.0}, "lr"),
        ({"lr_schedule": "step"}, "lr_schedule must be 'constant' or 'cosine'"),
        ({"leaf_balance": -1.0}, "leaf_balance must be a non-negative float"),
        ({"leaf_balance": "yes"}, "leaf_balance"),
        ({"temperature": 0}, "temperature"),
        ({"backbone": "vgg"}, "backbone"),
        ({"device": "tpu"}, "device"),
        ({"image_shape": (1, 7, 7)}, "image_shape"),
        ({"backbone": "cnn", "image_shape": None}, "needs images"),
    ],
)
def test_bad_parameters_give_clear_errors(params, match):
    X = np.random.default_rng(0).random((20, 64)).astype(np.float32)
    with pytest.raises(ValueError, match=match):
        CoHiClust(**{"max_epochs": 1, **params}).fit(X)


def test_cuda_requested_without_cuda_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    X = np.random.default_rng(0).random((20, 4))
    with pytest.raises(ValueError, match="CUDA is not available"):
        CoHiClust(device="cuda", max_epochs=1).fit(X)


def test_bad_input_gives_clear_errors(fitted, small_digits):
    images, _ = small_digits
    bad = images[:20].copy()
    bad[3, 2, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        CoHiClust(max_epochs=1).fit(bad)
    with pytest.raises(ValueError, match="1 sample"):
        CoHiClust(max_epochs=1).fit(images[:1])
    with pytest.raises(ValueError, match="dimensions"):
        CoHiClust(max_epochs=1).fit(np.zeros((4, 2, 2, 2, 2)))
    with pytest.raises(ValueError):
        CoHiClust(max_epochs=1).fit(np.zeros(10))
    with pytest.raises(ValueError, match="features"):
        fitted.predict(np.zeros((3, 9, 8)))
    with pytest.raises(ValueError, match="shape"):
        fitted.predict(np.zeros((3, 8, 9)))
    with pytest.raises(ValueError, match="NaN|infinity"):
        fitted.predict(np.full((3, 8, 8), np.inf))


def test_fewer_samples_than_a_batch(small_digits):
    images, _ = small_digits
    model = CoHiClust(depth=2, max_epochs=2, batch_size=256, random_state=0).fit(images[:5])
    assert model.labels_.shape == (5,)


def test_predict_accepts_one_sample(fitted, small_digits):
    images, _ = small_digits
    assert fitted.predict(images[:1]).shape == (1,)


def test_io_of_module_bytes_is_self_contained(fitted):
    state = fitted.__getstate__()
    assert isinstance(state["module_"], bytes)
    module = torch.load(io.BytesIO(state["module_"]), weights_only=False)
    assert torch.equal(module.leaf_mask, fitted.module_.leaf_mask)


def test_outputs_of_a_sample_do_not_depend_on_its_companions():
    # multi-threaded CPU kernels split their sums by the batch shape: inference pads every batch
    X, _ = make_blobs(n_samples=150, centers=3, n_features=5, random_state=0)
    model = CoHiClust(depth=2, **FAST).fit(X)
    whole = model.transform(X)
    for rows in (slice(0, 1), slice(3, 10), slice(60, 150)):
        np.testing.assert_array_equal(model.transform(X[rows]), whole[rows])
        np.testing.assert_array_equal(model.predict_proba(X[rows]), model.predict_proba(X)[rows])
