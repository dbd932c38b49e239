"""Benchmark ``bulk_ingest()`` (the 4-phase Dask path) on a synthetic ITS_LIVE day.

For each ``--items`` N, in fresh child processes (so each peak RSS belongs to one run):

1. ``generate``: a synthetic day of N items under ``<workdir>/<N>/source`` and its S3
   Inventory (timed, not counted);
2. one ``bulk_ingest(mode="full")`` per ``--scheduler`` into its own fresh embedded
   catalog (``<workdir>/<N>/<scheduler>``), all reading the same source objects.
   ``synchronous`` runs every task in the child; ``local`` starts a ``LocalCluster`` of
   ``--workers`` processes first (its start-up is reported, not counted), hands it to
   ``bulk_ingest(create_client=...)`` and, after the run, asks every worker for its own
   peak RSS (``client.run(getrusage)``).

Reported per N and scheduler: wall seconds of ``bulk_ingest()``, items/s end to end
(source rows / wall), cost per item (µs) and its ratio between the sizes, seconds per
phase, rows/files written, peak RSS of the head process and of each worker.

Usage::

    python benchmarks/bench_bulk.py                       # 10 000 and 100 000 items
    python benchmarks/bench_bulk.py --items 10000 --scheduler local --json out.json
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
PHASES = ("phase 1 (chunks)", "phase 2 (ndjson)", "phase 3 (parquet)", "phase 4 (register)")


def _worker_peak_rss_mb() -> float:
    """``peak_rss_mb`` on a Dask worker. Defined in the script (``__main__``), so Dask
    sends it by value and the worker need not import ``_common``."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- child processes ---------------------------------------------------------------------------


def child_generate(n: int, workdir: str, seed: int) -> dict[str, Any]:
    from earthcatalog_dagster.config import Settings
    from earthcatalog_dagster.synthetic import generate_day, write_inventory

    root = Path(workdir) / str(n)
    if root.exists():
        shutil.rmtree(root)
    settings = Settings.embedded(root)
    start = time.perf_counter()
    day = generate_day(DATE, n, source_root=settings.source_root, seed=seed)
    manifest = write_inventory(settings.inventory, DATE, day.refs)
    return {
        "manifest": manifest,
        "source_root": settings.source_root,
        "generate_seconds": time.perf_counter() - start,
        "good_items": len(day.good_ids),
    }


def child_bulk(n: int, workdir: str, manifest: str, source_root: str, a: dict) -> dict[str, Any]:
    from earthcatalog_dagster.config import Settings
    from earthcatalog_dagster.pipeline.bulk import bulk_ingest

    home = Path(workdir) / str(n) / a["scheduler"]
    shutil.rmtree(home, ignore_errors=True)
    settings = Settings.embedded(home)
    baseline = peak_rss_mb()
    cluster = client = None
    kwargs: dict[str, Any] = {"scheduler": "synchronous"}
    cluster_seconds = 0.0
    workers_start: dict[str, float] = {}
    if a["scheduler"] == "local":
        import dask
        from dask.distributed import Client, LocalCluster

        from earthcatalog_dagster.pipeline.compute import WORKER_CONFIG

        start = time.perf_counter()
        with dask.config.set(WORKER_CONFIG):  # as bulk_ingest(scheduler="local") starts it
            cluster = LocalCluster(
                n_workers=a["workers"],
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
            )
        client = Client(cluster)
        client.wait_for_workers(a["workers"])
        cluster_seconds = time.perf_counter() - start
        workers_start = client.run(_worker_peak_rss_mb)
        kwargs = {"scheduler": "local", "create_client": lambda: Client(cluster)}
    try:
        start = time.perf_counter()
        summary = bulk_ingest(
            manifest,
            mode="full",
            settings=settings,
            source_root=source_root,
            h3_resolution=a["h3_resolution"],
            chunk_size=a["chunk_size"],
            compact_rows=a["compact_rows"],
            progress=False,
            **kwargs,
        )
        wall = time.perf_counter() - start
        workers_peak = client.run(_worker_peak_rss_mb) if client is not None else {}
    finally:
        if client is not None:
            client.close()
            cluster.close()
    return {
        "wall_seconds": wall,
        "summary": summary.as_dict(),
        "baseline_rss_mb": baseline,
        "head_peak_rss_mb": peak_rss_mb(),
        "cluster_start_seconds": cluster_seconds,
        "workers_start_rss_mb": sorted(workers_start.values()),
        "workers_peak_rss_mb": sorted(workers_peak.values()),
    }


