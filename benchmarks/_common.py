"""Small helpers shared by the benchmark scripts.

* :func:`machine_description`: what the numbers were measured on (CPU model,
  cores, memory, GPU, library versions).
* :func:`command_line`: the command that produced a result, for its record.
* :func:`write_json` / :func:`read_json`: result files.
* :func:`replace_section`: rewrite one marked section of ``BENCHMARKS.md``
  (``<!-- NAME:start -->`` ... ``<!-- NAME:end -->``), creating the file or
  the section when absent, leaving the rest of the file as it is.
* :func:`mean_std` and :func:`markdown_table`: formatting.

The scripts run as ``python benchmarks/<script>.py``, which puts this folder
on ``sys.path``, so they import this module as ``_common``.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import shlex
import sys
from pathlib import Path

import numpy as np

BENCHMARKS_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCHMARKS_DIR / "results"
BENCHMARKS_MD = BENCHMARKS_DIR / "BENCHMARKS.md"

_MD_TITLE = "# skcohiclust benchmarks\n\nSections between markers are written by the scripts in `benchmarks/`.\n"


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (falls back to :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError):
        pass
    return None


def machine_description(device=None) -> dict:
    """What a benchmark ran on.

    Parameters
    ----------
    device : str, torch.device or None
        The device the measured code used; ``None`` records the one
        ``"auto"`` would pick.

    Returns
    -------
    dict
        ``cpu``, ``cpu_capability`` (the widest vector instructions torch
        uses: ``"AVX2"``, ``"AVX512"``, ...), ``logical_cores``,
        ``usable_cores`` (this process's affinity), ``torch_threads``,
        ``memory_gib``, ``device``, ``gpu`` (name or None), ``bfloat16``
        (whether training on ``device`` runs in bfloat16: a CPU without
        AVX512-BF16 or AMX trains in float32, its steps 2.7× slower on
        the machines measured),
        ``python``, ``torch``, ``numpy``, ``scikit_learn``, ``scipy``,
        ``platform``, ``date`` (UTC, ISO 8601).
    """
    import scipy
    import sklearn
    import torch

    from skcohiclust.training import native_bfloat16

    cuda = torch.cuda.is_available()
    if device is None:
        device = "cuda" if cuda else "cpu"
    device = str(device)
    gpu = torch.cuda.get_device_name(torch.device(device) if device.startswith("cuda") else 0) if cuda else None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "memory_gib": _memory_gib(),
        "device": device,
        "gpu": gpu,
        "bfloat16": native_bfloat16(torch.device(device)),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit_learn": sklearn.__version__,
        "scipy": scipy.__version__,
        "platform": platform.platform(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def command_line(script: str, argv=None) -> str:
    """The command a benchmark ran as, as one shell line for its results.

    Parameters
    ----------
    script : str
        The script's file name in ``benchmarks/``, such as ``"quality.py"``.
    argv : list of str or None
        The arguments ``main`` was given; ``None`` means ``sys.argv[1:]``.

    Returns
    -------
    str
        ``"python benchmarks/<script> <arguments>"``, shell-quoted.
    """
    arguments = sys.argv[1:] if argv is None else argv
    return f"python benchmarks/{script} {shlex.join(arguments)}".strip()


def machine_summary(machine: dict) -> str:
    """One line for a report: CPU (and its vector instructions), cores, memory, GPU, torch, precision."""
    cpu = machine["cpu"]
    if machine.get("cpu_capability"):
        cpu = f"{cpu} ({machine['cpu_capability']})"
    parts = [f"{cpu}, {machine['usable_cores']} usable cores ({machine['logical_cores']} logical)"]
    if machine.get("memory_gib"):
        parts.append(f"{machine['memory_gib']} GiB RAM")
    parts.append(f"GPU {machine['gpu']}" if machine.get("gpu") else "no GPU")
    parts.append(f"torch {machine['torch']}")
    if "bfloat16" in machine:
        parts.append(f"training in {'bfloat16' if machine['bfloat16'] else 'float32'} on {machine['device']}")
    return ", ".join(parts)


def _to_builtin(value):
    """JSON fallback for numpy scalars and arrays, paths and devices."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_json(path, data) -> Path:
    """Write ``data`` as indented JSON, creating the folder; atomic (a temporary file then a rename).

    Non-finite floats are written as ``NaN`` (Python's json reads them back).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(data, indent=2, default=_to_builtin) + "\n", encoding="utf-8")
    temporary.replace(path)
    return path


def append_json_line(name: str, row: dict) -> Path:
    """Print ``row`` as one JSON line and append it to ``results/<name>`` (a tuning log)."""
    line = json.dumps(row, default=_to_builtin)
    print(line)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
    return path


def read_json(path, default=None):
    """The parsed content of ``path``, or ``default`` when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def replace_section(name: str, content: str, path=BENCHMARKS_MD) -> Path:
    """Put ``content`` between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``.

    The file is created (with a title) if it does not exist, and the section
    appended if the file has no such markers; otherwise only the text between
    the markers changes.

    Parameters
    ----------
    name : str
        Section name, e.g. ``"quality-digits"`` (letters, digits, ``-``, ``_``, ``.``).
    content : str
        Markdown to place between the markers.
    path : str or path-like, default=benchmarks/BENCHMARKS.md

    Returns
    -------
    Path
        The file written.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise ValueError(f"name must use only letters, digits, '-', '_' and '.', got {name!r}.")
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{content.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.is_file() else _MD_TITLE
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return path


def mean_std(values, digits: int = 3) -> str:
    """``"m ± s"`` over the finite values (``"m"`` for one value, ``"–"`` for none)."""
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return "–"
    if values.size == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def markdown_table(headers, rows) -> str:
    """A GitHub markdown table from a header list and rows of cells (converted with ``str``)."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)
