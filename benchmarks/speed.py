"""Speed and memory of skcohiclust, each against its own yardstick, side by side in one run.

Usage::

    python benchmarks/speed.py                    # everything (~12 minutes on 2 busy CPU cores)
    python benchmarks/speed.py --quick            # smoke run (~4 minutes), to results/speed-quick.json
    python benchmarks/speed.py --items tree depth # some items only (merged into the results file)
    python benchmarks/speed.py --device cuda      # on a GPU, with bfloat16 mixed precision
    python benchmarks/speed.py --profile          # print a torch.profiler table of training steps

Every comparison is timed in the same process, interleaved (A, B, A, B, ...),
and reported as the median over rounds of the ratio measured side by side
in each round (the tree loss, whose reference is timed only a few times:
as a ratio of medians): the machine these run on is shared and noisy, and
ratios measured side by side are what count.

The items
---------
``tree``
    The tree terms of the objective (hierarchical contrastive loss and
    ``2**-depth`` times the balance regulariser), forward and backward, from
    the tree head's sigmoid outputs for the ``2B`` views (``requires_grad``),
    against the published pair-by-pair formulation re-implemented in
    ``benchmarks/reference_loss.py`` (node probabilities walked node by node,
    Bhattacharyya coefficients gathered from explicit ``(2B)**2`` pair
    lists).  Batch 256 and 512, depth 4, 6 and 8.  The reference is timed
    fewer times where one call is long (the count is reported).  Also the
    peak memory one call adds, and the agreement of the values and gradients.
    Bar: at least 300x faster at batch 512, depth 4.
``step``
    Images per second of a full training step (``Trainer.step``: batch
    read, two augmented views, forward, NT-Xent, tree loss and regulariser,
    backward, Adam) with the default CNN for 28x28 grey images at batch 256,
    against the same backbone's bare forward and backward on 2 x 256
    precomputed views with a trivial loss (``.sum()``) and an Adam step: the
    limit this machine reaches for that network.  Bar: at least 90% of it.
``augment``
    Two views of batches of 256 images: the package's batched augmentation
    (the ``"shapes"`` preset used for grey images) against per-image
    torchvision transforms of the same family (``RandomAffine`` with the same
    rotation, shear, shift and scale ranges, bilinear, ``ColorJitter`` with
    the same brightness and contrast applied with the same probability,
    ``ToTensor``, Gaussian noise) fed by a ``torch.utils.data.DataLoader`` as reference
    implementations do (classic transforms with 0 and 2 workers, and v2).
``depth``
    Training step time at depth 2, 4, 6, 8, 10 relative to depth 4.  Bar:
    depth 8 costs at most 1.25x depth 4.
``precision``
    Images per second of the full training step (as ``step``) in four
    configurations, interleaved: float32 with the images in the usual
    (channels-first) memory order, the only path before channels-last and
    bfloat16 were added; float32 channels-last;
    bfloat16 autocast channels-first; bfloat16 autocast channels-last (the
    default where the device runs bfloat16 natively), each as a speed-up
    over the first.  Skipped (recorded as such) on a device without native
    bfloat16.
``single-thread``
    The ``tree`` (B=512, D=4), ``step`` and ``augment`` ratios again with one
    torch thread (CPU only).  On a CPU other processes keep busy, every
    OpenMP parallel region of a multi-threaded op waits for a core, so the
    ratios at the default thread count also count parallel regions; with one
    thread they measure the work.  A contention probe (a small ``sqrt`` at
    both thread counts, at the start and end of the run) is recorded.
``memory``
    In child processes: the peak resident memory of ``CoHiClust.fit`` on all
    70,000 Fashion-MNIST images (bar: under 3 GiB; ``getrusage``'s
    ``ru_maxrss`` of the process, which loads the data too), training one
    epoch cut to its first 12 batches so that the run stays short, then the
    end-of-fit pass over all 70,000 images (``--fit-batches 0`` trains whole
    epochs); the same fit on 10,000 images with 1 and with 2 epochs shows
    that the peak does not grow with epochs or steps; ``predict`` and ``transform`` throughput (rows/s) with
    the default CNN; and the peak memory ``predict`` adds at 70,000 and
    700,000 rows (the latter ``np.tile`` of the former), less its output
    arrays, which must not grow with the number of rows.

Results go to ``benchmarks/results/speed.json`` (merged with the items
already there, so items can be run separately; ``--quick`` writes
``speed-quick.json`` instead), a table is printed, and a markdown table goes
into ``benchmarks/BENCHMARKS.md`` between ``<!-- speed:start -->`` and
``<!-- speed:end -->`` (not with ``--quick`` unless ``--markdown`` names a
file).
"""

from __future__ import annotations

import argparse
import copy
import gc
import gzip
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BENCHMARKS_MD,
    RESULTS_DIR,
    command_line,
    machine_description,
    machine_summary,
    markdown_table,
    read_json,
    replace_section,
    write_json,
)
from reference_loss import reference_tree_terms

from skcohiclust._data import BatchSource, infer_input_spec, input_statistics
from skcohiclust.augment import resolve_augmentation
from skcohiclust.losses import balance_regularizer, hierarchical_contrastive_loss, tree_batch_statistics
from skcohiclust.networks import build_network
from skcohiclust.objectives import CoHiClustObjective
from skcohiclust.training import Trainer, TrainingConfig, native_bfloat16
from skcohiclust.tree import node_active_mask, node_probabilities

ITEMS = ("tree", "step", "precision", "augment", "depth", "single-thread", "memory")
BATCH = 256
IMAGE_SHAPE = (1, 28, 28)
GIB = 2**30
MIB = 2**20

#: Bars of the issue.
BAR_TREE_SPEEDUP = 300.0
BAR_STEP_FRACTION = 0.90
BAR_DEPTH8 = 1.25
BAR_FIT_RSS_GIB = 3.0

#: Settings of a full and of a ``--quick`` run.
SETTINGS = {
    "full": dict(
        tree_configs=[(256, 4), (256, 6), (256, 8), (512, 4), (512, 6), (512, 8)],
        tree_ours_reps=30,
        tree_ref_budget_s=25.0,
        tree_ref_max_reps=3,
        step_rounds=10,
        step_per_round=1,
        depths=(2, 4, 6, 8, 10),
        depth_rounds=4,
        precision_rounds=8,
        augment_rounds=3,
        augment_batches=8,
        augment_budget_s=4.0,
        fit_rows=70000,
        fit_epochs=1,
        fit_batches=12,
        epochs_check_rows=10000,
        throughput_rows=6000,
        predict_memory_rows=(70000, 700000),
        single_ref_reps=2,
        single_step_rounds=5,
        single_augment_rounds=2,
    ),
    "quick": dict(
        tree_configs=[(256, 4), (512, 4)],
        tree_ours_reps=10,
        tree_ref_budget_s=5.0,
        tree_ref_max_reps=2,
        step_rounds=2,
        step_per_round=1,
        depths=(4, 8),
        depth_rounds=2,
        precision_rounds=2,
        augment_rounds=2,
        augment_batches=3,
        augment_budget_s=1.5,
        fit_rows=5000,
        fit_epochs=1,
        fit_batches=3,
        epochs_check_rows=2000,
        throughput_rows=2048,
        predict_memory_rows=(5000, 50000),
        single_ref_reps=1,
        single_step_rounds=1,
        single_augment_rounds=1,
    ),
}


