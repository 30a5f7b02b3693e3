"""CoHiClust on colour images: the natural views, the CNN and ResNet backbones, channels-last input, real CIFAR-10."""

from pathlib import Path

import numpy as np
import pytest
import torch

from skcohiclust import CoHiClust
from skcohiclust.augment import IMAGE_PRESETS

SHARED_CIFAR10 = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-train-jpg.tar.gz"


@pytest.fixture(scope="module")
def colour_blobs():
    """96 uint8 32x32 RGB images of three kinds (a red, a green or a blue square on grey noise) and their kind."""
    rng = np.random.default_rng(0)
    n = 96
    y = np.arange(n) % 3
    X = rng.integers(90, 140, size=(n, 3, 32, 32), dtype=np.uint8)
    corner = rng.integers(2, 18, size=(n, 2))
    for i in range(n):  # test data, built once
        r, c = corner[i]
        X[i, :, r : r + 12, c : c + 12] = 30
        X[i, y[i], r : r + 12, c : c + 12] = 230
    return X, y


@pytest.mark.parametrize("backbone", ["cnn", "resnet18"])
def test_colour_images_fit_with_natural_views(colour_blobs, backbone):
    X, y = colour_blobs
    model = CoHiClust(depth=2, n_clusters=3, backbone=backbone, max_epochs=2, batch_size=32, random_state=0)
    model.fit(X)
    assert model.augmentation_ == IMAGE_PRESETS["natural"]  # "auto" on 3-channel images
    assert model.backbone_ == backbone and model.input_shape_ == (3, 32, 32)
    proba = model.predict_proba(X[:10])
    assert proba.shape == (10, model.n_clusters_)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    assert set(np.unique(model.labels_)) == set(range(model.n_clusters_))
    assert model.transform(X[:4]).shape[0] == 4


def test_grey_images_get_the_shapes_views(colour_blobs):
    X, _ = colour_blobs
    model = CoHiClust(depth=1, max_epochs=1, batch_size=32, random_state=0).fit(X[:, 0])
    assert model.augmentation_ == IMAGE_PRESETS["shapes"]


def test_colour_blobs_are_separated(colour_blobs):
    # the three colours are what the natural views keep (grey views apart): the tree must find them
    from sklearn.metrics import adjusted_rand_score

    X, y = colour_blobs
    model = CoHiClust(depth=2, n_clusters=3, max_epochs=30, batch_size=48, random_state=0).fit(X)
    assert adjusted_rand_score(y, model.labels_) > 0.8


def test_channels_last_images_are_refused_with_the_fix(colour_blobs):
    X, _ = colour_blobs
    with pytest.raises(ValueError, match=r"channels-last.*transpose\(0, 3, 1, 2\)"):
        CoHiClust(depth=1, max_epochs=1).fit(X.transpose(0, 2, 3, 1))
    # and the hatch for real 32-channel 32x3 maps: image_shape on flat rows
    flat = X.transpose(0, 2, 3, 1).reshape(len(X), -1)
    model = CoHiClust(depth=1, max_epochs=1, batch_size=32, image_shape=(32, 32, 3), random_state=0).fit(flat)
    assert model.input_shape_ == (32 * 32 * 3,)


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_CIFAR10.is_file(), reason="the shared CIFAR-10 archive is not beside the checkout")
def test_real_cifar10_subset_beats_kmeans_on_pixels():
    from sklearn.cluster import KMeans
    from sklearn.metrics import normalized_mutual_info_score

    from skcohiclust.datasets import load_cifar10

    X, y = load_cifar10(SHARED_CIFAR10)
    keep = np.sort(np.random.default_rng(0).choice(len(y), size=3000, replace=False))
    X, y = X[keep], y[keep]
    model = CoHiClust(depth=4, n_clusters=10, max_epochs=8, random_state=0).fit(X)
    pixels = KMeans(n_clusters=10, n_init=3, random_state=0).fit_predict(X.reshape(len(X), -1).astype(np.float32))
    assert normalized_mutual_info_score(y, model.labels_) > normalized_mutual_info_score(y, pixels)


@pytest.mark.parametrize(
    "side, expected", [((8, 8), (16, 16)), ((20, 20), (20, 20)), ((28, 28), (24, 24)), ((32, 16), (24, 16))]
)
def test_default_cnn_brings_each_side_into_16_to_24(side, expected):
    from skcohiclust.networks import default_image_size

    assert default_image_size(*side) == expected


def test_cnn_works_at_24_by_default_and_at_the_input_size_asked(colour_blobs):
    X, _ = colour_blobs
    default = CoHiClust(depth=1, max_epochs=1, batch_size=32, random_state=0).fit(X)
    assert default.module_.input_size == (24, 24)
    asked = CoHiClust(
        depth=1, max_epochs=1, batch_size=32, random_state=0, backbone_params={"input_size": 32, "width": 4}
    ).fit(X)
    assert asked.module_.input_size == (32, 32)
    assert asked.module_.backbone.features[0][0].out_channels == 4
    proba = asked.predict_proba(X[:5])
    assert proba.shape == (5, asked.n_clusters_)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"input_size": 3}, r"input_size'\] must be at least 4, got 3"),
        ({"input_size": 16.0}, r"input_size'\] must be an int"),
        ({"stages": 4, "input_size": 7}, r"input_size'\] must be at least 8, got 7"),
        ({"stages": 6}, r"stages'\] must be in \[2, 5\], got 6"),
    ],
)
def test_bad_input_size_is_refused(colour_blobs, params, match):
    X, _ = colour_blobs
    with pytest.raises(ValueError, match=match):
        CoHiClust(depth=1, max_epochs=1, batch_size=32, backbone_params=params).fit(X[:40])


@pytest.mark.parametrize("stages, dim", [(2, 8), (3, 16), (4, 32)])
def test_cnn_stages_double_the_channels_and_halve_the_side(colour_blobs, stages, dim):
    X, _ = colour_blobs
    model = CoHiClust(
        depth=1, max_epochs=1, batch_size=32, random_state=0, backbone_params={"width": 4, "stages": stages}
    ).fit(X)
    assert model.transform(X[:3]).shape == (3, dim)
    pools = [m for m in model.module_.backbone.features if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == stages - 1


def test_input_size_is_for_the_cnn_only(colour_blobs):
    X, _ = colour_blobs
    with pytest.raises(ValueError, match=r"\['input_size'\] that backbone='mlp' does not take"):
        CoHiClust(depth=1, max_epochs=1, backbone="mlp", backbone_params={"input_size": 16}).fit(X[:40])
