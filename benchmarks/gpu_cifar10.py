"""The paper-scale CIFAR-10 row: a ResNet backbone on a GPU, as many epochs as a time budget allows.

Usage (``benchmarks/gpu_cifar10.sh`` wraps it for the GPU machine)::

    python benchmarks/gpu_cifar10.py --budget-minutes 8            # the row
    python benchmarks/gpu_cifar10.py --smoke                        # about a minute: does it all run?
    python benchmarks/gpu_cifar10.py --smoke --device cpu --limit 256 --backbone cnn   # a CPU check

It loads the 50,000 CIFAR-10 training images (``--data``, default the shared
archive beside the checkout), times a few training steps of
``CoHiClust(backbone=..., depth=4, n_clusters=10, batch_size=...)`` to
estimate an epoch, and sets ``max_epochs`` so that the fit ends within the
budget (half of it warm-up, the package's default split).  It then fits
once, timing the whole fit, and scores ACC, NMI, ARI (scikit-learn), DP and
LP (:mod:`skcohiclust.metrics`) against the true classes.  The row (with
the device's name, the epoch estimate and the measured wall time) is
printed as JSON, appended to ``benchmarks/results/quality-cifar10-gpu.jsonl``
(``--smoke`` rows to ``...-smoke.jsonl``), and copied to ``$OUT`` when that
variable names a folder (the GPU machine hands back what is written there).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _common import RESULTS_DIR, append_json_line
from quality import CIFAR10_DEFAULT, Outcome, load_dataset, score

from skcohiclust import CoHiClust


def device_name(device: torch.device) -> str:
    """The accelerator's name, or the CPU's."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def seconds_per_epoch(X, params, n_batches: int) -> float:
    """Time one warm-up epoch of ``n_batches`` batches and scale it to an epoch of ``X``.

    The probe's first steps (cuDNN's autotuning, the allocator's growth) are
    counted too, so the estimate errs on the long side.
    """
    batch = params["batch_size"]
    rows = np.random.default_rng(0).choice(len(X), size=min(len(X), batch * n_batches), replace=False)
    probe = CoHiClust(**{**params, "max_epochs": 1, "warmup_epochs": 0, "n_clusters": None, "verbose": 0})
    probe.set_params(tree_init="random", n_neighbors=0)  # no tree start or neighbour search in the probe
    probe.fit(X[np.sort(rows)])
    steps = max(1, len(rows) // batch)
    return probe.history_[0]["seconds"] / steps * math.ceil(len(X) / batch)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=None, help=f"CIFAR-10's files (default {CIFAR10_DEFAULT})")
    parser.add_argument("--budget-minutes", type=float, default=8.0, help="wall time the fit may take")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="a fixed random subsample (quick checks)")
    parser.add_argument("--max-epochs", type=int, default=None, help="skip the estimate: train this many epochs")
    parser.add_argument("--smoke", action="store_true", help="2,048 images, 2 epochs: checks that it all runs")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    if args.smoke:
        args.limit = args.limit or 2048
        args.max_epochs = args.max_epochs or 2

    load_start = time.perf_counter()
    X, y, _ = load_dataset("cifar10", args.limit, args.data)
    load_seconds = time.perf_counter() - load_start
    params = dict(
        depth=4,
        n_clusters=10,
        backbone=args.backbone,
        batch_size=min(args.batch_size, len(X)),
        device=args.device,
        random_state=args.seed,
        verbose=args.verbose,
    )
    estimate = None
    if args.max_epochs is None:
        estimate = seconds_per_epoch(X, params, n_batches=8)
        # 10% of the budget for the tree start, neighbour search and the final labelling pass
        args.max_epochs = max(2, int(0.9 * args.budget_minutes * 60 / estimate))
    params.update(max_epochs=args.max_epochs, warmup_epochs=args.max_epochs // 2)
    print(f"{len(X)} images; epoch estimate {estimate and round(estimate, 2)} s; {params}", file=sys.stderr)

    model = CoHiClust(**params)
    start = time.perf_counter()
    model.fit(X)
    fit_seconds = time.perf_counter() - start
    device = device_name(model.device_)
    scores = score(
        "cifar10", f"CoHiClust-{args.backbone}", args.seed, Outcome(model.labels_, model.tree_, fit_seconds, device, y)
    )
    row = {
        "dataset": "cifar10",
        "method": f"CoHiClust-{args.backbone}",
        "smoke": bool(args.smoke),
        "seed": args.seed,
        "n_samples": int(len(y)),
        "max_epochs": args.max_epochs,
        "batch_size": params["batch_size"],
        **{metric: round(scores[metric], 4) for metric in ("acc", "nmi", "ari", "dp", "lp")},
        "n_clusters": int(model.n_clusters_),
        "fit_seconds": round(fit_seconds, 1),
        "epoch_estimate_seconds": estimate and round(estimate, 2),
        "epoch_seconds_measured": [round(h["seconds"], 2) for h in model.history_],
        "load_seconds": round(load_seconds, 1),
        "device": device,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(row))
    name = "quality-cifar10-gpu-smoke.jsonl" if args.smoke else "quality-cifar10-gpu.jsonl"
    append_json_line(name, row)
    out = os.environ.get("OUT")
    if out and Path(out).is_dir():
        (Path(out) / name).write_text((RESULTS_DIR / name).read_text())
    return row


if __name__ == "__main__":
    main()
