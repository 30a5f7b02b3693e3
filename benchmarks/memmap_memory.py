"""Memory of a fit on a memory-mapped data set larger than what it should copy.

Writes Fashion-MNIST's 70,000 28x28 images, repeated ``--copies`` times
(default 10: 700,000 images, 549 MB of uint8), to a ``numpy.memmap`` in a
temporary file, opens it read-only and fits ``CoHiClust`` on it for one
epoch, sampling the process's memory from ``/proc/self/status`` in a thread.

What is reported, and why:

* ``RssAnon`` -- resident *anonymous* memory: what the process allocated
  itself (arrays, tensors, the heap).  A copy of the data would land here.
  This is the number that must stay far below the file size.
* ``RssFile`` -- resident pages of mapped *files*: the memmap's pages that
  were read (through the page cache) are counted here while mapped.  They
  are clean and file-backed, so the kernel can drop them at any time under
  memory pressure; they do not make the process need the file's size in RAM.
* ``VmHWM`` -- the peak of ``RssAnon + RssFile + RssShmem`` (what ``top``
  and ``ru_maxrss`` show), reset just before the fit; it grows with the
  file pages touched.

One epoch of the default CNN on 700,000 images takes far too long on a
2-core CPU, so the fit uses a tiny custom backbone (4x4 average pooling and
one linear layer, passed as ``backbone=``) and a small projection head:
memory, not accuracy, is measured, and everything the estimator does with
the data (validation, input statistics, shuffled batches read from the
file, the views, the final pass that labels every sample) runs as usual.

A second part writes the first ``--float-rows`` images as float32 to another
memmap and measures the anonymous memory of scikit-learn's validation of it
(``dtype`` kept, NaN/infinity check), which streams through the file.

Usage::

    python benchmarks/memmap_memory.py            # the full run (a few minutes)
    python benchmarks/memmap_memory.py --quick    # 1 copy, no result files
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    RESULTS_DIR,
    machine_description,
    machine_summary,
    markdown_table,
    replace_section,
    write_json,
)

MB = 1e6
STATUS_KEYS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def read_status() -> dict:
    """The memory lines of ``/proc/self/status``, in bytes."""
    values = {}
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in STATUS_KEYS:
                values[key] = int(rest.split()[0]) * 1024
    return values


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        pass


class PeakSampler:
    """Samples ``/proc/self/status`` in a background thread and keeps the peaks."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.peaks = read_status()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self._update()
            time.sleep(self.interval)

    def _update(self):
        for key, value in read_status().items():
            self.peaks[key] = max(self.peaks.get(key, 0), value)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._update()


def load_images() -> np.ndarray:
    """The 70,000 Fashion-MNIST images, uint8 (via skcohiclust.datasets when present)."""
    try:
        from skcohiclust.datasets import load_fashion_mnist

        return load_fashion_mnist()[0]
    except ImportError:
        import gzip

        folder = Path("/usr/share/datasets/fashion-mnist")
        parts = []
        for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
            with gzip.open(folder / name, "rb") as handle:
                raw = handle.read()
            parts.append(np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(-1, 28, 28))
        return np.concatenate(parts)


def write_memmap(path, images: np.ndarray, copies: int, dtype=np.uint8, rows=None) -> tuple:
    """Write ``images`` repeated ``copies`` times (first ``rows`` rows) to ``path``; return its shape."""
    n = len(images) * copies if rows is None else rows
    out = np.memmap(path, dtype=dtype, mode="w+", shape=(n, *images.shape[1:]))
    chunk = 10_000  # small pieces: no large temporary array
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        rows_here = images[np.arange(start, stop) % len(images)]
        out[start:stop] = rows_here if dtype == np.uint8 else rows_here.astype(dtype) / dtype(255)
    out.flush()
    del out
    with open(path, "rb") as handle:  # drop the written pages from the page cache: the fit reads the file
        os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return (n, *images.shape[1:])


def tiny_backbone():
    """4x4 average pooling and one linear layer: 28x28 -> 32 features, cheap on a CPU."""
    from torch import nn

    module = nn.Sequential(nn.AvgPool2d(4), nn.Flatten(), nn.Linear(49, 32), nn.ReLU())
    module.output_dim = 32
    return module


