"""Would a SCAN-style self-labelling stage help a fitted tree?  A probe on a saved model.

SCAN (Van Gansbeke et al., ECCV 2020) ends with a self-labelling stage: the
samples the clustering head is confident about (maximum probability above a
threshold, on the image as it is) become targets, and the head and backbone
are trained with a class-balanced cross-entropy on strongly augmented views
of them.  It pays when the confident samples are nearly all of one class.
This probe measures, on a fitted :class:`~skcohiclust.CoHiClust` saved with
:mod:`pickle`:

1. how many training samples pass each confidence threshold and how often
   their leaf's matched class is right (the precision of the targets);
2. the tree's ACC, NMI and leaf sizes after each epoch of self-labelling
   (the masked leaf probabilities of the model's own views, Adam,
   cross-entropy weighted by the inverse frequency of each target in the
   batch).

It changes only a copy of the model in memory and appends one JSON line to
``results/self-label-probe.jsonl``::

    python benchmarks/self_label_probe.py --model fitted.pkl --dataset cifar10 --epochs 6
"""

from __future__ import annotations

import argparse
import pickle
import time

import numpy as np
import torch
import torch.nn.functional as F
from _common import append_json_line, machine_description
from quality import load_dataset
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import normalized_mutual_info_score

from skcohiclust._data import BatchSource
from skcohiclust.metrics import cluster_accuracy
from skcohiclust.training import native_bfloat16

THRESHOLDS = (0.5, 0.9, 0.99, 0.999)


def target_precision(y, proba, thresholds=THRESHOLDS) -> list[dict]:
    """Share of samples above each confidence threshold, and how often their matched class is right.

    Parameters
    ----------
    y : numpy.ndarray
        True classes.
    proba : numpy.ndarray
        ``(n, n_leaves)`` leaf probabilities.
    thresholds : sequence of float
        Confidence thresholds.

    Returns
    -------
    list of dict
        ``threshold``, ``share`` and ``precision`` per threshold.
    """
    labels, confidence = proba.argmax(1), proba.max(1)
    counts = np.zeros((proba.shape[1], int(y.max()) + 1))
    np.add.at(counts, (labels, y), 1)
    leaves, classes = linear_sum_assignment(-counts)
    matched = np.full(proba.shape[1], -1)
    matched[leaves] = classes
    right = matched[labels] == y
    rows = []
    for threshold in thresholds:
        keep = confidence > threshold
        rows.append(
            {
                "threshold": threshold,
                "share": round(float(keep.mean()), 4),
                "precision": round(float(right[keep].mean()), 4) if keep.any() else None,
            }
        )
    return rows


def scores(y, proba) -> dict:
    """ACC, NMI and leaf sizes of the labels of leaf probabilities ``proba``."""
    labels = proba.argmax(1)
    return {
        "acc": round(cluster_accuracy(y, labels), 4),
        "nmi": round(float(normalized_mutual_info_score(y, labels)), 4),
        "sizes": np.bincount(labels, minlength=proba.shape[1]).tolist(),
    }


def self_label_epoch(model, X, generator, threshold, batch_size, optimizer) -> dict:
    """One epoch of confident-sample self-labelling, in place on ``model.module_``.

    Returns
    -------
    dict
        ``targets`` (confident samples used) and the mean ``loss``.
    """
    network = model.module_
    device = next(network.parameters()).device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=native_bfloat16(device))
    source = BatchSource(X, model._spec, device)  # the model's own reading of X (8-bit data scaled to [0, 1])

    def leaf_proba(x):
        return model._cluster_probabilities(network(x, with_projection=False))

    order = torch.randperm(len(X), generator=generator).numpy()
    used, losses = 0, []
    for start in range(0, len(X) - batch_size + 1, batch_size):
        x = source.take(order[start : start + batch_size])
        network.eval()
        with torch.no_grad(), autocast:
            confidence, target = leaf_proba(x).max(1)
        network.train()
        keep = confidence > threshold
        if not keep.any():
            continue
        views = model.augmentation_(x[keep], generator, network.input_size)
        with autocast:
            proba = leaf_proba(views)
        counts = torch.bincount(target[keep], minlength=proba.shape[1]).float()
        weight = torch.where(counts > 0, 1.0 / counts.clamp_min(1.0), torch.zeros_like(counts))
        weight = weight / weight[counts > 0].mean()
        loss = F.nll_loss(torch.log(proba.clamp_min(1e-8)), target[keep], weight=weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        used += int(keep.sum())
        losses.append(float(loss.detach()))
    network.eval()
    return {"targets": used, "loss": round(float(np.mean(losses)), 4) if losses else None}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a pickled CoHiClust fitted on --dataset")
    parser.add_argument("--dataset", default="cifar10", choices=("cifar10", "fashion-mnist"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threshold", type=float, default=0.99, help="SCAN's 0.99")
    parser.add_argument("--lr", type=float, default=1e-4, help="SCAN's Adam rate for self-labelling")
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default=None)
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    X, y, _ = load_dataset(args.dataset, args.limit)
    with open(args.model, "rb") as handle:
        model = pickle.load(handle)
    proba = model.predict_proba(X)
    start = scores(y, proba)
    precision = target_precision(y, proba)
    print(f"start: ACC {start['acc']:.3f} NMI {start['nmi']:.3f} sizes {start['sizes']}")
    for row in precision:
        print(f"  confidence > {row['threshold']}: {row['share']:.3f} of the samples, precision {row['precision']}")
    optimizer = torch.optim.Adam(model.module_.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    generator = torch.Generator().manual_seed(args.seed)
    epochs = []
    for epoch in range(args.epochs):
        began = time.perf_counter()
        step = self_label_epoch(model, X, generator, args.threshold, args.batch_size, optimizer)
        after = scores(y, model.predict_proba(X))
        epochs.append({"epoch": epoch + 1, **step, **after, "seconds": round(time.perf_counter() - began, 1)})
        print(f"epoch {epoch + 1}: ACC {after['acc']:.3f} NMI {after['nmi']:.3f} sizes {after['sizes']} {step}")
    row = {
        "name": args.name or f"{args.dataset}-thr{args.threshold}-lr{args.lr}",
        "model": args.model,
        "dataset": args.dataset,
        "n_samples": len(X),
        "threshold": args.threshold,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "batch_size": args.batch_size,
        "start": start,
        "target_precision": precision,
        "epochs": epochs,
        "machine": machine_description(),
    }
    append_json_line("self-label-probe.jsonl", row)
    return row


if __name__ == "__main__":
    main()
