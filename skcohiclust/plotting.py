"""Pictures of a fitted tree: the dendrogram with typical images at its leaves, cluster sizes by level.

matplotlib is an optional dependency: it is imported only when a function
here is called, and a clear ``ImportError`` says how to install it
(``pip install matplotlib`` or ``pip install "skcohiclust[plot]"``).  The
functions draw on any backend, Agg included (no display needed).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike
from scipy.cluster.hierarchy import dendrogram
from sklearn.utils.validation import check_is_fitted

from . import hierarchy
from .tree import level_cut_height

if TYPE_CHECKING:  # matplotlib is optional: imported for the annotations only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .estimator import CoHiClust

__all__ = ["plot_tree", "plot_level_sizes"]

#: Height (inches) of a line of leaf text, per point of font size.
_LINE_INCHES_PER_POINT = 1.3 / 72
#: Height (inches) of the dendrogram part of a figure that plot_tree creates.
_DENDROGRAM_INCHES = 2.8
#: Widest figure (inches) plot_tree creates by itself.
_MAX_WIDTH_INCHES = 18.0


def _pyplot():
    """Import ``matplotlib.pyplot``, or say clearly how to get it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # matplotlib missing (or blocked)
        raise ImportError(
            "skcohiclust's plotting functions need matplotlib, which is not installed. "
            'Install it with `pip install matplotlib` (or `pip install "skcohiclust[plot]"`).'
        ) from exc
    return plt


def _image_array(data, image_shape):
    """``data`` as an array of images ``(n, H, W)`` or ``(n, H, W, 3|4)``, or None for vectors.

    4-D data in channel-first order ``(n, C, H, W)`` (as CoHiClust takes it)
    is moved to channel-last; flat rows are reshaped with ``image_shape``.
    """
    data = np.asarray(data)
    if data.ndim == 2:
        if image_shape is None:
            return None
        data = data.reshape(len(data), *image_shape)
    if data.ndim == 4 and data.shape[1] in (1, 3, 4) and data.shape[-1] not in (1, 3, 4):
        data = np.moveaxis(data, 1, -1)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 3 or (data.ndim == 4 and data.shape[-1] in (3, 4)):
        return data
    return None


