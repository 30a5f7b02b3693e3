"""What the default CNN's channel counts cost on a CPU: BatchNorm in channels-last memory order.

The default CNN runs channels-last in bfloat16 (``benchmarks/speed.py``,
"precision").  A profile of its training step at 24×24 spends about 30% of
the time in ``native_batch_norm_backward``, most of it in the first stage's
layer of 24 channels.  This script times, side by side in one process
(interleaved rounds, medians):

``batchnorm``
    ``BatchNorm2d`` forward and backward on ``(256, C, 24, 24)`` bfloat16
    activations for ``C`` in 16, 24, 32, 48, channels-first and
    channels-last, with the ratio channels-last / channels-first.
``step``
    The CNN's training step (forward, backward and Adam on 256 views of
    24×24 colour images, bfloat16 autocast where native, channels-last) for
    width 16, 24 (the default) and 32, and width 24 with its first block
    (convolution, BatchNorm, ReLU) channels-first, each as a ratio to width
    24.

Numbers go to ``results/batchnorm-layout.json`` (or ``--output``) and a
table in ``BENCHMARKS.md``::

    python benchmarks/batchnorm_layout.py [--rounds 5] [--threads 2] [--output FILE] [--no-markdown]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import RESULTS_DIR, command_line, machine_description, markdown_table, replace_section, write_json
from speed import _median, _paired_ratio, interleaved_times

from skcohiclust.networks import SmallCNN
from skcohiclust.training import native_bfloat16

CHANNELS = (16, 24, 32, 48)
WIDTHS = (16, 24, 32)
BATCH, SIDE = 256, 24


class _ChannelsLast(torch.nn.Module):
    def forward(self, x):
        return x.contiguous(memory_format=torch.channels_last)


def batchnorm_task(channels: int, memory_format, generator):
    """BatchNorm2d forward and backward on bfloat16 activations in ``memory_format``."""
    layer = torch.nn.BatchNorm2d(channels)
    x = torch.randn(BATCH, channels, SIDE, SIDE, generator=generator).bfloat16()
    x = x.contiguous(memory_format=memory_format).requires_grad_()
    grad = torch.ones_like(x)

    def run():
        layer(x).backward(grad)

    return run


def cnn_step_task(width: int, first_block_channels_first: bool, generator):
    """One training step of the default CNN (width ``width``) on 256 random 24×24 colour views."""
    torch.manual_seed(0)
    network = SmallCNN(3, width).to(memory_format=torch.channels_last)
    features = network.features
    if first_block_channels_first:
        conv = features[0][0]
        conv.weight.data = conv.weight.data.contiguous()
        network.features = torch.nn.Sequential(features[0], _ChannelsLast(), *list(features)[1:])
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    x = torch.rand(BATCH, 3, SIDE, SIDE, generator=generator)
    if not first_block_channels_first:
        x = x.contiguous(memory_format=torch.channels_last)
    bfloat16 = native_bfloat16(torch.device("cpu"))

    def run():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            out = network(x)
        optimizer.zero_grad(set_to_none=True)
        out.float().sum().backward()
        optimizer.step()

    return run


def _ms(seconds) -> float:
    return round(1000 * _median(seconds), 2)


def _paired(numerator, denominator) -> float:
    return round(_paired_ratio(numerator, denominator), 3)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="calls of each task per round")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--output", type=Path, default=RESULTS_DIR / "batchnorm-layout.json", help="the JSON file to write"
    )
    parser.add_argument("--no-markdown", action="store_true")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    layouts = {"CF": torch.contiguous_format, "CL": torch.channels_last}
    tasks = {f"{c} {name}": batchnorm_task(c, fmt, generator) for c in CHANNELS for name, fmt in layouts.items()}
    times = interleaved_times(tasks, args.rounds, dict.fromkeys(tasks, args.repeats), device, warmup=2)
    batchnorm = [
        {
            "channels": c,
            "channels_first_ms": _ms(times[f"{c} CF"]),
            "channels_last_ms": _ms(times[f"{c} CL"]),
            "last_over_first": _paired(times[f"{c} CL"], times[f"{c} CF"]),
        }
        for c in CHANNELS
    ]
    steps = {f"width {w}": cnn_step_task(w, False, generator) for w in WIDTHS}
    steps["width 24, first block channels-first"] = cnn_step_task(24, True, generator)
    times = interleaved_times(steps, args.rounds, dict.fromkeys(steps, args.repeats), device, warmup=2)
    step = [
        {"network": name, "ms": _ms(seconds), "over_width_24": _paired(seconds, times["width 24"])}
        for name, seconds in times.items()
    ]
    result = {
        "machine": machine_description(device),
        "command": command_line("batchnorm_layout.py", argv),
        "rounds": args.rounds,
        "repeats": args.repeats,
        "batchnorm": batchnorm,
        "step": step,
    }
    write_json(args.output, result)
    table_bn = markdown_table(
        ("channels", "channels-first (ms)", "channels-last (ms)", "last / first"),
        [(r["channels"], r["channels_first_ms"], r["channels_last_ms"], r["last_over_first"]) for r in batchnorm],
    )
    table_step = markdown_table(
        ("network", "step (ms)", "÷ width 24"), [(r["network"], r["ms"], r["over_width_24"]) for r in step]
    )
    print(table_bn, table_step, sep="\n\n")
    if not args.no_markdown:
        machine = result["machine"]
        replace_section(
            "batchnorm-layout",
            f"`{result['command']}` on {machine['cpu']}, {machine['usable_cores']} usable cores, "
            f"torch {machine['torch']}, {machine['torch_threads']} threads ({machine['date']}); medians of "
            f"{args.rounds} interleaved rounds of {args.repeats} calls.\n\n"
            f"BatchNorm2d forward and backward, ({BATCH}, C, {SIDE}, {SIDE}) bfloat16:\n\n{table_bn}\n\n"
            f"The default CNN's training step, {BATCH} views of {SIDE}×{SIDE} colour images:\n\n{table_step}\n",
        )
    return result


if __name__ == "__main__":
    main()
