"""The tree terms of CoHiClust in the published, pair-by-pair formulation.

This module re-implements, for benchmarking and testing only, the algorithm
of the public reference code of CoHiClust (Znaleźniak et al., ECML PKDD
2023) for the hierarchical contrastive loss and the balance regulariser:

* the probability of every node of a level is computed on its own, by
  walking the node's path up to the root and multiplying ``sigma`` or
  ``1 - sigma`` of each ancestor (a Python loop over the nodes of the level
  and over their ancestors);
* the positive and negative pairs of the ``2B`` views are listed explicitly
  as index lists built from a ``(2B, 2B)`` label matrix, the two sides of
  every pair are gathered (``(2B)**2`` rows of ``2**level`` values each) and
  their Bhattacharyya coefficients are taken with one batched product
  (``torch.bmm``): time and memory grow with the square of the batch;
* the regulariser loops in Python over the sibling pairs of every level.

It differs from that code in the points the package differs in, so that the
two compute the same quantity ("compare like with like"):

* a view is not its own negative: the negatives are the ordered pairs of
  distinct views that are not two views of one sample (the published code
  counts the ``2B`` self-pairs as negatives too);
* the masks per level are given by the caller (the package derives them
  from the leaf mask with :func:`skcohiclust.tree.node_active_mask`; the
  published code only ever masks leaves);
* everything runs on the device of the input (no ``.cuda()``).

And it is kinder to itself than the published code in ways that change the
cost, never the value: the pair index lists are built once per call rather
than four times per level, the node probabilities of a level are computed
once for both terms (the published code computes them in each term), node
indices are walked with Python integers rather than tensors, and the
columns of a level are stacked once rather than concatenated one by one.
The speed-ups measured against it are therefore lower bounds.

Conventions kept from the published formulation: masked node probabilities
are zeroed *before* ``sqrt(p + 1e-8)`` (so a masked column adds ``1e-8`` to
every pair; the constant is the same for positive and negative pairs and
cancels in the loss), and the regulariser weighs the sibling pair at level
``l`` (the level of the two children, ``1..depth``) by ``2**-l``.
"""

from __future__ import annotations

import torch

__all__ = [
    "SQRT_EPS",
    "path_node_probabilities",
    "pair_index_lists",
    "level_masks_from_node_mask",
    "reference_tree_loss",
    "reference_balance_regularizer",
    "reference_tree_terms",
]

#: Added under the square root, as in the published code.
SQRT_EPS = 1e-8


def path_node_probabilities(left_prob: torch.Tensor, level: int) -> torch.Tensor:
    """Probabilities of the nodes of one level, each walked up to the root.

    Parameters
    ----------
    left_prob : torch.Tensor
        Shape ``(n, 2**depth - 1)``: probability of going left at every
        internal node, heap order (node ``u`` has children ``2u + 1``, left,
        and ``2u + 2``, right).
    level : int
        Level ``1..depth``.

    Returns
    -------
    torch.Tensor
        Shape ``(n, 2**level)``, the nodes of the level from left to right.
    """
    columns = []
    for node in range(2**level - 1, 2 ** (level + 1) - 1):
        prob = torch.ones_like(left_prob[:, 0])
        child = node
        while child > 0:
            parent = (child - 1) // 2
            if child % 2 == 1:  # a left child
                prob = prob * left_prob[:, parent]
            else:
                prob = prob * (1.0 - left_prob[:, parent])
            child = parent
        columns.append(prob)
    return torch.stack(columns, dim=1)


def pair_index_lists(batch: int, device=None):
    """Explicit index lists of the positive and negative ordered pairs of ``2B`` views.

    Views ``i`` and ``i + B`` are the two views of sample ``i``.

    Parameters
    ----------
    batch : int
        ``B``, the number of samples.
    device : torch.device, optional
        Where the lists live.

    Returns
    -------
    positive : tuple of two torch.Tensor
        Row and column indices of the ``2B`` positive pairs.
    negative : tuple of two torch.Tensor
        Row and column indices of the ``2B(2B - 2)`` negative pairs (self-pairs
        excluded).
    """
    sample = torch.cat((torch.arange(batch, device=device), torch.arange(batch, device=device)))
    same = sample.unsqueeze(0) == sample.unsqueeze(1)
    eye = torch.eye(2 * batch, dtype=torch.bool, device=device)
    positive = torch.where(same & ~eye)
    negative = torch.where(~same)
    return positive, negative


