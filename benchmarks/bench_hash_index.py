"""Benchmark the hash index at ITS_LIVE scale (~40 M ids).

Builds a random sorted index of ``--size`` digests and writes it, then measures, each
scenario in its own process so peak RSS belongs to that scenario alone:

- ``update``: load, hash ``--new`` real id strings, merge them, write (the daily path;
  budget: < 15 s and < 2 GB peak RSS for 40 M);
- ``merge_ids_into_index``: the same through the one-call convenience function;
- ``anti_join``: load, then anti-join ``--probe`` keys, half of them present (budget < 5 s).

Usage::

    python benchmarks/bench_hash_index.py                 # 40 M, 1 M probes, 100 k new
    python benchmarks/bench_hash_index.py --size 1000000  # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _common import MB, describe_machine, peak_rss_mb, run_child

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from earthcatalog_dagster.core.hash_index import (
    HashIndex,
    hash_ids,
    load_hash_index,
    merge_ids_into_index,
    write_hash_index,
)


def rss_mb() -> float:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


class Steps:
    """Times steps and records RSS after each; emitted as JSON for the parent process."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.rows: list[dict[str, Any]] = []

    def run(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args)
        seconds = time.perf_counter() - start
        self.rows.append(
            {"step": name, "seconds": seconds, "rss_mb": rss_mb(), "peak_mb": peak_rss_mb()}
        )
        return result

    def emit(self, **extra: Any) -> None:
        print(json.dumps({"scenario": self.scenario, "steps": self.rows, **extra}))


