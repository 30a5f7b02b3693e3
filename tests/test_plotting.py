"""plot_tree and plot_level_sizes render without a display; matplotlib stays optional."""

import io
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skcohiclust import CoHiClust, hierarchy, plot_level_sizes, plot_tree  # noqa: E402

from .conftest import FAST  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fitted(small_digits):
    images, _ = small_digits
    return CoHiClust(depth=3, **FAST).fit(images), images


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _png(fig):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=50)
    data = buffer.getvalue()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    return data


def _leaf_texts(fig):
    return [t.get_text() for t in fig.axes[0].texts]


def test_plot_tree_with_images(fitted):
    model, images = fitted
    fig = plot_tree(model, images, n_images=4)
    _png(fig)
    main = fig.axes[0]
    insets = main.child_axes
    assert len(insets) == model.n_clusters_  # one column of images per leaf
    strips = [inset.get_images()[0].get_array() for inset in insets]
    assert all(strip.shape == (4 * 9 - 1, 8) for strip in strips)  # four 8x8 digits, one pixel apart
    sizes = np.bincount(model.predict(images), minlength=model.n_clusters_)
    expected = [f"c{c}\nn={sizes[c]}" for c in range(model.n_clusters_)]
    assert _leaf_texts(fig) == expected  # leaves drawn left to right in label order
    assert len(main.collections[0].get_segments()) == model.n_clusters_ - 1


def test_typical_images_are_the_most_probable_members(fitted):
    model, images = fitted
    fig = plot_tree(model, images, n_images=2)
    proba = model.predict_proba(images)
    labels = proba.argmax(axis=1)
    cluster = int(np.argmax(np.bincount(labels)))  # the biggest leaf has two members for sure
    members = np.flatnonzero(labels == cluster)
    best = members[np.argsort(-proba[members, cluster], kind="stable")[:2]]
    strip = fig.axes[0].child_axes[cluster].get_images()[0].get_array()
    np.testing.assert_allclose(strip[:8], images[best[0]])
    np.testing.assert_allclose(strip[9:], images[best[1]])


def test_plot_tree_without_images(fitted):
    model, _ = fitted
    fig = plot_tree(model, leaf_names=[f"leaf {c}" for c in range(model.n_clusters_)])
    _png(fig)
    assert len(fig.axes) == 1 and not fig.axes[0].child_axes
    assert _leaf_texts(fig) == [f"leaf {c}\nn={n}" for c, n in enumerate(model.leaf_sizes_)]


def test_plot_tree_on_given_axes_and_separate_images(fitted):
    model, images = fitted
    fig, ax = plt.subplots(figsize=(6, 5))
    rgb = np.repeat(images[:, :, :, None], 3, axis=3) / 16.0  # (n, H, W, 3) colour pictures
    assert plot_tree(model, images, images=rgb, n_images=3, ax=ax) is fig
    _png(fig)
    assert ax.child_axes[0].get_images()[0].get_array().shape == (3 * 9 - 1, 8, 3)


def test_plot_tree_bad_arguments(fitted):
    model, images = fitted
    with pytest.raises(ValueError, match="n_images must be an int"):
        plot_tree(model, images, n_images=-1)
    with pytest.raises(ValueError, match="leaf_names must hold"):
        plot_tree(model, leaf_names=["a"])
    with pytest.raises(ValueError, match="pass X as well"):
        plot_tree(model, images=images)
    with pytest.raises(ValueError, match="one image per sample"):
        plot_tree(model, images, images=images[:5])


def test_plot_tree_of_a_vector_model_and_a_single_leaf(fitted):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, (40, 4)), rng.normal(6, 1, (40, 4))]).astype(np.float32)
    model = CoHiClust(depth=2, **FAST).fit(X)
    fig = plot_tree(model, X)  # vectors: sizes only, no images
    _png(fig)
    assert len(fig.axes) == 1 and not fig.axes[0].child_axes
    model.prune(1)
    _png(plot_tree(model, X))
    _png(plot_level_sizes(model))


def test_plot_level_sizes(fitted):
    model, images = fitted
    fig = plot_level_sizes(model)
    _png(fig)
    bars = fig.axes[0].patches
    per_level = [len(hierarchy.level_nodes(model.leaves_, model.depth, level)) for level in range(model.depth + 1)]
    assert len(bars) == sum(per_level)
    # each level's bars tile the training set, and each bar spans its children exactly
    start = 0
    for level, m in enumerate(per_level):
        widths = [bar.get_width() for bar in bars[start : start + m]]
        assert widths == np.bincount(model.labels_at_level(level)).tolist()
        start += m
    fig = plot_level_sizes(model, images[:100])
    assert sum(bar.get_width() for bar in fig.axes[0].patches[:1]) == 100


def test_clear_error_without_matplotlib(fitted, monkeypatch):
    model, images = fitted
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    for plot in (plot_tree, plot_level_sizes):
        with pytest.raises(ImportError, match=r"pip install matplotlib.*skcohiclust\[plot\]"):
            plot(model)


def test_package_imports_without_matplotlib():
    code = (
        "import sys; sys.modules['matplotlib'] = None; "
        "import skcohiclust; from skcohiclust import plot_tree; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
