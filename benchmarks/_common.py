"""Helpers the benchmark scripts share: the machine, peak RSS, timing, child processes,
and repeatable comma-list arguments.

The scripts run as ``python benchmarks/bench_x.py`` (and re-run themselves that way as
child processes), so Python puts this folder first on ``sys.path`` and they import this
module as ``_common``, whatever the working directory.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MB = 1 << 20


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as ``/proc/loadavg`` writes them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def machine() -> dict[str, Any]:
    """What a result depends on besides the code: CPUs, RAM, Python and the load now."""
    with open("/proc/meminfo") as f:
        total_kb = int(next(line for line in f if line.startswith("MemTotal")).split()[1])
    return {
        "cpus": os.cpu_count(),
        "mem_gib": round(total_kb / MB, 1),
        "python": platform.python_version(),
        "loadavg": loadavg(),
    }


def describe_machine() -> str:
    """:func:`machine` in one line, with the pyarrow and numpy versions (imported only
    here, so the scripts that do not ask pay nothing for them)."""
    import numpy as np
    import pyarrow as pa

    m = machine()
    return (
        f"{m['cpus']} CPUs, {m['mem_gib']} GiB RAM, Python {m['python']},"
        f" pyarrow {pa.__version__}, numpy {np.__version__}"
    )


def peak_rss_mb() -> float:
    """High-water resident set size of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """``(seconds, value)`` of one call of ``fn``."""
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def run_child(script: str, argv: list[str], *, stderr_tail: int | None = None) -> dict[str, Any]:
    """Run ``script`` again in a fresh Python process (so its peak RSS is its own) and
    return the JSON object on the last line of its output. A failing child's stderr (its
    last ``stderr_tail`` characters, if given) is echoed and this process exits."""
    cmd = [sys.executable, str(Path(script).resolve()), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-stderr_tail:] if stderr_tail else proc.stderr)
        raise SystemExit(f"child {argv} failed with exit code {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def comma_list(values: list[str] | None, default: str) -> list[str]:
    """The values of a repeatable option that also takes comma lists (``default`` when it
    is not given): ``--paths a,b --paths c`` → ``["a", "b", "c"]``."""
    return [v.strip() for value in values or [default] for v in value.split(",") if v.strip()]


def ints(values: list[str] | None, default: str) -> list[int]:
    """:func:`comma_list` as integers, ``_`` allowed as a separator (``100_000``)."""
    return [int(v.replace("_", "")) for v in comma_list(values, default)]
