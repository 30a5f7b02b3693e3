"""One small tuning experiment: CoHiClust with given views on digits or a Fashion-MNIST subset.

Usage::

    python benchmarks/tune_views.py --name H --dataset fashion-mnist --limit 10000 --max-epochs 12 \\
        --augmentation '{"brightness": 0.4, "contrast": 0.4}'
    python benchmarks/tune_views.py --name shapes --dataset digits --seed 1
    python benchmarks/tune_views.py --name natural-w48 --dataset cifar10 --limit 10000 --max-epochs 40 --width 48

Fits ``CoHiClust(depth=4, n_clusters=10, random_state=seed, max_epochs=..., augmentation=...)``
with one torch thread and scores two things against the true classes:

* the tree's own leaves (``labels_``): ACC, NMI, DP, LP;
* k-means (10 clusters) on the L2-normalised representation (``transform``):
  ACC and NMI, which tells how good the learned representation is apart from
  the tree.

``--augmentation`` is a preset name or a JSON object of
:class:`~skcohiclust.augment.ImageAugmentation` fields that override the
automatic choice (as the estimator's dict form does); ``--full-views`` makes
the JSON the complete set of fields instead.  ``--pool P`` replaces the
default CNN's global average pooling by a ``P x P`` average pooling (keeping
coarse layout), ``--width W`` gives it ``W`` channels in its first stage
(``backbone_params={"width": W}``; with ``--pool`` a custom module, without
the built-in CNN's channels-last memory order: compare quality, not
speed); ``--set name=value`` sets any other estimator parameter
(a Python literal); ``--input-size S`` makes the default CNN work at
``S x S`` (``backbone_params={"input_size": S}``: the views are drawn at
that size, and whole images resized to it for the representation).  A
JSON line per experiment is printed and appended to
``benchmarks/results/tuning-views.jsonl``; the "Tuning" section of
BENCHMARKS.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from _common import append_json_line
from _tuning import parse_settings, representation_scores, tree_scores
from quality import load_dataset

from skcohiclust import CoHiClust
from skcohiclust.augment import IMAGE_PRESETS, ImageAugmentation
from skcohiclust.networks import SmallCNN


def views(spec: str, full: bool):
    """The estimator's ``augmentation`` argument from the command line."""
    if spec in IMAGE_PRESETS or spec == "auto":
        return spec
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(spec).items()}
    return ImageAugmentation(**fields) if full else fields


def backbone(pool: int, width: int | None, channels: int):
    """The default CNN (of another width: see ``backbone_params``), or one with ``pool x pool`` average pooling."""
    if pool == 1:
        return "auto"
    net = SmallCNN(channels) if width is None else SmallCNN(channels, width=width)
    if pool != 1:
        net.features[-2] = torch.nn.AdaptiveAvgPool2d(pool)
        net.output_dim *= pool**2
    return net


def main(argv=None) -> dict:
    """Run one experiment; return (and record) its scores."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--dataset", choices=("digits", "fashion-mnist", "cifar10"), default="digits")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augmentation", default="auto")
    parser.add_argument("--full-views", action="store_true")
    parser.add_argument("--pool", type=int, default=1)
    parser.add_argument("--width", type=int, default=None, help="channels of the CNN's first stage")
    parser.add_argument("--stages", type=int, default=None, help="stages of the CNN (backbone_params)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--input-size", type=int, default=None, help="side the default CNN works at (views are drawn at it)"
    )
    parser.add_argument("--set", action="append", default=[], help="another estimator parameter, name=value")
    args = parser.parse_args(argv)
    changes = parse_settings(args.set)
    torch.set_num_threads(args.threads)

    if (args.input_size is not None or args.stages is not None) and args.pool != 1:
        parser.error("--input-size and --stages are settings of the built-in CNN; --pool makes a custom module")
    X, y, _ = load_dataset(args.dataset, args.limit)
    cnn_params = {
        key: value
        for key, value in (("width", args.width), ("input_size", args.input_size), ("stages", args.stages))
        if value is not None
    }
    model = CoHiClust(
        depth=4,
        n_clusters=10,
        max_epochs=args.max_epochs,
        random_state=args.seed,
        augmentation=views(args.augmentation, args.full_views),
        backbone=backbone(args.pool, args.width, 3 if X.ndim == 4 else 1),
        backbone_params=cnn_params if args.pool == 1 and cnn_params else None,
        **changes,
    )
    start = time.perf_counter()
    model.fit(X)
    seconds = time.perf_counter() - start
    row = {
        "name": args.name,
        "dataset": args.dataset,
        "n_samples": len(y),
        "max_epochs": args.max_epochs,
        "seed": args.seed,
        "augmentation": args.augmentation,
        "full_views": args.full_views,
        "pool": args.pool,
        "width": args.width,
        "threads": args.threads,
        **({"input_size": args.input_size} if args.input_size is not None else {}),
        **({"stages": args.stages} if args.stages is not None else {}),
        "changes": changes,
        "tree_init": model.tree_init,
        "fit_seconds": round(seconds, 1),
        **{f"tree_{key}": value for key, value in tree_scores(y, model.labels_, model.tree_).items()},
        **representation_scores(y, model.transform(X), n_init=5),
    }
    append_json_line("tuning-views.jsonl", row)
    return row


if __name__ == "__main__":
    main()