def measure(n: int, args: argparse.Namespace, workdir: str) -> list[dict[str, Any]]:
    gen = run_child(
        __file__,
        ["--one", str(n), "--phase=generate", f"--workdir={workdir}", f"--seed={args.seed}"],
        stderr_tail=5000,
    )
    print(f"  generated in {gen['generate_seconds']:.1f} s (not counted)", flush=True)
    out = []
    for scheduler in args.schedulers:
        options = {
            "scheduler": scheduler,
            "workers": args.workers,
            "chunk_size": args.chunk_size,
            "compact_rows": args.compact_rows,
            "h3_resolution": args.h3_resolution,
        }
        load_before = machine()["loadavg"]
        run = run_child(
            __file__,
            [
                "--one",
                str(n),
                "--phase=bulk",
                f"--workdir={workdir}",
                f"--manifest={gen['manifest']}",
                f"--source-root={gen['source_root']}",
                f"--options={json.dumps(options)}",
            ],
            stderr_tail=5000,
        )
        summary = run["summary"]
        rows = summary["source_rows"]
        result = {
            "items": n,
            "scheduler": scheduler if scheduler == "synchronous" else f"local x{args.workers}",
            "generate_seconds": gen["generate_seconds"],
            "source_rows": rows,
            "wall_seconds": run["wall_seconds"],
            "items_per_s": rows / run["wall_seconds"],
            "us_per_item": 1e6 * run["wall_seconds"] / rows,
            "phases": {p: summary["seconds"].get(p, 0.0) for p in PHASES},
            "chunks": summary["chunks"],
            "buckets": summary["buckets"],
            "rows_written": summary["rows_written"],
            "files_written": summary["files_written"],
            "mb_written": summary["bytes_written"] / MB,
            "reconciles": summary["reconciles"],
            "baseline_rss_mb": run["baseline_rss_mb"],
            "head_peak_rss_mb": run["head_peak_rss_mb"],
            "cluster_start_seconds": run["cluster_start_seconds"],
            "workers_start_rss_mb": run["workers_start_rss_mb"],
            "workers_peak_rss_mb": run["workers_peak_rss_mb"],
            "loadavg_before": load_before,
        }
        print(
            f"  {result['scheduler']}: {result['wall_seconds']:.1f} s,"
            f" {result['items_per_s']:,.0f} items/s, head peak {result['head_peak_rss_mb']:.0f} MB"
            + (
                f", workers peak {max(result['workers_peak_rss_mb']):.0f} MB"
                if result["workers_peak_rss_mb"]
                else ""
            )
            + f" (load {load_before})",
            flush=True,
        )
        out.append(result)
        if not args.keep:
            shutil.rmtree(Path(workdir) / str(n) / scheduler, ignore_errors=True)
    return out


# --- report ------------------------------------------------------------------------------------


def _each_mb(values: list[float]) -> str:
    """One MB figure per worker (``300/310 MB``), ``-`` without workers."""
    return "/".join(f"{v:.0f}" for v in values) + " MB" if values else "-"


