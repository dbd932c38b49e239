"""Benchmark: does a daily run cost more as the table's history grows?

(a) ``--days`` consecutive simulated days (default 60), the same number of items each
    day, into one embedded catalog, through ``ingest()`` or a Dagster partition
    (``--path dagster``: the six assets materialized in process). Per day: wall seconds of
    the run (generating the day's items is not counted), data files, manifests and bytes
    of Iceberg metadata.
(b) one day's ingest into a table that already holds ``--history-files`` (default
    1,000,000) registered data files, against the same day on an empty table. The
    history is made cheaply: DataFile entries written straight into manifests (the files
    themselves do not exist; a daily run must never need to open them).

The budget (issue 10): the last day within 1.25x of the first, in both.

Usage::

    python benchmarks/bench_growth.py                         # (a) 60 days x 2,000 + (b)
    python benchmarks/bench_growth.py --days 10 --items 500 --history-files 100000
    python benchmarks/bench_growth.py --path dagster --days 20 --skip-history
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import loadavg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

START = dt.date(2026, 1, 1)
HISTORY_BATCH = 100_000


def table_shape(settings: Any) -> dict[str, int]:
    """Data files, manifests and metadata bytes of the table, from its metadata only."""
    from earthcatalog_dagster.core import catalog as iceberg

    table = iceberg.load_table(iceberg.open_catalog(settings.catalog, settings.warehouse))
    snapshot = table.current_snapshot()
    metadata_dir = Path(settings.warehouse) / "metadata"
    return {
        "files": int(snapshot.summary["total-data-files"] or 0) if snapshot else 0,
        "manifests": len(snapshot.manifests(table.io)) if snapshot else 0,
        "metadata_bytes": sum(p.stat().st_size for p in metadata_dir.iterdir()),
    }


def run_day(settings: Any, date: dt.date, items: int, seed: int, path: str) -> float:
    """Generate one day (untimed), then ingest it (timed); the run's wall seconds."""
    from earthcatalog_dagster.synthetic import generate_day, write_inventory

    day = generate_day(date, items, source_root=settings.source_root, seed=seed)
    manifest = write_inventory(settings.inventory, date, day.refs)
    start = time.perf_counter()
    if path == "ingest":
        from earthcatalog_dagster import ingest

        ingest(manifest, settings=settings, h3_resolution=1)
    else:
        materialize_partition(settings, date)
    return time.perf_counter() - start


