"""Throughput of data-parallel training: one process against several (torchrun, gloo, CPU).

Usage::

    python benchmarks/distributed_scaling.py             # 1 vs 2 processes, ~1-2 minutes on 2 CPU cores
    python benchmarks/distributed_scaling.py --processes 1 2 4 --threads 4

Every configuration fits :class:`~skcohiclust.CoHiClust` (default CNN, float32,
``tree_init="random"`` and no neighbours, so that an epoch is training steps
only) on the first ``--n-samples`` of scikit-learn's 8x8 digits, in fresh
processes started by ``python -m torch.distributed.run --standalone``
(torchrun), and reads the seconds of every epoch from ``history_``; the first
epoch is left out (warm-up of the allocator and the gloo connections).
Images per second are training samples over the median epoch time.  The
configurations:

* ``1 process, T threads``: a plain fit (``distributed=False``) with all the
  threads the processes of the largest configuration have together;
* ``1 process, t threads``: a plain fit with one process's share;
* ``N processes x t threads``: torchrun with ``N`` gloo processes, ``t``
  threads each (``T = N * t``).

The results go to ``benchmarks/results/distributed-scaling.json``.  On a
machine with as many cores as threads asked for, ``N x t`` against ``1 x t``
is the scaling; where the cores are fewer (or busy), processes only share
them, and no speed-up can show.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results", "distributed-scaling.json")


def worker(args) -> None:
    """Fit once (in a torchrun process or alone) and write rank 0's epoch times to ``args.out``."""
    import torch

    torch.set_num_threads(args.threads)
    from skcohiclust import CoHiClust
    from skcohiclust.datasets import load_digits_images

    X = load_digits_images()[0][: args.n_samples]
    model = CoHiClust(
        depth=3,
        max_epochs=args.epochs,
        warmup_epochs=1,
        tree_init="random",
        n_neighbors=0,
        batch_size=args.batch_size,
        mixed_precision=False,
        device="cpu",
        random_state=0,
        distributed="auto" if max(args.processes) > 1 else False,
    )
    model.fit(X)
    if int(os.environ.get("RANK", "0")) == 0:
        seconds = [entry["seconds"] for entry in model.history_]
        with open(args.out, "w") as handle:
            json.dump({"epoch_seconds": seconds, "n_samples": len(X)}, handle)


def run(processes: int, threads: int, args) -> dict:
    """One configuration in fresh processes; its throughput."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        script = [
            os.path.abspath(__file__),
            "--worker",
            "--out",
            out,
            "--threads",
            str(threads),
            "--processes",
            str(processes),
            "--epochs",
            str(args.epochs),
            "--n-samples",
            str(args.n_samples),
            "--batch-size",
            str(args.batch_size),
        ]
        if processes > 1:
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        else:
            command = [sys.executable]
        path = os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=path)
        started = time.perf_counter()
        subprocess.run(command + script, env=env, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - started
        with open(out) as handle:
            times = json.load(handle)
    epoch = statistics.median(times["epoch_seconds"][1:])
    return {
        "processes": processes,
        "threads_per_process": threads,
        "epoch_seconds": times["epoch_seconds"],
        "median_epoch_seconds": epoch,
        "images_per_second": times["n_samples"] / epoch,
        "wall_seconds_with_startup": wall,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[2], help="process counts besides 1")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--n-samples", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    largest = max(args.processes)
    configurations = [(1, args.threads * largest), (1, args.threads)] + [(n, args.threads) for n in args.processes]
    configurations = list(dict.fromkeys(configurations))
    load = os.getloadavg()
    rows = [run(n, t, args) for n, t in configurations]
    base = next(r for r in rows if r["processes"] == 1 and r["threads_per_process"] == args.threads)
    for row in rows:
        row["speedup_vs_1_process_same_threads_each"] = row["images_per_second"] / base["images_per_second"]
    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_at_start": load},
        "settings": {k: getattr(args, k) for k in ("epochs", "n_samples", "batch_size", "threads")},
        "rows": rows,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
    print(f"{'configuration':<26}{'images/s':>10}{'epoch s':>10}{'vs 1 x t':>10}")
    for row in rows:
        name = f"{row['processes']} process(es) x {row['threads_per_process']} thr"
        print(
            f"{name:<26}{row['images_per_second']:>10.0f}{row['median_epoch_seconds']:>10.2f}"
            f"{row['speedup_vs_1_process_same_threads_each']:>10.2f}"
        )
    print(f"load average at start: {np.round(load, 2).tolist()} on {os.cpu_count()} CPUs; saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