def random_sorted_digests(n: int, seed: int) -> np.ndarray:
    """``n`` unique random 16-byte digests in ascending order, without sorting.

    The high 8 bytes are a running sum of random gaps in [1, (2**64 - 1) // n] (strictly
    increasing, cannot overflow), the low 8 bytes are random; big-endian, so byte order is
    numeric order.
    """
    rng = np.random.default_rng(seed)
    words = np.empty((n, 2), dtype=">u8")
    high = rng.integers(1, (2**64 - 1) // n, size=n, dtype=np.uint64, endpoint=True)
    np.cumsum(high, out=high)
    words[:, 0] = high
    del high
    words[:, 1] = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    return words.reshape(-1).view("S16")


def new_ids(n: int, tag: str) -> list[str]:
    """ITS_LIVE-like image-pair ids (~110 characters), unique to this run."""
    return [
        f"LC08_L1GT_{i % 233:03d}{i % 248:03d}_2025{i % 12 + 1:02d}{i % 28 + 1:02d}_20250912_02_T2"
        f"_X_LC09_L1GT_{i % 233:03d}{i % 248:03d}_2025{i % 12 + 1:02d}{i % 28 + 1:02d}"
        f"_20250913_02_T1_G0120V02_P{i % 1000:03d}_{tag}_{i}"
        for i in range(n)
    ]


# --- scenarios (each runs in a child process) ------------------------------------------------


def scenario_setup(args: argparse.Namespace, uri: str) -> None:
    steps = Steps("setup")
    values = steps.run("generate sorted digests", random_sorted_digests, args.size, 0)
    values.flags.writeable = False  # lets HashIndex wrap it without a copy
    index = steps.run("wrap (validates order)", HashIndex, values)
    del values
    steps.run("write (zstd, stats on)", lambda: write_hash_index(index, uri))
    size = os.path.getsize(uri)
    if args.compare_stats:
        table = index.to_arrow()

        def serialize(statistics: bool) -> int:
            raw = len(index) * 16
            writer = pa.FixedSizeBufferWriter(pa.allocate_buffer(raw + raw // 64 + (4 << 20)))
            pq.write_table(
                table,
                writer,
                row_group_size=1 << 20,
                compression="zstd",
                use_dictionary=False,
                write_statistics=statistics,
            )
            return writer.tell()

        for statistics in (True, False):
            steps.run(
                f"serialize only, stats {'on' if statistics else 'off'}", serialize, statistics
            )
    meta = pq.ParquetFile(uri).metadata
    steps.emit(file_mb=size / MB, row_groups=meta.num_row_groups, rows=meta.num_rows)


def scenario_update(args: argparse.Namespace, uri: str) -> None:
    steps = Steps("update")
    ids = new_ids(args.new, "update")  # building the Python strings is not measured
    pa_ids = pa.array(ids)
    index = steps.run("load", lambda: load_hash_index(uri))
    hashes = steps.run(f"hash {args.new:,} ids", lambda: hash_ids(pa_ids))
    merged = steps.run(f"merge {args.new:,}", index.merge, hashes)
    added = len(merged) - len(index)
    del index
    steps.run("write", lambda: write_hash_index(merged, uri))
    steps.emit(added=added, after=len(merged))


def scenario_convenience(args: argparse.Namespace, uri: str) -> None:
    steps = Steps("merge_ids_into_index")
    ids = pa.array(new_ids(args.new, "convenience"))
    stats = steps.run("load+hash+merge+write", lambda: merge_ids_into_index(uri, ids))
    steps.emit(added=stats.added, after=stats.after)


def scenario_anti_join(args: argparse.Namespace, uri: str) -> None:
    steps = Steps("anti_join")
    index = steps.run("load", lambda: load_hash_index(uri))
    rng = np.random.default_rng(1)
    half = args.probe // 2
    present = index.hashes[rng.integers(0, len(index), size=half)]
    absent = np.frombuffer(rng.bytes((args.probe - half) * 16), dtype="S16")
    probes = np.concatenate([present, absent])
    rng.shuffle(probes)
    missing = steps.run(f"anti_join {args.probe:,} (numpy)", lambda: index.anti_join(probes))
    arrow_probes = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(probes), [None, pa.py_buffer(probes.tobytes())]
    )
    missing_arrow = steps.run(
        f"anti_join {args.probe:,} (arrow)", lambda: index.anti_join(arrow_probes)
    )
    assert np.array_equal(missing, missing_arrow)
    steps.emit(missing=int(missing.sum()), expected_missing_at_least=args.probe - half)


SCENARIOS = {
    "setup": scenario_setup,
    "update": scenario_update,
    "convenience": scenario_convenience,
    "anti_join": scenario_anti_join,
}


# --- driver --------------------------------------------------------------------------------


def print_report(results: list[dict[str, Any]]) -> None:
    print(f"{'scenario':<22} {'step':<38} {'seconds':>8} {'rss MB':>8} {'peak MB':>8}")
    for result in results:
        total = 0.0
        for row in result["steps"]:
            total += row["seconds"]
            print(
                f"{result['scenario']:<22} {row['step']:<38} {row['seconds']:>8.2f}"
                f" {row['rss_mb']:>8.0f} {row['peak_mb']:>8.0f}"
            )
        extras = {k: v for k, v in result.items() if k not in ("scenario", "steps")}
        peak = max(row["peak_mb"] for row in result["steps"])
        print(f"{'':<22} {'total':<38} {total:>8.2f} {'':>8} {peak:>8.0f}   {extras}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=40_000_000, help="index entries")
    parser.add_argument("--probe", type=int, default=1_000_000, help="anti-join keys")
    parser.add_argument("--new", type=int, default=100_000, help="new ids to merge")
    parser.add_argument(
        "--workdir",
        default="tmp",
        help="directory for the index file; 'tmp' (default) = a temporary directory",
    )
    parser.add_argument(
        "--compare-stats", action="store_true", help="also time a write without statistics"
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.scenario:  # child process
        SCENARIOS[args.scenario](args, str(Path(args.workdir) / "warehouse_id_hashes.parquet"))
        return

    workdir = tempfile.mkdtemp(prefix="bench_hash_index_") if args.workdir == "tmp" else None
    base = workdir or args.workdir
    Path(base).mkdir(parents=True, exist_ok=True)
    child_argv = [
        f"--size={args.size}",
        f"--probe={args.probe}",
        f"--new={args.new}",
        f"--workdir={base}",
        *(["--compare-stats"] if args.compare_stats else []),
    ]
    print(f"machine: {describe_machine()}")
    print(f"index: {args.size:,} entries, probe {args.probe:,}, new {args.new:,}, in {base}")
    try:
        results = [
            run_child(__file__, [*child_argv, "--scenario", name])
            for name in ("setup", "update", "convenience", "anti_join")
        ]
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(results)


if __name__ == "__main__":
    main()
