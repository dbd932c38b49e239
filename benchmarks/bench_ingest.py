"""Benchmark ``ingest()`` end to end on a synthetic ITS_LIVE day read from a local source.

For each ``--items`` N, in fresh child processes (so peak RSS belongs to one N alone):

1. ``generate``: write a synthetic day of N items under ``<workdir>/<N>/source`` and its
   S3 Inventory under ``<workdir>/<N>/inventory`` (timed, not counted in throughput);
2. ``ingest``: a fresh embedded catalog (``Settings.embedded(<workdir>/<N>)``), then
   ``ingest(manifest)`` (the full build), then the same manifest again (the rerun:
   everything is already ingested, so only the anti-join path runs).

Reported per N: wall seconds, items/s end to end (source rows / wall), seconds and
items/s per stage (``IngestSummary.seconds``), rows/files/MB written, peak RSS of the
ingest process (after the first ingest, and after the rerun), and the rerun's seconds.

Usage::

    python benchmarks/bench_ingest.py                       # 10 000 and 100 000 items
    python benchmarks/bench_ingest.py --items 10000 --json out.json
    python benchmarks/bench_ingest.py --items 1000 --items 5000 --workdir /tmp/b --keep
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

from _common import MB, ints, machine, peak_rss_mb, run_child

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

DATE = dt.date(2026, 4, 28)
#: The stages ``IngestSummary.seconds`` times. fetch, parse, fan_out and spill are summed over
#: the batches, which overlap (in threads and worker processes): they are not wall time.
STAGES = (
    "hash_index",
    "read",
    "anti_join",
    "fetch",
    "parse",
    "fan_out",
    "spill",
    "write",
    "register",
)


def _dirs(workdir: str, n: int) -> Path:
    return Path(workdir) / str(n)


# --- child processes ---------------------------------------------------------------------------


def child_generate(n: int, workdir: str, seed: int) -> dict[str, Any]:
    from earthcatalog_dagster.config import Settings
    from earthcatalog_dagster.synthetic import generate_day, write_inventory

    home = _dirs(workdir, n)
    if home.exists():
        shutil.rmtree(home)  # a fresh source and catalog each time
    settings = Settings.embedded(home)
    start = time.perf_counter()
    day = generate_day(DATE, n, source_root=str(home / "source"), seed=seed)
    manifest = write_inventory(settings.inventory, DATE, day.refs)
    seconds = time.perf_counter() - start
    return {
        "manifest": manifest,
        "generate_seconds": seconds,
        "inventory_rows": day.refs.num_rows,
        "good_items": len(day.good_ids),
        "generate_peak_rss_mb": peak_rss_mb(),
    }


def child_ingest(n: int, workdir: str, manifest: str, concurrency: int) -> dict[str, Any]:
    from earthcatalog_dagster.config import Settings
    from earthcatalog_dagster.pipeline.ingest import ingest

    settings = Settings.embedded(_dirs(workdir, n))
    baseline = peak_rss_mb()  # the interpreter and the imports
    start = time.perf_counter()
    first = ingest(manifest, settings=settings, fetch_concurrency=concurrency, h3_resolution=1)
    wall = time.perf_counter() - start
    peak = peak_rss_mb()
    start = time.perf_counter()
    again = ingest(manifest, settings=settings, fetch_concurrency=concurrency)
    rerun_wall = time.perf_counter() - start
    return {
        "wall_seconds": wall,
        "summary": first.as_dict(),
        "baseline_rss_mb": baseline,
        "peak_rss_mb": peak,
        "rerun_wall_seconds": rerun_wall,
        "rerun_summary": again.as_dict(),
        "rerun_peak_rss_mb": peak_rss_mb(),
    }


def measure(n: int, args: argparse.Namespace, workdir: str) -> dict[str, Any]:
    common = [
        f"--workdir={workdir}",
        f"--seed={args.seed}",
        f"--fetch-concurrency={args.fetch_concurrency}",
    ]
    gen = run_child(__file__, ["--one", str(n), "--phase=generate", *common])
    ing = run_child(
        __file__, ["--one", str(n), "--phase=ingest", f"--manifest={gen['manifest']}", *common]
    )
    summary = ing["summary"]
    rows = summary["source_rows"]
    wall = ing["wall_seconds"]
    stages = {
        stage: {
            "seconds": summary["seconds"].get(stage, 0.0),
            "items_per_s": rows / s if (s := summary["seconds"].get(stage, 0.0)) else None,
        }
        for stage in STAGES
    }
    rerun = ing["rerun_summary"]
    return {
        "items": n,
        "generate_seconds": gen["generate_seconds"],
        "source_rows": rows,
        "wall_seconds": wall,
        "items_per_s": rows / wall if wall else None,
        "stages": stages,
        "items_written": summary["items_written"],
        "rows_written": summary["rows_written"],
        "files_written": summary["files_written"],
        "mb_written": summary["bytes_written"] / MB,
        "reconciles": summary["reconciles"],
        "mode": summary["mode"],
        "baseline_rss_mb": ing["baseline_rss_mb"],
        "peak_rss_mb": ing["peak_rss_mb"],
        "rerun": {
            "wall_seconds": ing["rerun_wall_seconds"],
            "items_per_s": rows / ing["rerun_wall_seconds"],
            "mode": rerun["mode"],
            "already_ingested": rerun["already_ingested"],
            "items_written": rerun["items_written"],
            "seconds": rerun["seconds"],
            "reconciles": rerun["reconciles"],
            "peak_rss_mb": ing["rerun_peak_rss_mb"],
        },
    }


# --- report ------------------------------------------------------------------------------------


def _fmt_rate(rate: float | None) -> str:
    return f"{rate:,.0f}" if rate else "-"


def print_report(results: list[dict[str, Any]], info: dict[str, Any]) -> None:
    cols = [f"{r['items']:,} items" for r in results]
    width = max(22, *(len(c) for c in cols))

    def line(label: str, values: list[str]) -> None:
        print(f"{label:<26}" + "".join(f"{v:>{width}}" for v in values))

    print()
    print(
        f"machine: {info['cpus']} CPUs, {info['mem_gib']} GiB RAM, Python {info['python']}, "
        f"loadavg at start {info['loadavg_start']}, at end {info['loadavg_end']}"
    )
    line("", cols)
    line("generate s (not counted)", [f"{r['generate_seconds']:.1f}" for r in results])
    line("source rows", [f"{r['source_rows']:,}" for r in results])
    line("wall s", [f"{r['wall_seconds']:.2f}" for r in results])
    line("items/s end to end", [_fmt_rate(r["items_per_s"]) for r in results])
    print("per stage: seconds (items/s)")
    for stage in STAGES:
        cells = [r["stages"][stage] for r in results]
        line(f"  {stage}", [f"{c['seconds']:.2f} ({_fmt_rate(c['items_per_s'])})" for c in cells])
    line(
        "  sum of stages",
        [f"{sum(s['seconds'] for s in r['stages'].values()):.2f}" for r in results],
    )
    line("items written", [f"{r['items_written']:,}" for r in results])
    line("rows written", [f"{r['rows_written']:,}" for r in results])
    line("files written", [f"{r['files_written']:,}" for r in results])
    line("MB written", [f"{r['mb_written']:.1f}" for r in results])
    line("reconciles", [str(r["reconciles"]) for r in results])
    line("RSS after imports MB", [f"{r['baseline_rss_mb']:.0f}" for r in results])
    line("peak RSS MB", [f"{r['peak_rss_mb']:.0f}" for r in results])
    line("rerun wall s", [f"{r['rerun']['wall_seconds']:.2f}" for r in results])
    line("rerun items/s", [_fmt_rate(r["rerun"]["items_per_s"]) for r in results])
    line("rerun already ingested", [f"{r['rerun']['already_ingested']:,}" for r in results])
    line("rerun peak RSS MB", [f"{r['rerun']['peak_rss_mb']:.0f}" for r in results])


# --- driver ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--items",
        action="append",
        help="items per synthetic day; repeatable or a comma list (default 10000,100000)",
    )
    parser.add_argument("--workdir", help="working directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the working directory")
    parser.add_argument("--fetch-concurrency", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("generate", "ingest"), help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one is not None:  # child process: one N, one phase; prints one JSON line
        if args.phase == "generate":
            result = child_generate(args.one, args.workdir, args.seed)
        else:
            result = child_ingest(args.one, args.workdir, args.manifest, args.fetch_concurrency)
        print(json.dumps(result))
        return

    info = machine()
    info["loadavg_start"] = info.pop("loadavg")
    print(
        f"machine: {info['cpus']} CPUs, {info['mem_gib']} GiB RAM, Python {info['python']}, "
        f"loadavg {info['loadavg_start']}",
        flush=True,
    )
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_ingest_")
    Path(workdir).mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    try:
        for n in ints(args.items, "10000,100000"):
            print(f"{n:,} items in {workdir}/{n} ...", flush=True)
            result = measure(n, args, workdir)
            results.append(result)
            print(
                f"  {result['wall_seconds']:.1f} s, {_fmt_rate(result['items_per_s'])} items/s,"
                f" rerun {result['rerun']['wall_seconds']:.1f} s,"
                f" peak RSS {result['peak_rss_mb']:.0f} MB",
                flush=True,
            )
            if not args.keep:
                shutil.rmtree(_dirs(workdir, n), ignore_errors=True)
    finally:
        if not args.keep and not args.workdir:  # never delete a folder we did not create
            shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_end"] = machine()["loadavg"]
    print_report(results, info)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