def fit_on_memmap(path, shape, args, rows=None) -> dict:
    """Fit one epoch on the read-only memmap (its first ``rows`` rows) and measure the memory."""
    from skcohiclust import CoHiClust

    X = np.memmap(path, dtype=np.uint8, mode="r", shape=shape)
    if rows is not None:
        X = X[:rows]
        shape = X.shape
    model = CoHiClust(
        depth=args.depth,
        max_epochs=1,
        batch_size=args.batch_size,
        backbone=tiny_backbone(),
        projection_dim=16,
        random_state=0,
        verbose=args.verbose,
    )
    gc.collect()
    reset_peak()
    before = read_status()
    started = time.perf_counter()
    with PeakSampler() as sampler:
        model.fit(X)
    seconds = time.perf_counter() - started
    after = read_status()
    return {
        "n_images": shape[0],
        "file_mb": X.nbytes / MB,
        "batch_size": args.batch_size,
        "n_batches": shape[0] // min(args.batch_size, shape[0]),
        "depth": args.depth,
        "fit_seconds": seconds,
        "rss_anon_before_mb": before["RssAnon"] / MB,
        "rss_anon_peak_mb": sampler.peaks["RssAnon"] / MB,
        "rss_anon_increase_mb": (sampler.peaks["RssAnon"] - before["RssAnon"]) / MB,
        "rss_anon_after_mb": after["RssAnon"] / MB,
        "rss_file_before_mb": before["RssFile"] / MB,
        "rss_file_peak_mb": sampler.peaks["RssFile"] / MB,
        "rss_file_increase_mb": (sampler.peaks["RssFile"] - before["RssFile"]) / MB,
        "vm_hwm_mb": after["VmHWM"] / MB,
        "rss_anon_retained_mb": (after["RssAnon"] - before["RssAnon"]) / MB,
        # leaf probabilities (float32) and labels (int64) of every training sample, from the labelling pass
        "per_sample_outputs_mb": shape[0] * (4 * 2**args.depth + 8) / MB,
        "n_clusters": int(model.n_clusters_),
        "labels": int(model.labels_.shape[0]),
    }


def validate_float_memmap(path, shape) -> dict:
    """Anonymous memory of validating a float32 memmap (dtype kept, finiteness checked)."""
    from skcohiclust import CoHiClust

    X = np.memmap(path, dtype=np.float32, mode="r", shape=shape)
    gc.collect()
    before = read_status()
    started = time.perf_counter()
    with PeakSampler(interval=0.005) as sampler:
        validated = CoHiClust()._validate_X(X, reset=True)  # the estimator's own call of validate_data
    seconds = time.perf_counter() - started
    return {
        "n_images": shape[0],
        "file_mb": X.nbytes / MB,
        "no_copy": bool(np.shares_memory(validated, X)),
        "seconds": seconds,
        "rss_anon_increase_mb": (sampler.peaks["RssAnon"] - before["RssAnon"]) / MB,
        "rss_file_increase_mb": (sampler.peaks["RssFile"] - before["RssFile"]) / MB,
    }


