"""Benchmark daily delta production: a 1 M-key S3 Inventory against a 40 M-hash index.

Budget (issue 6): under 60 s and under 3 GB peak RSS on the project's machine.

Setup (not measured): a random sorted index of ``--index`` digests that also holds the ids
of all but ``--new`` of the inventory's keys, and an S3 Inventory (``manifest.json`` +
``--files`` Parquet or CSV.gz data files, ITS_LIVE-like keys, bucket/key/size/
last_modified_date/e_tag) of ``--keys`` ``.stac.json`` keys plus ``--other`` non-item keys,
all generated with NumPy/Arrow compute. Each measurement runs in a fresh child process, so
its peak RSS is its own:

- ``delta``: :func:`earthcatalog_dagster.pipeline.delta.daily_delta` — load the index,
  stream the inventory, hash, anti-join, add older pending deltas, de-duplicate, write;
- ``reuse``: the same call again (the delta exists: reused, pruned against the index).

Usage::

    python benchmarks/bench_daily_delta.py                          # 1 M keys, 40 M index
    python benchmarks/bench_daily_delta.py --keys 100000 --index 4000000   # quick
    python benchmarks/bench_daily_delta.py --format csv --other 2000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from _common import MB, describe_machine, loadavg, peak_rss_mb, run_child

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

from earthcatalog_dagster import layout
from earthcatalog_dagster.core.hash_index import (
    HashIndex,
    hash_ids,
    write_hash_index,
)
from earthcatalog_dagster.core.inventory import ids_of_keys
from earthcatalog_dagster.pipeline.delta import daily_delta
from earthcatalog_dagster.synthetic import write_inventory

DATE = dt.date(2026, 4, 28)
BUDGET_S = 60.0
BUDGET_RSS_MB = 3 * 1024.0


def random_sorted_digests(n: int, seed: int) -> np.ndarray:
    """``n`` unique random 16-byte digests in ascending order (big-endian words)."""
    rng = np.random.default_rng(seed)
    words = np.empty((n, 2), dtype=">u8")
    high = rng.integers(1, (2**64 - 1) // n, size=n, dtype=np.uint64, endpoint=True)
    np.cumsum(high, out=high)
    words[:, 0] = high
    del high
    words[:, 1] = rng.integers(0, 2**64 - 1, size=n, dtype=np.uint64, endpoint=True)
    return words.reshape(-1).view("S16")


def item_keys(n: int, seed: int) -> pa.Array:
    """``n`` unique ITS_LIVE-like ``.stac.json`` keys (~150 characters), vectorized."""
    rng = np.random.default_rng(seed)
    numbers = pc.utf8_lpad(pc.cast(pa.array(np.arange(n, dtype=np.int64)), pa.string()), 8, "0")
    rows = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 248, n)), pa.string()), 3, "0")
    tile = pc.binary_join_element_wise(
        pa.scalar("velocity_image_pair/landsatOLI/v02/N70W040/LC08_L1GT_"), rows, "_"
    )
    return pc.binary_join_element_wise(
        tile,
        numbers,
        pa.scalar("_20250912_20250913_02_T2_X_LC09_L1GT_233018_20250920_02_T1_G0120V02_P095"),
        pa.scalar(".stac.json"),
        "",
    )


def _repeat(value: str, n: int) -> pa.Array:
    return pa.array([value]).take(pa.array(np.zeros(n, dtype=np.int32)))


def scenario_setup(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    started = time.perf_counter()
    keys = item_keys(args.keys, seed=1)
    if args.other:
        others = pc.binary_join_element_wise(
            pa.scalar("velocity_image_pair/landsatOLI/v02/N70W040/file_"),
            pc.cast(pa.array(np.arange(args.other, dtype=np.int64)), pa.string()),
            pa.scalar(".nc"),
            "",
        )
        keys = pa.concat_arrays([keys, others])
    n = len(keys)
    when = dt.datetime(DATE.year, DATE.month, DATE.day, 3, tzinfo=dt.UTC)
    refs = pa.table(
        {
            "bucket": _repeat("its-live-data", n),
            "key": keys,
            "size": pa.array(np.full(n, 4_000, dtype=np.int64)),
            "last_modified_date": pa.array(np.full(n, when), pa.timestamp("ms", tz="UTC")),
            "e_tag": _repeat("d41d8cd98f00b204e9800998ecf8427e", n),
        }
    )
    manifest = write_inventory(
        str(work / "inventory"), DATE, refs, fmt=args.format, files=args.files
    )
    generated = time.perf_counter() - started

    started = time.perf_counter()
    known = hash_ids(ids_of_keys(keys.slice(0, args.keys - args.new)))
    random_part = random_sorted_digests(args.index - len(known), seed=2)
    random_part.flags.writeable = False
    index = HashIndex(random_part).merge(known)
    del random_part
    write_hash_index(index, str(work / "warehouse_id_hashes.parquet"))
    indexed = time.perf_counter() - started
    data_bytes = sum(p.stat().st_size for p in (work / "inventory" / "data").iterdir())
    return {
        "scenario": "setup",
        "inventory keys": n,
        "stac keys": args.keys,
        "index entries": len(index),
        "inventory MB": round(data_bytes / MB, 1),
        "index MB": round((work / "warehouse_id_hashes.parquet").stat().st_size / MB, 1),
        "generate inventory s": round(generated, 2),
        "build index s": round(indexed, 2),
        "manifest": manifest,
    }


def scenario_delta(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    manifest = layout.inventory_manifest(str(work / "inventory"), DATE)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    result = daily_delta(
        manifest,
        delta_prefix=str(work / "delta"),
        date=DATE,
        hash_index_uri=str(work / "warehouse_id_hashes.parquet"),
    )
    seconds = time.perf_counter() - started
    return {
        "scenario": args.scenario,
        "seconds": round(seconds, 2),
        "peak RSS MB": round(peak_rss_mb()),
        "RSS after imports MB": round(rss_before),
        "rows": result.rows,
        "source rows": result.source_rows,
        "already ingested": result.already_ingested,
        "reused": result.reused,
        "steps s": {k: round(v, 2) for k, v in result.seconds.items()},
    }


SCENARIOS = {"setup": scenario_setup, "delta": scenario_delta, "reuse": scenario_delta}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help=".stac.json keys")
    parser.add_argument("--other", type=int, default=0, help="extra non-item keys (.nc)")
    parser.add_argument("--index", type=int, default=40_000_000, help="index entries")
    parser.add_argument("--new", type=int, default=60_000, help="inventory ids not indexed")
    parser.add_argument("--files", type=int, default=4, help="inventory data files")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--workdir", help="keep the data here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the results as JSON to this path")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.scenario:  # child process
        print(json.dumps(SCENARIOS[args.scenario](args, Path(args.workdir))))
        return

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_daily_delta_"))
    if args.workdir:
        shutil.rmtree(work / "delta", ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
    child = [
        f"--keys={args.keys}",
        f"--other={args.other}",
        f"--index={args.index}",
        f"--new={args.new}",
        f"--files={args.files}",
        f"--format={args.format}",
        f"--workdir={work}",
    ]
    print(f"machine: {describe_machine()}")
    print(f"load average before: {loadavg()}")
    results = []
    try:
        for name in ("setup", "delta", "reuse"):
            results.append(run_child(__file__, [*child, f"--scenario={name}"]))
            print(json.dumps(results[-1]))
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {loadavg()}")
    delta = results[1]
    ok = delta["seconds"] < BUDGET_S and delta["peak RSS MB"] < BUDGET_RSS_MB
    print(
        f"daily delta: {delta['source rows']:,} keys vs {results[0]['index entries']:,} hashes"
        f" -> {delta['rows']:,} rows in {delta['seconds']:.1f} s, peak RSS"
        f" {delta['peak RSS MB']:,} MB (budget {BUDGET_S:.0f} s, {BUDGET_RSS_MB:,.0f} MB):"
        f" {'within budget' if ok else 'OVER BUDGET'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