def materialize_partition(settings: Any, date: dt.date) -> None:
    from dagster import DagsterInstance, materialize

    from earthcatalog_dagster.definitions import build_definitions
    from earthcatalog_dagster.orchestration.assets import ingest_assets
    from earthcatalog_dagster.orchestration.resources import (
        DaskCompute,
        IcebergCatalog,
        StorageRoots,
    )

    roots = StorageRoots.from_settings(settings)
    resources = build_definitions(
        roots=roots,
        catalog=IcebergCatalog(catalog_path=settings.catalog),
        compute=DaskCompute(scheduler="synchronous"),
    ).resources
    result = materialize(
        ingest_assets,
        partition_key=date.isoformat(),
        resources=dict(resources),
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success


def daily(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    from earthcatalog_dagster.config import Settings

    settings = Settings.embedded(workdir / f"daily-{args.path}")
    rows = []
    print(f"(a) {args.days} days x {args.items:,} items through {args.path}")
    print(f"{'day':>4} {'seconds':>8} {'files':>8} {'manifests':>9} {'metadata MB':>11}")
    for n in range(args.days):
        seconds = run_day(settings, START + dt.timedelta(days=n), args.items, n, args.path)
        shape = table_shape(settings)
        rows.append({"day": n + 1, "seconds": seconds, **shape})
        print(
            f"{n + 1:>4} {seconds:>8.2f} {shape['files']:>8,} {shape['manifests']:>9,}"
            f" {shape['metadata_bytes'] / 1e6:>11.2f}",
            flush=True,
        )
    first = statistics.median(r["seconds"] for r in rows[:3])
    last = statistics.median(r["seconds"] for r in rows[-3:])
    print(f"median of the last 3 days / first 3 days: {last / first:.2f}x (budget 1.25x)")
    return rows


def make_history(settings: Any, files: int) -> None:
    """A table holding ``files`` registered data files, written straight into manifests
    (one OVERWRITE-free fast append per batch), and a hash index synced to it."""
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    from earthcatalog_dagster import layout
    from earthcatalog_dagster.core import catalog as iceberg
    from earthcatalog_dagster.core.hash_index import HashIndex, write_hash_index
    from earthcatalog_dagster.pipeline.hash_sync import SEQUENCE_KEY, TABLE_UUID_KEY

    catalog = iceberg.open_catalog(settings.catalog, settings.warehouse)
    table = iceberg.create_table(
        catalog,
        warehouse=settings.warehouse,
        resolution=1,
        hash_index_path=settings.warehouse_hash,
    )
    spec_id = table.metadata.default_spec_id
    cells = [f"81{n:03x}ffffffffff" for n in range(200)]
    made = 0
    while made < files:
        batch = min(HISTORY_BATCH, files - made)
        token = f"history-{made // HISTORY_BATCH}"
        entries = []
        for i in range(batch):
            cell, year = cells[(made + i) % len(cells)], 1985 + (made + i) % 40
            entries.append(
                DataFile.from_args(
                    content=DataFileContent.DATA,
                    file_path=layout.warehouse_file(settings.warehouse, cell, year, token, i),
                    file_format=FileFormat.PARQUET,
                    partition=Record(cell, year - 1970),
                    record_count=2,
                    file_size_in_bytes=40_000,
                    spec_id=spec_id,
                )
            )
        properties = {
            iceberg.FILES_ADDED_PROPERTY: str(batch),
            iceberg.RUN_TOKENS_PROPERTY: token,
        }
        with (
            table.transaction() as tx,
            tx.update_snapshot(snapshot_properties=properties).fast_append() as append,
        ):
            for entry in entries:
                append.append_data_file(entry)
        made += batch
        print(f"  history: {made:,} data files registered", flush=True)
    table = iceberg.load_table(catalog)
    write_hash_index(
        HashIndex.empty(),
        settings.warehouse_hash,
        state={
            TABLE_UUID_KEY: str(table.metadata.table_uuid),
            SEQUENCE_KEY: str(table.metadata.last_sequence_number),
        },
    )


def history(args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    from earthcatalog_dagster.config import Settings

    print(f"(b) one day of {args.items:,} items: empty table vs {args.history_files:,} files")
    empty = Settings.embedded(workdir / "empty")
    old = Settings.embedded(workdir / "history")
    start = time.perf_counter()
    make_history(old, args.history_files)
    print(f"  history built in {time.perf_counter() - start:.1f} s; {table_shape(old)}")
    results = {}
    for name, settings in (("empty", empty), ("history", old)):
        results[name] = run_day(settings, START, args.items, 7, "ingest")
        print(f"  {name:>8}: {results[name]:.2f} s", flush=True)
    print(f"history / empty: {results['history'] / results['empty']:.2f}x (budget 1.25x)")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--items", type=int, default=2_000)
    parser.add_argument("--history-files", type=int, default=1_000_000)
    parser.add_argument("--path", choices=("ingest", "dagster"), default="ingest")
    parser.add_argument("--skip-daily", action="store_true")
    parser.add_argument("--skip-history", action="store_true")
    parser.add_argument("--workdir", help="default: a temporary folder, removed at the end")
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load average {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        workdir = Path(args.workdir or tmp)
        if not args.skip_daily:
            daily(args, workdir)
        if not args.skip_history:
            history(args, workdir)
    print(f"load average at the end {loadavg()}")


if __name__ == "__main__":
    main()