def _scale_images(images: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Float images for display, with the value range to map to the colours."""
    if images.dtype == np.uint8:
        return images.astype(np.float64) / 255.0, 0.0, 1.0
    images = images.astype(np.float64)
    low, high = float(np.min(images)), float(np.max(images))
    if images.ndim == 4:  # colour: must lie in [0, 1]
        images = (images - low) / (high - low) if high > low else np.zeros_like(images)
        return images, 0.0, 1.0
    return images, low, high if high > low else low + 1.0


def _typical(proba: np.ndarray, labels: np.ndarray, n_images: int) -> np.ndarray:
    """Per leaf, the ``n_images`` samples assigned to it with the highest probability for it.

    Returns an int array ``(n_images, k)``; -1 where a leaf has fewer samples.
    """
    k = proba.shape[1]
    n_show = min(n_images, proba.shape[0])
    score = np.where(labels[:, None] == np.arange(k), proba, -np.inf)
    order = np.argsort(-score, axis=0, kind="stable")[:n_show]
    valid = np.isfinite(np.take_along_axis(score, order, axis=0))
    return np.where(valid, order, -1)


def _strip(images: np.ndarray, indices: np.ndarray, fill: float) -> np.ndarray:
    """Stack ``images[indices]`` vertically (one pixel apart); -1 entries stay empty."""
    n_rows = len(indices)
    h, w = images.shape[1:3]
    strip = np.full((n_rows * (h + 1) - 1, w, *images.shape[3:]), fill)
    for row, index in enumerate(indices):  # a few images per leaf
        if index >= 0:
            strip[row * (h + 1) : row * (h + 1) + h] = images[index]
    return strip


def _font_size(leaf_inches: float) -> float:
    """Font size (points) of the text under a leaf given the width of its column."""
    return float(np.clip(10 * leaf_inches, 5, 9))


def _text_inches(n_lines: int, font: float) -> float:
    """Room (inches) for ``n_lines`` of leaf text."""
    return 0.1 + n_lines * font * _LINE_INCHES_PER_POINT


def _check_fitted_tree(model):
    check_is_fitted(model)
    for name in ("tree_", "leaves_", "labels_"):
        if not hasattr(model, name):
            raise TypeError(f"model must be a fitted CoHiClust (it has no {name}); got {type(model).__name__}.")


def plot_tree(
    model: CoHiClust,
    X: ArrayLike | None = None,
    *,
    n_images: int = 5,
    images: ArrayLike | None = None,
    leaf_names: Sequence[str] | None = None,
    ax: Axes | None = None,
    cmap: str = "gray_r",
) -> Figure:
    """Draw the fitted tree as a dendrogram, with each leaf's size and typical images.

    The dendrogram is ``model.tree_`` (pruned subtrees collapsed), its leaf
    clusters ``0..n_clusters_-1`` from left to right; merges are coloured by
    their level-1 subtree, and the y axis shows the tree level of each
    merge.  Under every leaf stand its name and size and, when ``X`` holds
    images, a column of its most typical images: the samples of ``X``
    assigned to that leaf with the highest probability for it.

    Parameters
    ----------
    model : CoHiClust
        A fitted model.
    X : array-like of the shape seen at fit or None, default=None
        Samples to pick the images from (e.g. the training data).  With
        ``X``, the sizes are counted on ``X``; without, on the training data.
    n_images : int, default=5
        Images per leaf (0 for none).  Only drawn when ``X`` (or ``images``)
        holds images: ``(n, H, W)``, ``(n, C, H, W)`` or flat rows of a model
        fitted with ``image_shape``.
    images : array-like or None, default=None
        What to show for the samples of ``X``, row for row, when ``X`` is not
        itself viewable (e.g. features computed from images):
        ``(n, H, W)``, ``(n, H, W, 3)`` or ``(n, C, H, W)``.
    leaf_names : sequence of str or None, default=None
        A name per cluster (e.g. its majority class); ``None`` writes ``c<k>``.
    ax : matplotlib Axes or None, default=None
        Where to draw; ``None`` creates a figure sized to the tree.  The
        images go in inset axes at the bottom of ``ax``.
    cmap : str, default="gray_r"
        Colour map of single-channel images.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    plt = _pyplot()
    from matplotlib.collections import LineCollection

    _check_fitted_tree(model)
    if not isinstance(n_images, numbers.Integral) or isinstance(n_images, bool) or n_images < 0:
        raise ValueError(f"n_images must be an int >= 0; got {n_images!r}.")
    k, depth = int(model.n_clusters_), int(model.depth)
    if leaf_names is None:
        leaf_names = [f"c{c}" for c in range(k)]
    elif len(leaf_names) != k:
        raise ValueError(f"leaf_names must hold {k} names (one per cluster), got {len(leaf_names)}.")

    display, typical = None, None
    if X is None:
        if images is not None:
            raise ValueError("images are shown for the samples of X: pass X as well.")
        sizes = model.leaf_sizes_
    else:
        proba = model.predict_proba(X)
        labels = proba.argmax(axis=1)
        sizes = np.bincount(labels, minlength=k)
        if images is not None:
            display = _image_array(images, None)
            if display is None:
                raise ValueError(
                    f"images must have shape (n, H, W), (n, H, W, 3) or (n, C, H, W); got {np.shape(images)}."
                )
            if len(display) != len(proba):
                raise ValueError(f"images must hold one image per sample of X ({len(proba)}), got {len(display)}.")
        else:
            display = _image_array(X, getattr(model, "image_shape", None))
        if display is not None and n_images > 0:
            typical = _typical(proba, labels, n_images)

    # ---- the dendrogram
    if k > 1:
        dendro = dendrogram(
            hierarchy.ordered_linkage(model.tree_),
            no_plot=True,
            color_threshold=level_cut_height(depth, 1),
            above_threshold_color="0.35",
        )
        order = np.asarray(dendro["leaves"])
        segments = [np.column_stack([x, y]) for x, y in zip(dendro["icoord"], dendro["dcoord"], strict=True)]
        colors = dendro["color_list"]
        top = float(np.max(model.tree_[:, 2])) + 0.3
    else:
        order, segments, colors, top = np.zeros(1, dtype=int), [], [], 1.0

    n_rows = 0 if typical is None else typical.shape[0]
    n_lines = 1 + max(str(name).count("\n") + 1 for name in leaf_names)  # the name, then the size
    if ax is None:
        leaf_in = min(1.0, (_MAX_WIDTH_INCHES - 1.5) / k)
        width = max(5.0, k * leaf_in + 1.5)
        height = _DENDROGRAM_INCHES + _text_inches(n_lines, _font_size(leaf_in)) + n_rows * 0.9 * leaf_in + 0.45
        fig, ax = plt.subplots(figsize=(width, height))
        fig.subplots_adjust(left=1.2 / width, right=1 - 0.3 / width, top=1 - 0.35 / height, bottom=0.1 / height)
    fig = ax.figure
    box = ax.get_position()
    fig_w, fig_h = fig.get_size_inches()
    ax_w, ax_h = box.width * fig_w, box.height * fig_h
    leaf_in = ax_w / k
    font = _font_size(leaf_in)
    text_in = _text_inches(n_lines, font)
    image_in = 0.9 * leaf_in
    below = text_in + n_rows * image_in
    if below > 0.75 * ax_h:  # a small axes: shrink the images
        image_in = max(0.0, 0.75 * ax_h - text_in) / max(n_rows, 1)
        below = text_in + n_rows * image_in
    per_inch = top / (ax_h - below)  # data units per inch, vertically
    bottom = -below * per_inch

    ax.add_collection(LineCollection(segments, colors=colors, linewidths=1.5))
    ax.set_xlim(0, 10 * k)
    ax.set_ylim(bottom, top)
    ax.set_xticks([])
    ticks = [0.0] + [depth - level + 0.25 for level in range(depth - 1, -1, -1)]
    tick_labels = [f"{depth} (leaves)"] + [str(level) for level in range(depth - 1, 0, -1)] + ["0 (root)"]
    ax.set_yticks(ticks, tick_labels)
    ax.set_ylabel("tree level")
    ax.yaxis.label.set_y((top / 2 - bottom) / (top - bottom))  # centred on the dendrogram, not the images
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.spines["left"].set_bounds(0, top)

    x_leaf = 5.0 + 10.0 * np.arange(k)
    for x, cluster in zip(x_leaf, order, strict=True):
        ax.text(x, -0.06 * per_inch, f"{leaf_names[cluster]}\nn={sizes[cluster]}", ha="center", va="top", fontsize=font)

    # ---- the typical images, one column per leaf
    if typical is not None and image_in > 0:
        used = np.unique(typical[typical >= 0])
        shown, low, high = _scale_images(display[used])
        remap = np.full(len(display), -1)
        remap[used] = np.arange(len(used))
        fill = 1.0 if shown.ndim == 4 else np.nan
        strip_height = n_rows * image_in * per_inch
        for x, cluster in zip(x_leaf, order, strict=True):
            inset = ax.inset_axes([x - 4.6, bottom, 9.2, strip_height], transform=ax.transData)
            column = typical[:, cluster]
            strip = _strip(shown, np.where(column >= 0, remap[np.maximum(column, 0)], -1), fill)
            inset.imshow(strip, cmap=cmap, vmin=low, vmax=high, interpolation="nearest")
            inset.set_anchor("N")
            inset.set_axis_off()
    return fig


def plot_level_sizes(model: CoHiClust, X: ArrayLike | None = None, *, ax: Axes | None = None) -> Figure:
    """Cluster sizes at every level of the tree, as an icicle chart.

    Row ``l`` shows the clusters of level ``l`` (as
    :meth:`~skcohiclust.CoHiClust.labels_at_level` numbers them) left to
    right, each as wide as its number of samples; the root is on top.
    Since the levels nest, every bar lies exactly over its children.  Bars
    are coloured by their level-1 subtree.

    Parameters
    ----------
    model : CoHiClust
        A fitted model.
    X : array-like of the shape seen at fit or None, default=None
        Count the samples of ``X`` (assigned with ``predict(X, level=l)``);
        ``None`` counts the training data.
    ax : matplotlib Axes or None, default=None
        Where to draw; ``None`` creates a figure.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.

    Raises
    ------
    ImportError
        If matplotlib is not installed.
    """
    plt = _pyplot()
    _check_fitted_tree(model)
    depth, leaves = int(model.depth), model.leaves_
    labels = model.labels_ if X is None else model.predict(X)
    created = ax is None
    if created:
        fig, ax = plt.subplots(figsize=(8.0, 1.0 + 0.55 * (depth + 1)))
    fig = ax.figure
    palette = plt.get_cmap("tab10")
    branch = hierarchy.leaf_to_level(leaves, depth, min(1, depth))
    total = max(len(labels), 1)
    tick_labels = []
    for level in range(depth + 1):
        mapping = hierarchy.leaf_to_level(leaves, depth, level)
        sizes = hierarchy.level_sizes(labels, leaves, depth, level)
        node_branch = np.zeros(len(sizes), dtype=int)
        node_branch[mapping] = branch  # every node lies in one level-1 subtree
        colors = ["0.6"] if level == 0 else [palette(b % 10) for b in node_branch]
        left = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        ax.barh(level, sizes, left=left, height=0.8, color=colors, edgecolor="white", linewidth=1.0)
        for x, size in zip(left + sizes / 2.0, sizes, strict=True):
            if size / total >= 0.04:
                ax.text(x, level, str(size), ha="center", va="center", fontsize=8)
        tick_labels.append(f"level {level}\n({len(sizes)} cluster{'s' if len(sizes) != 1 else ''})")
    ax.set_yticks(np.arange(depth + 1), tick_labels)
    ax.set_ylim(depth + 0.6, -0.6)
    ax.set_xlim(0, total)
    ax.set_xlabel("samples" if X is not None else "training samples")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if created:
        fig.tight_layout()
    return fig