def markdown(result: dict) -> str:
    fit, check, warmup = result["fit"], result["float32_validation"], result["warmup_fit"]
    rows = [
        ["data", f"{fit['n_images']:,} Fashion-MNIST images (70k x {result['copies']}), 28x28 uint8 memmap"],
        ["file size", f"{fit['file_mb']:.0f} MB"],
        [
            "fit",
            f"1 epoch, batch {fit['batch_size']} ({fit['n_batches']} batches), depth {fit['depth']}, "
            f"tiny custom backbone, {fit['fit_seconds']:.0f} s",
        ],
        ["RssAnon before fit (after imports and a warm-up fit)", f"{fit['rss_anon_before_mb']:.0f} MB"],
        [
            "**RssAnon peak increase during fit**",
            f"**{fit['rss_anon_increase_mb']:.0f} MB** "
            f"({100 * fit['rss_anon_increase_mb'] / fit['file_mb']:.0f}% "
            "of the file)",
        ],
        ["one copy of the per-sample outputs (leaf probabilities, labels)", f"{fit['per_sample_outputs_mb']:.0f} MB"],
        ["RssAnon retained after fit", f"{fit['rss_anon_retained_mb']:.0f} MB"],
        ["RssFile peak increase (memmap pages read, reclaimable)", f"{fit['rss_file_increase_mb']:.0f} MB"],
        ["VmHWM (peak total RSS)", f"{fit['vm_hwm_mb']:.0f} MB"],
        [
            f"warm-up fit (first {warmup['n_images']:,} images; the process's first fit, not counted above)",
            f"RssAnon +{warmup['rss_anon_increase_mb']:.0f} MB, {warmup['fit_seconds']:.0f} s",
        ],
        [
            "float32 memmap validation",
            f"{check['n_images']:,} images, {check['file_mb']:.0f} MB: "
            f"RssAnon +{check['rss_anon_increase_mb']:.1f} MB, "
            f"RssFile +{check['rss_file_increase_mb']:.0f} MB, "
            f"no copy: {check['no_copy']}, {check['seconds']:.1f} s",
        ],
    ]
    return "\n".join(
        [
            "## Fitting on a memory-mapped file (`benchmarks/memmap_memory.py`)",
            "",
            markdown_table(["", ""], rows),
            "",
            "RssAnon is the memory the process allocated itself: a copy of the data would show here "
            "(the file size for a uint8 copy, four times that for the float32 copy a dtype conversion "
            "makes). RssFile counts mapped file pages: the shared libraries before the fit, then the "
            "memmap's pages read through the page cache; those are file-backed and clean, so the "
            "kernel reclaims them under memory pressure. The anonymous increase is the input "
            "statistics (float64 chunks of 4,096 rows), a batch, its views and their gradients, and "
            "the final labelling pass, which holds a few temporary copies of the per-sample outputs "
            "(leaf probabilities and labels of every image); not the images. A warm-up fit runs "
            "first because torch initialises lazily on first use (optimiser, autograd, kernels), a "
            "one-time cost of the process. The tiny custom backbone (4x4 average pooling and one "
            "linear layer) keeps one epoch short on a CPU; memory, not accuracy, is measured, and "
            "the data path is the estimator's own.",
            "",
            f"Measured on {machine_summary(result['machine'])}, {result['machine']['date']}.",
        ]
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=10, help="times the 70,000 images are repeated (default 10)")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size (default 256)")
    parser.add_argument("--depth", type=int, default=3, help="tree depth (default 3)")
    parser.add_argument(
        "--float-rows", type=int, default=200_000, help="images in the float32 memmap (default 200,000)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument(
        "--warmup-rows", type=int, default=20_000, help="images in the unmeasured first fit (default 20,000)"
    )
    parser.add_argument("--tmpdir", default=None, help="where the temporary files go")
    parser.add_argument("--verbose", type=int, default=0, help="the estimator's verbose (default 0)")
    parser.add_argument("--quick", action="store_true", help="1 copy and 20,000 float rows; writes no result files")
    parser.add_argument("--no-write", action="store_true", help="print only, write no result files")
    args = parser.parse_args(argv)
    if args.quick:
        args.copies, args.float_rows, args.no_write = 1, 20_000, True

    import torch

    torch.set_num_threads(args.threads)
    images = load_images()
    with tempfile.TemporaryDirectory(dir=args.tmpdir) as folder:
        path = os.path.join(folder, f"fashion-mnist-x{args.copies}.uint8")
        shape = write_memmap(path, images, args.copies)
        float_path = os.path.join(folder, "fashion-mnist.float32")
        float_shape = write_memmap(float_path, images, 1 + args.float_rows // len(images), np.float32, args.float_rows)
        del images
        # a short fit first: torch initialises lazily on first use (optimiser, autograd, kernels), a
        # one-time cost of the process that the measured fit should not be charged with
        warmup = fit_on_memmap(path, shape, args, rows=min(args.warmup_rows, shape[0]))
        fit = fit_on_memmap(path, shape, args)
        check = validate_float_memmap(float_path, float_shape)
    result = {
        "copies": args.copies,
        "warmup_fit": warmup,
        "fit": fit,
        "float32_validation": check,
        "machine": machine_description("cpu"),
    }
    for part in ("warmup_fit", "fit", "float32_validation"):
        print(part)
        for key, value in result[part].items():
            print(f"  {key:24s} {value:.1f}" if isinstance(value, float) else f"  {key:24s} {value}")
    if not args.no_write:
        print("wrote", write_json(RESULTS_DIR / "memmap-memory.json", result))
        print("wrote", replace_section("memmap", markdown(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