# ------------------------------------------------------------------------------------ timing
def _clock(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _time_call(fn, device) -> float:
    start = _clock(device)
    fn()
    return _clock(device) - start


def interleaved_times(tasks: dict, rounds: int, repeats: dict, device, warmup: int = 1) -> dict:
    """Time callables round-robin: each round runs every task ``repeats[name]`` times.

    Parameters
    ----------
    tasks : dict
        ``name -> callable`` with no arguments (a :class:`_WithPreparation` has its
        ``prepare`` run, untimed, before each timed call).
    rounds : int
        Rounds of A, B, ... .
    repeats : dict
        ``name -> calls per round``.
    device : torch.device
        Synchronised around every call when CUDA.
    warmup : int, default=1
        Untimed calls of each task first.

    Returns
    -------
    dict
        ``name -> list of seconds``, one per timed call.
    """
    for fn in tasks.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in tasks}
    for _ in range(rounds):
        for name, fn in tasks.items():
            for _ in range(repeats[name]):
                if isinstance(fn, _WithPreparation):
                    fn.prepare()
                times[name].append(_time_call(fn, device))
    return times


class _WithPreparation:
    """A task with an untimed preparation before each timed call."""

    def __init__(self, run, prepare):
        self.run, self.prepare = run, prepare

    def __call__(self):
        return self.run()


def _median(values) -> float:
    return float(statistics.median(values))


def _paired_ratio(numerator, denominator) -> float:
    """Median over rounds of ``numerator[i] / denominator[i]`` (times taken side by side in round ``i``).

    Less sensitive than a ratio of medians to load that changes between rounds.
    """
    return _median([a / b for a, b in zip(numerator, denominator, strict=True)])


def _spread(values) -> float:
    """Relative interquartile range: a noise indicator."""
    if len(values) < 4:
        return float("nan")
    q1, _, q3 = statistics.quantiles(values, n=4)
    return float((q3 - q1) / statistics.median(values))


# ------------------------------------------------------------------------------------ memory
def _status_bytes(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def rss_bytes() -> int:
    """Resident memory of this process now."""
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process since start or the last :func:`reset_peak_rss`."""
    return _status_bytes("VmHWM")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux >= 4.0); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def call_peak_bytes(fn, device) -> int | None:
    """Memory one call of ``fn`` adds at its peak (RSS on the CPU, allocated memory on CUDA)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - before)
    if not reset_peak_rss():
        fn()
        return None
    before = rss_bytes()
    fn()
    return int(peak_rss_bytes() - before)


# ------------------------------------------------------------------------------------ data
def load_images(n: int):
    """The first ``n`` Fashion-MNIST images, uint8 ``(n, 28, 28)``, and where they came from.

    ``skcohiclust.datasets.load_fashion_mnist`` when the module exists, else
    the IDX files under ``/usr/share/datasets/fashion-mnist``; random images
    if neither is there (said in the result).
    """
    try:
        from skcohiclust.datasets import load_fashion_mnist

        X, _ = load_fashion_mnist()
        return X[:n], "Fashion-MNIST (skcohiclust.datasets)"
    except ImportError:
        pass
    except FileNotFoundError:
        return _random_images(n), "random uint8 images (Fashion-MNIST not installed)"
    parts = []
    for name in ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz"):
        path = Path("/usr/share/datasets/fashion-mnist") / name
        if not path.is_file():
            return _random_images(n), "random uint8 images (Fashion-MNIST not installed)"
        with gzip.open(path, "rb") as handle:
            parts.append(np.frombuffer(handle.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28))
    return np.concatenate(parts)[:n], "Fashion-MNIST (IDX files)"


def _random_images(n):
    return np.random.default_rng(0).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def _index_batches(n, batch, count, seed=0):
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n, size=batch, replace=False)) for _ in range(count)]


class _Cycle:
    def __init__(self, items):
        self.items, self.i = items, 0

    def __call__(self):
        item = self.items[self.i % len(self.items)]
        self.i += 1
        return item


# ------------------------------------------------------------------------------------ item: tree loss
def _our_tree_terms(left_prob, batch, depth, node_mask=None):
    nodes = node_probabilities(left_prob, depth)
    stats = tree_batch_statistics(nodes[:batch], nodes[batch:], node_mask)
    return hierarchical_contrastive_loss(stats, depth), balance_regularizer(stats, depth, node_mask) * 2.0**-depth