def level_masks_from_node_mask(node_mask, depth: int) -> dict:
    """Split a level-major node mask into the per-level float masks of the published code.

    Parameters
    ----------
    node_mask : torch.Tensor or None
        Boolean, shape ``(2**(depth + 1) - 2,)`` (see :mod:`skcohiclust.tree`).
        None means no node is masked.
    depth : int
        Depth of the tree.

    Returns
    -------
    dict
        ``level -> float tensor of shape (2**level,)`` for levels ``1..depth``,
        or None when ``node_mask`` is None.
    """
    if node_mask is None:
        return None
    masks = {}
    for level in range(1, depth + 1):
        masks[level] = node_mask[2**level - 2 : 2 ** (level + 1) - 2].to(torch.get_default_dtype())
    return masks


def _bhattacharyya_mean(prob: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    # gather both sides of every listed pair, then one (1 x k) @ (k x 1) product per pair
    left = torch.sqrt(prob[rows] + SQRT_EPS).unsqueeze(1)
    right = torch.sqrt(prob[cols] + SQRT_EPS).unsqueeze(2)
    return torch.bmm(left, right).mean()


def _level_probabilities(left_prob, depth, level_masks):
    probs = {}
    for level in range(1, depth + 1):
        prob = path_node_probabilities(left_prob, level)
        if level_masks is not None:
            prob = prob * level_masks[level].to(prob.dtype)
        probs[level] = prob
    return probs


def reference_tree_loss(left_prob, batch, depth, level_masks=None, level_probs=None) -> torch.Tensor:
    """Hierarchical contrastive loss, pair by pair.

    ``sum over levels of (mean over negative pairs - mean over positive pairs)``
    of the Bhattacharyya coefficient of the two views' node probabilities.

    Parameters
    ----------
    left_prob : torch.Tensor
        Shape ``(2B, 2**depth - 1)``: the tree head's outputs for the first
        views (rows ``0..B-1``) then the second views.
    batch : int
        ``B``.
    depth : int
        Depth of the tree.
    level_masks : dict, optional
        From :func:`level_masks_from_node_mask`.
    level_probs : dict, optional
        Masked node probabilities per level, when already computed.

    Returns
    -------
    torch.Tensor
        Scalar.
    """
    if level_probs is None:
        level_probs = _level_probabilities(left_prob, depth, level_masks)
    (pos_rows, pos_cols), (neg_rows, neg_cols) = pair_index_lists(batch, left_prob.device)
    loss = left_prob.new_zeros(())
    for level in range(1, depth + 1):
        prob = level_probs[level]
        loss = loss - _bhattacharyya_mean(prob, pos_rows, pos_cols)
        loss = loss + _bhattacharyya_mean(prob, neg_rows, neg_cols)
    return loss


def reference_balance_regularizer(left_prob, depth, level_masks=None, level_probs=None) -> torch.Tensor:
    """Balance regulariser, sibling pair by sibling pair.

    ``-sum over levels l and sibling pairs of 2**-l * (log m_left + log m_right) / 2``
    with ``m`` the batch-mean node probabilities; pairs with a masked child
    are skipped.

    Parameters
    ----------
    left_prob : torch.Tensor
        Shape ``(2B, 2**depth - 1)``.
    depth : int
        Depth of the tree.
    level_masks : dict, optional
        From :func:`level_masks_from_node_mask`.
    level_probs : dict, optional
        Masked node probabilities per level, when already computed.

    Returns
    -------
    torch.Tensor
        Scalar, not yet multiplied by the objective's weight ``2**-depth``.
    """
    if level_probs is None:
        level_probs = _level_probabilities(left_prob, depth, level_masks)
    loss = left_prob.new_zeros(())
    for level in range(1, depth + 1):
        mean = level_probs[level].mean(dim=0)
        keep = [True] * 2**level if level_masks is None else (level_masks[level] > 0).tolist()
        for left in range(0, 2**level, 2):
            if keep[left] and keep[left + 1]:
                loss = loss - 2.0**-level * (0.5 * torch.log(mean[left]) + 0.5 * torch.log(mean[left + 1]))
    return loss


def reference_tree_terms(left_prob, batch, depth, level_masks=None):
    """Both tree terms of the objective as they enter it: ``L_tree`` and ``2**-depth * R``.

    The node probabilities of each level are computed once and shared.

    Parameters
    ----------
    left_prob : torch.Tensor
        Shape ``(2B, 2**depth - 1)``.
    batch : int
        ``B``.
    depth : int
        Depth of the tree.
    level_masks : dict, optional
        From :func:`level_masks_from_node_mask`.

    Returns
    -------
    tree_loss, weighted_regularizer : torch.Tensor
        Scalars.
    """
    level_probs = _level_probabilities(left_prob, depth, level_masks)
    tree = reference_tree_loss(left_prob, batch, depth, level_masks, level_probs)
    reg = reference_balance_regularizer(left_prob, depth, level_masks, level_probs)
    return tree, reg * 2.0**-depth