def print_report(results: list[dict[str, Any]], info: dict[str, Any]) -> None:
    cols = [f"{r['items']:,} {r['scheduler']}" for r in results]
    width = max(20, *(len(c) + 2 for c in cols))

    def line(label: str, values: list[str]) -> None:
        print(f"{label:<24}" + "".join(f"{v:>{width}}" for v in values))

    print()
    print(
        f"machine: {info['cpus']} CPUs, {info['mem_gib']} GiB RAM, Python {info['python']}, "
        f"loadavg at start {info['loadavg_start']}, at end {info['loadavg_end']}"
    )
    line("", cols)
    line("source rows", [f"{r['source_rows']:,}" for r in results])
    line("chunks / buckets", [f"{r['chunks']:,} / {r['buckets']:,}" for r in results])
    line("wall s", [f"{r['wall_seconds']:.1f}" for r in results])
    line("items/s end to end", [f"{r['items_per_s']:,.0f}" for r in results])
    line("µs per item", [f"{r['us_per_item']:.0f}" for r in results])
    for phase in PHASES:
        line(f"  {phase} s", [f"{r['phases'][phase]:.1f}" for r in results])
    line(
        "rows / files written", [f"{r['rows_written']:,} / {r['files_written']:,}" for r in results]
    )
    line("MB written", [f"{r['mb_written']:.1f}" for r in results])
    line("reconciles", [str(r["reconciles"]) for r in results])
    line("head RSS after imports", [f"{r['baseline_rss_mb']:.0f} MB" for r in results])
    line("head peak RSS", [f"{r['head_peak_rss_mb']:.0f} MB" for r in results])
    line("workers RSS at start", [_each_mb(r["workers_start_rss_mb"]) for r in results])
    line("workers peak RSS", [_each_mb(r["workers_peak_rss_mb"]) for r in results])
    line(
        "cluster start s",
        [
            f"{r['cluster_start_seconds']:.1f}" if r["cluster_start_seconds"] else "-"
            for r in results
        ],
    )
    line("loadavg before run", [r["loadavg_before"] for r in results])
    sizes = sorted({r["items"] for r in results})
    if len(sizes) > 1:
        print()
        print(f"cost per item, {sizes[-1]:,} vs {sizes[0]:,} items (1.00 = flat):")
        for scheduler in dict.fromkeys(r["scheduler"] for r in results):
            small = next(
                r for r in results if r["items"] == sizes[0] and r["scheduler"] == scheduler
            )
            large = next(
                r for r in results if r["items"] == sizes[-1] and r["scheduler"] == scheduler
            )
            print(
                f"  {scheduler:<14} {small['us_per_item']:.0f} µs → {large['us_per_item']:.0f}"
                f" µs per item: x{large['us_per_item'] / small['us_per_item']:.2f}"
            )


# --- driver ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--items",
        action="append",
        help="items per synthetic day; repeatable or a comma list (default 10000,100000)",
    )
    parser.add_argument(
        "--scheduler",
        action="append",
        choices=("synchronous", "local"),
        help="repeatable (default both)",
    )
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster processes")
    parser.add_argument("--chunk-size", type=int, default=2_500)
    parser.add_argument("--compact-rows", type=int, default=200_000)
    parser.add_argument("--h3-resolution", type=int, default=1)
    parser.add_argument("--workdir", help="working directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("generate", "bulk"), help=argparse.SUPPRESS)
    parser.add_argument("--manifest", help=argparse.SUPPRESS)
    parser.add_argument("--source-root", help=argparse.SUPPRESS)
    parser.add_argument("--options", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one is not None:  # child process: one N, one step; prints one JSON line
        if args.phase == "generate":
            result = child_generate(args.one, args.workdir, args.seed)
        else:
            result = child_bulk(
                args.one, args.workdir, args.manifest, args.source_root, json.loads(args.options)
            )
        print(json.dumps(result))
        return

    args.schedulers = args.scheduler or ["synchronous", "local"]
    info = machine()
    info["loadavg_start"] = info.pop("loadavg")
    print(
        f"machine: {info['cpus']} CPUs, {info['mem_gib']} GiB RAM, Python {info['python']}, "
        f"loadavg {info['loadavg_start']}",
        flush=True,
    )
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_bulk_")
    Path(workdir).mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    try:
        for n in ints(args.items, "10000,100000"):
            print(f"{n:,} items in {workdir}/{n} ...", flush=True)
            results.extend(measure(n, args, workdir))
            if not args.keep:
                shutil.rmtree(Path(workdir) / str(n), ignore_errors=True)
    finally:
        if not args.keep and not args.workdir:  # never delete a folder we did not create
            shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_end"] = machine()["loadavg"]
    print_report(results, info)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