def _tree_input(batch, depth, device, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(2 * batch, 2**depth - 1, generator=generator, dtype=dtype)
    return torch.sigmoid(logits).to(device).requires_grad_(True)


def _tree_agreement(device, batch=256, depth=4):
    """Values and gradients (float32, benchmark scale, with a pruning mask) of both formulations."""
    from reference_loss import level_masks_from_node_mask

    leaf_mask = torch.ones(2**depth, dtype=torch.bool)
    leaf_mask[[1, 6, 7]] = False
    node_mask = node_active_mask(leaf_mask, depth).to(device)
    masks = level_masks_from_node_mask(node_mask, depth)
    left = _tree_input(batch, depth, device, seed=1)
    out = {}
    for name, fn in (
        ("ours", lambda: _our_tree_terms(left, batch, depth, node_mask)),
        ("reference", lambda: reference_tree_terms(left, batch, depth, masks)),
    ):
        tree, reg = fn()
        grads = [torch.autograd.grad(term, left, retain_graph=True)[0] for term in (tree, reg)]
        out[name] = (tree.item(), reg.item(), grads)
    (t0, r0, g0), (t1, r1, g1) = out["ours"], out["reference"]
    return {
        "batch": batch,
        "depth": depth,
        "tree_loss": {"ours": t0, "reference": t1, "abs_diff": abs(t0 - t1)},
        "tree_loss_grad_max_abs_diff": float((g0[0] - g1[0]).abs().max()),
        "tree_loss_grad_max_abs": float(g1[0].abs().max()),
        "regularizer": {"ours": r0, "reference": r1, "ratio_ours_over_reference": r0 / r1},
        "regularizer_grad_max_abs_diff": float((g0[1] - g1[1]).abs().max()),
        "regularizer_grad_max_abs": float(g1[1].abs().max()),
    }


def bench_tree(device, settings, log, agreement=True):
    """Item ``tree``: our tree terms against the pair-by-pair reference."""
    rows = []
    for batch, depth in settings["tree_configs"]:
        left = _tree_input(batch, depth, device)

        def ours(left=left, batch=batch, depth=depth):
            tree, reg = _our_tree_terms(left, batch, depth)
            (tree + reg).backward()
            left.grad = None

        def ref(left=left, batch=batch, depth=depth):
            tree, reg = reference_tree_terms(left, batch, depth)
            (tree + reg).backward()
            left.grad = None

        for _ in range(5):
            ours()
        ours_peak = call_peak_bytes(ours, device)
        # first reference call: its time decides how many more it gets
        start = _clock(device)
        ref_peak = call_peak_bytes(ref, device)
        first = _clock(device) - start
        more = max(0, min(settings["tree_ref_max_reps"], int(settings["tree_ref_budget_s"] / max(first, 1e-9))) - 1)
        ours_times, ref_times = [], [first]
        per_round = max(1, settings["tree_ours_reps"] // (more + 1))
        ours_times += [_time_call(ours, device) for _ in range(per_round)]
        for _ in range(more):
            ref_times.append(_time_call(ref, device))
            ours_times += [_time_call(ours, device) for _ in range(per_round)]
        row = {
            "batch": batch,
            "depth": depth,
            "ours_ms": 1e3 * _median(ours_times),
            "ours_reps": len(ours_times),
            "reference_ms": 1e3 * _median(ref_times),
            "reference_reps": len(ref_times),
            "speedup": _median(ref_times) / _median(ours_times),
            "ours_peak_mib": None if ours_peak is None else ours_peak / MIB,
            "reference_peak_mib": None if ref_peak is None else ref_peak / MIB,
        }
        rows.append(row)
        log(
            f"  tree B={batch} D={depth}: ours {row['ours_ms']:.2f} ms ({row['ours_reps']}x), reference "
            f"{row['reference_ms']:.0f} ms ({row['reference_reps']}x), speed-up {row['speedup']:.0f}x, "
            f"peak memory {_fmt(row['ours_peak_mib'], '.1f')} vs {_fmt(row['reference_peak_mib'], '.0f')} MiB"
        )
        del left
        gc.collect()
    if not agreement:
        key = next((r for r in rows if (r["batch"], r["depth"]) == (512, 4)), None)
        return {"configs": rows, "speedup_b512_d4": None if key is None else key["speedup"]}
    agreement = _tree_agreement(device)
    log(
        f"  agreement (B=256, D=4, float32, pruned): tree loss |diff| {agreement['tree_loss']['abs_diff']:.2e}, "
        f"grad |diff| {agreement['tree_loss_grad_max_abs_diff']:.2e}; regulariser ours/reference "
        f"{agreement['regularizer']['ratio_ours_over_reference']:.6f}"
    )
    key = next((r for r in rows if (r["batch"], r["depth"]) == (512, 4)), None)
    return {"configs": rows, "agreement": agreement, "speedup_b512_d4": None if key is None else key["speedup"]}


# ------------------------------------------------------------------------------------ training steps
def make_trainer(X, depth, device, mixed_precision, seed=0):
    """A :class:`Trainer` for the default CNN on 28x28 grey images, as the estimator builds it."""
    source = BatchSource(X, infer_input_spec(X), device)
    mean, std = input_statistics(source)
    torch.manual_seed(seed)
    network, _ = build_network("auto", IMAGE_SHAPE, depth=depth, projection_dim=128, input_mean=mean, input_std=std)
    network.to(device)
    config = TrainingConfig(
        max_epochs=1,
        warmup_epochs=0,
        batch_size=BATCH,
        lr=1e-3,
        weight_decay=1e-6,
        mixed_precision=mixed_precision,
    )
    objective = CoHiClustObjective(
        depth=depth, n_leaves=2**depth, temperature=0.5, prune_start=0, prune_stop=1, tree_init="random"
    )
    augmentation = resolve_augmentation("auto", True, 1)
    trainer = Trainer(network, augmentation, source, config, objective, seed)
    objective.begin_epoch(trainer, "tree", None)  # an epoch's node mask and leaf tally (no tree start: "random")
    batches = _Cycle(_index_batches(len(X), BATCH, 16, seed))

    def step():
        trainer.step(source.take(batches()), "tree")

    return trainer, step


def make_backbone_limit(trainer, device):
    """The same backbone (a copy), forward and backward on 2 x 256 fixed views, ``.sum()``, Adam.

    The optimiser is the trainer's class with the trainer's settings (learning
    rate, weight decay, ``foreach``/``fused`` choice), over the backbone's
    parameters only.
    """
    network = copy.deepcopy(trainer.network)
    backbone = network.backbone
    defaults = trainer.optimizer.defaults
    settings = {k: defaults[k] for k in ("lr", "weight_decay", "foreach", "fused") if k in defaults}
    optimizer = type(trainer.optimizer)(backbone.parameters(), **settings)
    x = trainer.source.take(np.arange(BATCH))
    with torch.no_grad():
        views = network.prepare(torch.cat(trainer._views(x)))
    autocast = trainer.bfloat16  # the same precision as the trainer's steps

    def limit():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            h = backbone(views)
        h.float().sum().backward()
        optimizer.step()

    return limit


def bench_step(X, device, mixed_precision, settings, log):
    """Item ``step``: full training step against the backbone's bare forward + backward."""
    trainer, step = make_trainer(X, 4, device, mixed_precision)
    limit = make_backbone_limit(trainer, device)
    n = settings["step_per_round"]
    times = interleaved_times(
        {"step": step, "limit": limit}, settings["step_rounds"], {"step": n, "limit": n}, device, 2
    )
    step_s, limit_s = _median(times["step"]), _median(times["limit"])
    result = {
        "batch": BATCH,
        "depth": 4,
        "step_s": step_s,
        "limit_s": limit_s,
        "step_images_per_s": BATCH / step_s,
        "limit_images_per_s": BATCH / limit_s,
        "fraction_of_limit": _paired_ratio(_per_round(times["limit"], n), _per_round(times["step"], n)),
        "fraction_of_limit_ratio_of_medians": limit_s / step_s,
        "overhead_ms": 1e3 * (step_s - limit_s),
        "step_times_s": times["step"],
        "limit_times_s": times["limit"],
        "step_spread": _spread(times["step"]),
        "limit_spread": _spread(times["limit"]),
    }
    log(
        f"  step {result['step_images_per_s']:.0f} img/s, backbone limit {result['limit_images_per_s']:.0f} img/s: "
        f"{100 * result['fraction_of_limit']:.1f}% of the limit "
        f"({len(times['step'])} + {len(times['limit'])} interleaved)"
    )
    return result


#: The ``precision`` item's configurations: name -> (bfloat16 autocast, channels-last images).
PRECISIONS = {
    "float32, channels-first": (False, False),
    "float32, channels-last": (False, True),
    "bfloat16, channels-first": (True, False),
    "bfloat16, channels-last": (True, True),
}


def bench_precision(X, device, settings, log):
    """Item ``precision``: training steps in float32 / bfloat16, channels-first / -last, interleaved."""
    if not native_bfloat16(device):
        log("  skipped: no native bfloat16 on this device")
        return {"skipped": "no native bfloat16 on this device"}
    tasks = {}
    for name, (bfloat16, channels_last) in PRECISIONS.items():
        trainer, step = make_trainer(X, 4, device, bfloat16)
        if not channels_last:
            trainer.network.channels_last = False
            trainer.network.backbone.to(memory_format=torch.contiguous_format)
        tasks[name] = step
    times = interleaved_times(tasks, settings["precision_rounds"], dict.fromkeys(tasks, 1), device, 2)
    base = "float32, channels-first"
    rows = [
        {
            "configuration": name,
            "step_s": _median(times[name]),
            "images_per_s": BATCH / _median(times[name]),
            "speedup": _paired_ratio(times[base], times[name]),
        }
        for name in PRECISIONS
    ]
    for r in rows:
        log(f"  {r['configuration']}: {r['images_per_s']:.0f} img/s, {r['speedup']:.2f}x")
    return {"batch": BATCH, "depth": 4, "rows": rows, "times_s": times, "default_vs_float32": rows[-1]["speedup"]}


def _per_round(times, per_round):
    return [sum(times[i : i + per_round]) for i in range(0, len(times), per_round)]


def bench_depth(X, device, mixed_precision, settings, log):
    """Item ``depth``: step time per depth, interleaved, relative to depth 4."""
    depths = list(settings["depths"])
    if 4 not in depths:
        depths.append(4)
    tasks = {d: make_trainer(X, d, device, mixed_precision)[1] for d in depths}
    times = interleaved_times(tasks, settings["depth_rounds"], dict.fromkeys(depths, 1), device, 1)
    base = _median(times[4])
    rows = [
        {
            "depth": d,
            "step_s": _median(times[d]),
            "relative_to_depth4": _paired_ratio(times[d], times[4]),
            "relative_to_depth4_ratio_of_medians": _median(times[d]) / base,
            "reps": len(times[d]),
        }
        for d in depths
    ]
    log("  " + ", ".join(f"depth {r['depth']}: {r['step_s']:.3f} s ({r['relative_to_depth4']:.3f}x)" for r in rows))
    d8 = next((r for r in rows if r["depth"] == 8), None)
    return {"rows": rows, "depth8_vs_depth4": None if d8 is None else d8["relative_to_depth4"]}


# ------------------------------------------------------------------------------------ item: augmentation
class _AddNoise:
    """Gaussian noise on a tensor image (classic torchvision has no such transform)."""

    def __init__(self, sigma):
        self.sigma = sigma

    def __call__(self, x):
        return x + self.sigma * torch.randn_like(x)


class _PairDataset(torch.utils.data.Dataset):
    """Two independently transformed views of each image, as the reference code's datasets return."""

    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        from PIL import Image

        image = Image.fromarray(self.images[index])
        return self.transform(image), self.transform(image)


def _torchvision_transforms(preset):
    """Classic and v2 per-image pipelines of the preset's family."""
    import torchvision.transforms as T
    from torchvision.transforms import v2

    bilinear = T.InterpolationMode.BILINEAR
    # our scale is the sampled window's side; torchvision's is the zoom of the image (its inverse)
    affine = dict(
        degrees=preset.rotation,
        translate=(preset.translate, preset.translate),
        scale=(1.0 / preset.scale[1], 1.0 / preset.scale[0]),
        shear=preset.shear,
        interpolation=bilinear,
    )
    jitter = dict(brightness=preset.brightness, contrast=preset.contrast)
    classic = T.Compose(
        [
            T.RandomAffine(**affine),
            T.RandomApply([T.ColorJitter(**jitter)], p=preset.jitter_p),
            T.ToTensor(),
            _AddNoise(preset.noise),
        ]
    )
    new = v2.Compose(
        [
            v2.ToImage(),
            v2.RandomAffine(**affine),
            v2.RandomApply([v2.ColorJitter(**jitter)], p=preset.jitter_p),
            v2.ToDtype(torch.float32, scale=True),
            v2.GaussianNoise(sigma=preset.noise, clip=False),
        ]
    )
    return {"classic": classic, "v2": new}


def bench_augment(X, device, settings, log):
    """Item ``augment``: batched on-device views against a DataLoader of per-image torchvision views.

    Each pipeline is timed over ``augment_batches`` batches per round, or
    fewer (at least one) when one batch takes longer than
    ``augment_budget_s / augment_batches``; images per second are
    normalised by the count.
    """
    preset = resolve_augmentation("auto", True, 1)
    source = BatchSource(X, infer_input_spec(X), device)
    generator = torch.Generator(device=device).manual_seed(0)
    batches = _Cycle(_index_batches(len(X), BATCH, 16))

    def ours_one():
        x = source.take(batches())
        return preset(x, generator, IMAGE_SHAPE[1:]), preset(x, generator, IMAGE_SHAPE[1:])

    pipelines = {"ours": (ours_one, None)}
    transforms = _torchvision_transforms(preset)
    failures = {}
    for name, transform, workers in (("classic_w0", "classic", 0), ("classic_w2", "classic", 2), ("v2_w0", "v2", 0)):
        loader = torch.utils.data.DataLoader(
            _PairDataset(X, transforms[transform]),
            batch_size=BATCH,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
            persistent_workers=workers > 0,
            pin_memory=device.type == "cuda",
        )
        state = {"it": iter(loader)}

        def take(loader=loader, state=state):
            try:
                v1, v2 = next(state["it"])
            except StopIteration:
                state["it"] = iter(loader)
                v1, v2 = next(state["it"])
            return v1.to(device, non_blocking=True), v2.to(device, non_blocking=True)

        # worker processes keep filling their queues while the other pipelines are timed; the
        # batches made meanwhile (prefetch_factor per worker) are taken, untimed, before each timing
        ahead = workers * (loader.prefetch_factor or 2)
        drain = (lambda take=take, ahead=ahead: [take() for _ in range(ahead)]) if workers else None
        pipelines[name] = (take, drain)

    tasks, counts = {}, {}
    per_batch_budget = settings["augment_budget_s"] / settings["augment_batches"]
    for name, (one, drain) in pipelines.items():
        try:
            if drain is not None:
                one()  # starts the workers
                drain()
            seconds = _time_call(one, device)  # checks the pipeline works here, and how long a batch takes
        except Exception as exc:  # e.g. no shared memory for worker processes
            failures[name] = f"{type(exc).__name__}: {exc}"
            log(f"  {name} skipped: {failures[name]}")
            continue
        counts[name] = max(
            1, min(settings["augment_batches"], int(per_batch_budget * settings["augment_batches"] / seconds))
        )

        def run(one=one, count=counts[name]):
            for _ in range(count):
                one()

        tasks[name] = run if drain is None else _WithPreparation(run, drain)
    times = interleaved_times(tasks, settings["augment_rounds"], dict.fromkeys(tasks, 1), device, 0)
    rates = {name: counts[name] * BATCH / _median(t) for name, t in times.items()}
    best = max((k for k in rates if k != "ours"), key=rates.get)
    paired = _paired_ratio([t / counts[best] for t in times[best]], [t / counts["ours"] for t in times["ours"]])
    result = {
        "images_per_s": rates,
        "batches_per_measure": counts,
        "views_per_image": 2,
        "batch": BATCH,
        "best_torchvision": best,
        "ours_vs_best_torchvision": paired,
        "ours_vs_best_torchvision_ratio_of_medians": rates["ours"] / rates[best],
        "ours_vs_classic_w0": rates["ours"] / rates["classic_w0"] if "classic_w0" in rates else None,
        "failures": failures,
    }
    log(
        "  images/s (two views each): "
        + ", ".join(f"{k} {v:.0f}" for k, v in rates.items())
        + f"; ours / best torchvision ({best}) = {result['ours_vs_best_torchvision']:.1f}x"
    )
    return result


# ------------------------------------------------------------------------------------ item: one thread
def bench_single_thread(X, device, settings, log):
    """Item ``single-thread``: the tree, step, augmentation and depth-8 ratios again with one torch thread.

    On a CPU that other processes keep busy, every OpenMP parallel region of
    a multi-threaded op waits for a core (measured here: ~16 ms for a
    ``sqrt`` of 30,000 floats with 2 threads, 13 us with 1), so the ratios
    at the default thread count measure how many parallel regions each side
    opens as much as the work it does.  With one thread they measure the work.
    """
    if device.type != "cpu":
        return {"skipped": "CPU only"}
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        tree = bench_tree(
            device, dict(settings, tree_configs=[(512, 4)], tree_ref_max_reps=settings["single_ref_reps"]), log, False
        )
        step = bench_step(
            X, device, False, dict(settings, step_rounds=settings["single_step_rounds"], step_per_round=1), log
        )
        augment = bench_augment(X, device, dict(settings, augment_rounds=settings["single_augment_rounds"]), log)
        depth = bench_depth(
            X, device, False, dict(settings, depths=(4, 8), depth_rounds=settings["single_step_rounds"]), log
        )
    finally:
        torch.set_num_threads(previous)
    return {
        "torch_threads": 1,
        "tree": tree,
        "step": step,
        "augment": augment,
        "depth": depth,
        "depth8_vs_depth4": depth["depth8_vs_depth4"],
        "tree_loss_speedup_b512_d4": tree["speedup_b512_d4"],
        "step_vs_backbone_limit": step["fraction_of_limit"],
        "augment_vs_dataloader": augment["ours_vs_best_torchvision"],
    }


# ------------------------------------------------------------------------------------ item: memory (child processes)
def _child_fit(args):
    """Child: fit on all rows, peak RSS per epoch and overall; predict/transform throughput."""
    from skcohiclust import CoHiClust
    from skcohiclust.callbacks import Callback

    X, source = load_images(args["rows"])
    device = args["device"]
    gc.collect()
    load_peak = peak_rss_bytes()
    base = rss_bytes()
    can_reset = reset_peak_rss()
    epoch_peaks = []

    class _EpochPeak(Callback):
        def on_epoch_end(self, history, network):
            epoch_peaks.append(peak_rss_bytes())
            reset_peak_rss()

    truncated = False
    if args["batches"]:
        original = getattr(Trainer, "_batches", None)
        if original is not None:
            Trainer._batches = lambda self: original(self)[: args["batches"]]
            truncated = True
    model = CoHiClust(
        depth=4,
        n_clusters=10,
        max_epochs=args["epochs"],
        batch_size=BATCH,
        random_state=0,
        device=device,
        callbacks=[_EpochPeak()],
    )
    start = time.perf_counter()
    model.fit(X)
    fit_s = time.perf_counter() - start
    after_training = peak_rss_bytes()  # since the last epoch's end: the end-of-fit pass over all rows
    fit_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {
        "rows": int(X.shape[0]),
        "data": source,
        "data_mib": X.nbytes / MIB,
        "epochs": args["epochs"],
        "batches_per_epoch": args["batches"] if truncated else max(1, len(X) // BATCH),
        "full_epochs": not truncated,
        "fit_s": fit_s,
        "load_peak_rss_gib": load_peak / GIB,
        "rss_before_fit_gib": base / GIB,
        # the process's peak since it started (loading the data included): getrusage's maxrss, or a
        # VmHWM reading when higher (maxrss holds the high-water mark as of the last unmapping or
        # thread exit, VmHWM also the resident size at the moment it is read)
        "fit_peak_rss_gib": max([fit_peak, load_peak, *epoch_peaks, after_training]) / GIB,
        "ru_maxrss_gib": fit_peak / GIB,
        "epoch_peak_rss_gib": [p / GIB for p in epoch_peaks] if can_reset else None,
        "end_of_fit_peak_rss_gib": after_training / GIB if can_reset else None,
    }
    if device.startswith("cuda"):
        out["fit_peak_cuda_gib"] = torch.cuda.max_memory_allocated() / GIB
    if not args.get("throughput_rows"):
        return out
    rows = X[: args["throughput_rows"]]
    model.predict(rows[:1024])  # warm-up
    gc.collect()
    before = rss_bytes()
    reset_peak_rss()
    start = time.perf_counter()
    model.predict(rows)
    out["predict_s"] = time.perf_counter() - start
    out["predict_extra_peak_mib"] = (peak_rss_bytes() - before) / MIB
    start = time.perf_counter()
    model.transform(rows)
    out["transform_s"] = time.perf_counter() - start
    out["throughput_rows"] = int(rows.shape[0])
    out["predict_rows_per_s"] = rows.shape[0] / out["predict_s"]
    out["transform_rows_per_s"] = rows.shape[0] / out["transform_s"]
    return out


def _child_predict_memory(args):
    """Child: RSS a ``predict`` call adds on ``rows`` rows (a small model, fitted on a few rows)."""
    from torch import nn

    from skcohiclust import CoHiClust

    base_images, source = load_images(70000)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 64), nn.ReLU())
    model = CoHiClust(depth=4, n_clusters=10, backbone=backbone, max_epochs=1, random_state=0, device=args["device"])
    model.fit(base_images[:2048])
    n = args["rows"]
    X = np.tile(base_images, (-(-n // len(base_images)), 1, 1))[:n] if n > len(base_images) else base_images[:n]
    X = np.ascontiguousarray(X)
    del base_images
    model.predict(X[:1024])
    gc.collect()
    before = rss_bytes()
    if not reset_peak_rss():
        return {"rows": n, "error": "cannot reset the peak RSS mark (/proc/self/clear_refs)"}
    start = time.perf_counter()
    labels = model.predict(X)
    seconds = time.perf_counter() - start
    extra = peak_rss_bytes() - before
    outputs = n * model.n_clusters_ * 4 + labels.nbytes  # predict_proba's float32 array, then the labels
    return {
        "rows": n,
        "input_mib": X.nbytes / MIB,
        "predict_s": seconds,
        "extra_peak_mib": extra / MIB,
        "output_mib": outputs / MIB,
        "extra_beyond_outputs_mib": (extra - outputs) / MIB,
        "data": source,
        "model": "depth 4, Flatten-Linear(784, 64)-ReLU backbone (memory scaling only)",
    }


CHILDREN = {"fit": _child_fit, "predict-memory": _child_predict_memory}


def _run_child(kind, args, log, timeout=1800):
    command = [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-5:]
        log(f"  child {kind} failed ({done.returncode}): " + " | ".join(tail))
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_memory(device, settings, log):
    """Item ``memory``: fit peak RSS, predict/transform throughput, predict memory scaling."""
    fit = _run_child(
        "fit",
        {
            "rows": settings["fit_rows"],
            "epochs": settings["fit_epochs"],
            "batches": settings["fit_batches"],
            "throughput_rows": settings["throughput_rows"],
            "device": str(device),
        },
        log,
    )
    if "error" not in fit:
        _log_fit(fit, log)
        log(
            f"  predict {fit['predict_rows_per_s']:.0f} rows/s, transform {fit['transform_rows_per_s']:.0f} rows/s "
            f"({fit['throughput_rows']} rows, default CNN)"
        )
    # the peak does not grow with epochs (nor with steps): the same fit on a subset, 1 and 2 epochs
    epochs_check = []
    for epochs in (1, 2):
        row = _run_child(
            "fit",
            {
                "rows": settings["epochs_check_rows"],
                "epochs": epochs,
                "batches": settings["fit_batches"],
                "throughput_rows": 0,
                "device": str(device),
            },
            log,
        )
        epochs_check.append(row)
        if "error" not in row:
            _log_fit(row, log)
    scaling = []
    for rows in settings["predict_memory_rows"]:
        row = _run_child("predict-memory", {"rows": rows, "device": str(device)}, log)
        scaling.append(row)
        if "error" not in row:
            log(
                f"  predict on {rows} rows (input {row['input_mib']:.0f} MiB): +{row['extra_peak_mib']:.1f} MiB peak, "
                f"outputs {row['output_mib']:.1f} MiB, beyond outputs {row['extra_beyond_outputs_mib']:.1f} MiB"
            )
    return {"fit": fit, "epochs_check": epochs_check, "predict_memory": scaling}


def _log_fit(fit, log):
    log(
        f"  fit on {fit['rows']} rows ({fit['epochs']} epoch(s) of {fit['batches_per_epoch']} batches, "
        f"{fit['fit_s']:.0f} s): process peak RSS {fit['fit_peak_rss_gib']:.2f} GiB (loading the data "
        f"{fit['load_peak_rss_gib']:.2f}, before fit {fit['rss_before_fit_gib']:.2f}); VmHWM per epoch "
        f"{_fmt_list(fit['epoch_peak_rss_gib'])}, end-of-fit pass {_fmt(fit['end_of_fit_peak_rss_gib'], '.2f')} GiB"
    )


# ------------------------------------------------------------------------------------ profile
def profile_steps(X, device, mixed_precision, log, steps=3):
    """Print torch.profiler's table of a few training steps (depth 4, batch 256)."""
    from torch.profiler import ProfilerActivity, profile

    _, step = make_trainer(X, 4, device, mixed_precision)
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=25)
    log(table)
    return table


# ------------------------------------------------------------------------------------ report
def _fmt(value, spec):
    if value is None:
        return "–"
    if spec == ".1f" and 0 <= value < 0.05:
        return "<0.1"
    return format(value, spec)


def _fmt_list(values):
    return "–" if not values else "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def _met(value, ok):
    if value is None:
        return "not measured"
    return "yes" if ok(value) else "**no**"


def _overhead(step) -> str:
    ms = step["overhead_ms"]
    if ms < 0:
        return f"costs nothing measurable (the medians differ by {ms:.0f} ms, within the noise)"
    return f"adds {ms:.0f} ms"


def headline(results: dict) -> dict:
    """The numeric keys of the issue, from the per-item results."""
    tree, step, aug = results.get("tree", {}), results.get("step", {}), results.get("augment", {})
    depth, memory = results.get("depth", {}), results.get("memory", {})
    fit = memory.get("fit", {}) if memory else {}
    single = results.get("single-thread", {})
    return {
        "tree_loss_speedup_b512_d4": tree.get("speedup_b512_d4"),
        "step_vs_backbone_limit": step.get("fraction_of_limit"),
        "augment_vs_dataloader": aug.get("ours_vs_best_torchvision"),
        "depth8_vs_depth4": depth.get("depth8_vs_depth4"),
        "bfloat16_channels_last_vs_float32": results.get("precision", {}).get("default_vs_float32"),
        "fit_fmnist_peak_rss_gib": fit.get("fit_peak_rss_gib"),
        "predict_rows_per_s": fit.get("predict_rows_per_s"),
        "tree_loss_speedup_b512_d4_1thread": single.get("tree_loss_speedup_b512_d4"),
        "step_vs_backbone_limit_1thread": single.get("step_vs_backbone_limit"),
        "augment_vs_dataloader_1thread": single.get("augment_vs_dataloader"),
        "depth8_vs_depth4_1thread": single.get("depth8_vs_depth4"),
    }


def summary_rows(results: dict):
    """Rows of the main table: measure, bar, measured, met, what limits it."""
    h = headline(results)
    tree, step, aug = results.get("tree", {}), results.get("step", {}), results.get("augment", {})
    memory = results.get("memory", {})
    fit = memory.get("fit", {}) if memory else {}
    rows = []
    t = h["tree_loss_speedup_b512_d4"]
    agreement = tree.get("agreement", {})
    reg_ratio = agreement.get("regularizer", {}).get("ratio_ours_over_reference")
    limit = "reference: (2B)² gathers and pair-wise products per level; ours: O(B·2^D) sums, a few dozen small ops"
    if reg_ratio is not None and abs(reg_ratio - 1) > 1e-4:
        limit += f"; NB the package's regulariser is {reg_ratio:.3g}× the published one (level weights)"
    rows.append(
        [
            "Tree loss fwd+bwd, B=512, D=4, vs pair-by-pair reference",
            f"≥ {BAR_TREE_SPEEDUP:.0f}×",
            _fmt(t, ".0f") + ("×" if t else ""),
            _met(t, lambda v: v >= BAR_TREE_SPEEDUP),
            limit,
        ]
    )
    single = results.get("single-thread", {})
    t1 = h["tree_loss_speedup_b512_d4_1thread"]
    if t1 is not None:
        c = single["tree"]["configs"][0]
        rows.append(
            [
                "… the same with 1 torch thread",
                f"≥ {BAR_TREE_SPEEDUP:.0f}×",
                f"{t1:.0f}×",
                _met(t1, lambda v: v >= BAR_TREE_SPEEDUP),
                f"ours {c['ours_ms']:.2f} ms vs reference {c['reference_ms']:.0f} ms",
            ]
        )
    s = h["step_vs_backbone_limit"]
    measured = (
        "–"
        if s is None
        else (f"{100 * s:.1f}% (medians {step['step_images_per_s']:.0f} vs {step['limit_images_per_s']:.0f} img/s)")
    )
    rows.append(
        [
            "Training step (batch 256, default CNN, 28×28) vs backbone fwd+bwd limit",
            f"≥ {100 * BAR_STEP_FRACTION:.0f}%",
            measured,
            _met(s, lambda v: v >= BAR_STEP_FRACTION),
            "the backbone's convolutions; the rest of the step (views, heads, losses, Adam on all) "
            + ("" if s is None else _overhead(step)),
        ]
    )
    s1 = h["step_vs_backbone_limit_1thread"]
    if s1 is not None:
        st = single["step"]
        rows.append(
            [
                "… the same with 1 torch thread",
                f"≥ {100 * BAR_STEP_FRACTION:.0f}%",
                f"{100 * s1:.1f}% ({st['step_images_per_s']:.0f} vs {st['limit_images_per_s']:.0f} img/s)",
                _met(s1, lambda v: v >= BAR_STEP_FRACTION),
                "the rest of the step " + _overhead(st),
            ]
        )
    precision = results.get("precision", {})
    if precision.get("rows"):
        first, last = precision["rows"][0], precision["rows"][-1]
        rows.append(
            [
                "Training step: bfloat16 autocast + channels-last (default here) vs float32 channels-first",
                "report",
                f"{last['speedup']:.2f}× ({last['images_per_s']:.0f} vs {first['images_per_s']:.0f} img/s)",
                "–",
                "oneDNN's bfloat16 and channels-last convolutions (AVX512-BF16); see the table below",
            ]
        )
    a = h["augment_vs_dataloader"]
    measured = (
        "–"
        if a is None
        else (
            f"{a:.1f}× ({aug['images_per_s']['ours']:.0f} vs {aug['images_per_s'][aug['best_torchvision']]:.0f} img/s, "
            f"best torchvision = {aug['best_torchvision']})"
        )
    )
    rows.append(
        [
            "Two views per image: batched augmentation vs per-image torchvision + DataLoader",
            "report",
            measured,
            "–",
            "ours: one grid_sample per batch; torchvision: PIL affine per image, collation",
        ]
    )
    a1 = h["augment_vs_dataloader_1thread"]
    if a1 is not None:
        au = single["augment"]
        rows.append(
            [
                "… the same with 1 torch thread (DataLoader workers always use 1)",
                "report",
                f"{a1:.1f}× ({au['images_per_s']['ours']:.0f} vs "
                f"{au['images_per_s'][au['best_torchvision']]:.0f} img/s, "
                f"best = {au['best_torchvision']})",
                "–",
                "–",
            ]
        )
    d = h["depth8_vs_depth4"]
    rows.append(
        [
            "Step time, depth 8 vs depth 4",
            f"≤ {BAR_DEPTH8}×",
            _fmt(d, ".3f") + ("×" if d else ""),
            _met(d, lambda v: v <= BAR_DEPTH8),
            "the tree terms at depth 8 work on (2B × 510) tensors: each of their ops is a parallel region",
        ]
    )
    d1 = h["depth8_vs_depth4_1thread"]
    if d1 is not None:
        rows.append(
            [
                "… the same with 1 torch thread",
                f"≤ {BAR_DEPTH8}×",
                f"{d1:.3f}×",
                _met(d1, lambda v: v <= BAR_DEPTH8),
                "the backbone; the tree costs O(B·2^D) and stays small",
            ]
        )
    f = h["fit_fmnist_peak_rss_gib"]
    note = ""
    if fit and "error" not in fit:
        note = (
            f"all {fit['rows']:,} images in one process (data {fit['data_mib']:.0f} MiB, process before fit "
            f"{fit['rss_before_fit_gib']:.2f} GiB), {fit['epochs']} epoch of {fit['batches_per_epoch']} batches"
            f"{'' if fit['full_epochs'] else ' (cut short)'} then the end-of-fit pass over all images"
        )
        check = [r for r in (memory.get("epochs_check") or []) if "error" not in r]
        if len(check) == 2:
            note += (
                f"; on {check[0]['rows']:,} images: {check[0]['fit_peak_rss_gib']:.2f} GiB with 1 epoch, "
                f"{check[1]['fit_peak_rss_gib']:.2f} GiB with 2"
            )
    rows.append(
        [
            "Peak RSS of `fit` on Fashion-MNIST",
            f"< {BAR_FIT_RSS_GIB:.0f} GiB",
            _fmt(f, ".2f") + (" GiB" if f else ""),
            _met(f, lambda v: v < BAR_FIT_RSS_GIB),
            note or "–",
        ]
    )
    p = h["predict_rows_per_s"]
    measured = "–" if p is None else f"{p:.0f} rows/s (transform {fit['transform_rows_per_s']:.0f})"
    rows.append(
        [
            "`predict` / `transform` throughput, default CNN",
            "report",
            measured,
            "–",
            "the backbone's forward, batches of 1024",
        ]
    )
    scaling = [r for r in (memory.get("predict_memory") or []) if "error" not in r]
    if scaling:
        measured = "; ".join(f"{r['rows']:,} rows: {r['extra_beyond_outputs_mib']:+.1f} MiB" for r in scaling)
        flat = (
            len(scaling) > 1
            and abs(scaling[-1]["extra_beyond_outputs_mib"] - scaling[0]["extra_beyond_outputs_mib"]) < 64
        )
        rows.append(
            [
                "`predict` peak memory beyond its output arrays",
                "must not grow with n",
                measured,
                "yes" if flat else "**no**",
                "batched (1024 rows); input checked without a copy",
            ]
        )
    return rows


def markdown_section(results, command):
    machine = results["machine"]
    lines = [
        "## Speed and memory",
        "",
        f"Measured on {machine_summary(machine)}; device `{machine['device']}`, torch threads "
        f"{machine['torch_threads']}. Command: `{command}`. Date: {machine['date']}.",
        "",
    ]
    earlier = sorted(
        {
            (v["date"], v["command"])
            for k, v in results.items()
            if isinstance(v, dict) and "command" in v and v["command"] != command
        }
    )
    if earlier:
        lines += [
            "Items measured by earlier runs: "
            + "; ".join(
                f"{', '.join(k for k, v in results.items() if isinstance(v, dict) and v.get('command') == c)}"
                f" (`{c}`, {d})"
                for d, c in earlier
            ),
            "",
        ]
    load = results.get("load_average")
    if load:
        lines += [
            f"1-minute load average {load['start']:.1f} at the start and {load['end']:.1f} at the end on "
            f"{machine['usable_cores']} cores"
            + (
                ": **the machine was shared**, absolute times are noisy; the ratios, measured side by side and "
                "interleaved, are what count."
                if results.get("shared_machine")
                else "."
            ),
            "",
        ]
    probe = results.get("contention_probe")
    if probe:
        threads = machine["torch_threads"]
        start, end = probe["start"], probe["end"]
        lines += [
            f"Contention probe (a `sqrt` of 30,720 floats, median, at the start / end of the run): "
            f"{_fmt(start.get(f'sqrt_us_{threads}_threads'), '.0f')} / "
            f"{_fmt(end.get(f'sqrt_us_{threads}_threads'), '.0f')} µs "
            f"with {threads} threads, {start['sqrt_us_1_threads']:.0f} / {end['sqrt_us_1_threads']:.0f} µs with 1. "
            "When other processes keep the cores busy, each OpenMP "
            "parallel region of a multi-threaded torch op waits for a core, so at the default thread count a ratio "
            "also counts how many parallel regions each side opens; the rows marked *1 torch thread* measure the "
            "work alone.",
            "",
        ]
    lines += [
        markdown_table(["Measure", "Bar", "Measured", "Met", "What limits it / notes"], summary_rows(results)),
        "",
    ]
    tree = results.get("tree")
    if tree:
        lines += [
            "Tree terms (hierarchical loss + weighted regulariser), forward and backward from the tree head's "
            "outputs for the 2B views, float32, default threads. The reference (`benchmarks/reference_loss.py`) "
            "re-implements the published algorithm (node probabilities walked node by node, (2B)² explicit pair "
            "lists, batched products), kinder to itself than the published code (pair lists built once per call, "
            "node probabilities shared by the two terms), so the speed-ups are lower bounds. Where one reference "
            "call is long it is timed fewer times (column *reference calls*). Peak memory: what one call adds to "
            "the resident set.",
            "",
        ]
        lines.append(
            markdown_table(
                [
                    "B",
                    "depth",
                    "ours (ms)",
                    "reference (ms)",
                    "reference calls",
                    "speed-up",
                    "peak memory ours / reference (MiB)",
                ],
                [
                    [
                        r["batch"],
                        r["depth"],
                        f"{r['ours_ms']:.2f}",
                        f"{r['reference_ms']:.0f}",
                        r["reference_reps"],
                        f"{r['speedup']:.0f}×",
                        f"{_fmt(r['ours_peak_mib'], '.1f')} / {_fmt(r['reference_peak_mib'], '.0f')}",
                    ]
                    for r in tree["configs"]
                ],
            )
        )
        a = tree["agreement"]
        lines += [
            "",
            (
                f"Agreement at B={a['batch']}, D={a['depth']} with 3 leaves pruned (float32): hierarchical loss |Δ| = "
                f"{a['tree_loss']['abs_diff']:.1e}, its gradient max |Δ| = {a['tree_loss_grad_max_abs_diff']:.1e} "
                f"(max |grad| {a['tree_loss_grad_max_abs']:.1e}); regulariser ours / reference = "
                f"{a['regularizer']['ratio_ours_over_reference']:.6f}, gradient max |Δ| = "
                f"{a['regularizer_grad_max_abs_diff']:.1e}. `tests/test_reference_loss.py` checks both in float64."
            ),
            "",
        ]
    precision = results.get("precision", {})
    if precision.get("rows"):
        lines += [
            "Training step (batch 256, depth 4, default CNN, 28×28) by precision and memory order "
            "(interleaved, median; speed-up: median over rounds of the paired ratio):",
            "",
        ]
        lines.append(
            markdown_table(
                ["configuration", "step (s)", "images/s", "speed-up"],
                [
                    [r["configuration"], f"{r['step_s']:.3f}", f"{r['images_per_s']:.0f}", f"{r['speedup']:.2f}×"]
                    for r in precision["rows"]
                ],
            )
        )
        lines.append("")
    depth = results.get("depth")
    if depth:
        lines += ["Training step time by depth (interleaved, median):", ""]
        lines.append(
            markdown_table(
                ["depth", "step (s)", "relative to depth 4"],
                [[r["depth"], f"{r['step_s']:.3f}", f"{r['relative_to_depth4']:.3f}"] for r in depth["rows"]],
            )
        )
        lines.append("")
    aug = results.get("augment")
    if aug:
        lines += ["Two augmented views per image, images per second (batch 256):", ""]
        lines.append(
            markdown_table(["pipeline", "images/s"], [[k, f"{v:.0f}"] for k, v in aug["images_per_s"].items()])
        )
        lines.append("")
    return "\n".join(lines)


def print_table(results):
    print()
    print(f"{'measure':<78} {'bar':>20}  measured  (met)")
    for measure, bar, measured, met, _ in summary_rows(results):
        print(f"{measure:<78} {bar:>20}  {measured}  ({met})")
    print()


def contention_probe(reps: int = 25) -> dict:
    """Median time of one small parallelisable op (``sqrt`` of 30,720 floats) at the default and at 1 thread.

    On an idle machine both take microseconds; when other processes keep
    the cores busy, the multi-threaded one waits for a core at every call.
    """
    x = torch.rand(1024, 30)
    out = {}
    threads = torch.get_num_threads()
    for n in (threads, 1):
        torch.set_num_threads(n)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            torch.sqrt(x)
            times.append(time.perf_counter() - start)
        out[f"sqrt_us_{n}_threads"] = 1e6 * _median(times)
    torch.set_num_threads(threads)
    return out


def _load_average():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# ------------------------------------------------------------------------------------ main
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run (small settings, results/speed-quick.json)"
    )
    parser.add_argument("--items", nargs="+", choices=ITEMS, default=list(ITEMS), help="which items to run")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda (bfloat16 mixed precision)")
    parser.add_argument(
        "--fit-batches", type=int, default=None, help="batches per epoch of the memory fit (0: whole epochs)"
    )
    parser.add_argument("--fit-epochs", type=int, default=None, help="epochs of the memory fit")
    parser.add_argument(
        "--profile", action="store_true", help="print a torch.profiler table of 3 training steps and exit"
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="JSON file (default results/speed.json, or speed-quick.json)"
    )
    parser.add_argument(
        "--markdown", type=Path, default=None, help="markdown file (default BENCHMARKS.md; none with --quick)"
    )
    parser.add_argument("--no-markdown", action="store_true", help="do not write the markdown table")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](json.loads(args.child[1]))))
        return None
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but CUDA is not available here.")
    mixed = native_bfloat16(device)  # the estimator's default (mixed_precision=True) on this device
    settings = dict(SETTINGS["quick" if args.quick else "full"])
    if args.fit_batches is not None:
        settings["fit_batches"] = args.fit_batches
    if args.fit_epochs is not None:
        settings["fit_epochs"] = args.fit_epochs

    def log(text):
        print(text, flush=True)

    machine = machine_description(str(device))
    log(f"{machine_summary(machine)}; device {device}{' (bfloat16 autocast)' if mixed else ''}")
    X, data = load_images(10000 if not args.quick else 4096)
    if args.profile:
        profile_steps(X, device, mixed, log)
        return None

    results_path = args.results or RESULTS_DIR / ("speed-quick.json" if args.quick else "speed.json")
    markdown = None if args.no_markdown else args.markdown or (None if args.quick else BENCHMARKS_MD)
    command = command_line("speed.py", argv)
    results = read_json(results_path, default={}) or {}
    for item in ITEMS:  # items of an earlier run keep the command that measured them
        if isinstance(results.get(item), dict) and "command" not in results[item]:
            results[item]["command"] = results.get("command")
    load_start = _load_average()
    probe_start = contention_probe() if device.type == "cpu" else None
    started = time.perf_counter()
    for item in args.items:
        log(f"[{item}] {time.strftime('%H:%M:%S')}")
        item_start = time.perf_counter()
        item_load = _load_average()
        if item == "tree":
            out = bench_tree(device, settings, log)
        elif item == "step":
            out = bench_step(X, device, mixed, settings, log)
        elif item == "precision":
            out = bench_precision(X, device, settings, log)
        elif item == "augment":
            out = bench_augment(X, device, settings, log)
        elif item == "depth":
            out = bench_depth(X, device, mixed, settings, log)
        elif item == "single-thread":
            out = bench_single_thread(X, device, settings, log)
        else:
            out = bench_memory(device, settings, log)
        out["seconds"] = time.perf_counter() - item_start
        out["date"] = machine["date"]
        out["command"] = command
        out["load_average"] = [item_load, _load_average()]
        out["data"] = data if item != "tree" else "random tree-head outputs"
        results[item] = out
        gc.collect()
    load_end = _load_average()
    if probe_start is not None:
        results["contention_probe"] = {"start": probe_start, "end": contention_probe()}
    results["machine"] = machine
    results["command"] = command
    results["quick"] = bool(args.quick)
    results["load_average"] = {"start": load_start, "end": load_end}
    results["shared_machine"] = bool(max(load_start, load_end) > 1.25 * (machine.get("usable_cores") or 1))
    results["seconds"] = time.perf_counter() - started
    results.update(headline(results))
    write_json(results_path, results)
    print_table(results)
    log(f"results written to {results_path} ({results['seconds']:.0f} s)")
    if markdown is not None:
        replace_section("speed", markdown_section(results, command), markdown)
        log(f"table written to {markdown}")
    return results


if __name__ == "__main__":
    main()
