"""Benchmark ``search()`` against the way the operators' users read the catalog today.

Builds (or reuses, with ``--workdir``) an embedded catalog of N synthetic ITS_LIVE items
(one ``generate_day`` + ``ingest`` at H3 resolution 1), then times three queries, each
answered two ways in the same process:

* ``search()``: exact (shapely on the WKB), de-duplicated, one snapshot;
* the users' method: PyIceberg partition pruning to file paths (the same H3 cells and the
  years of the interval), then DuckDB ``read_parquet`` over those paths with a bbox
  predicate on the covering columns (approximate: bbox overlap, and an item is counted once
  per cell it overlaps).

Queries: a glacier point over three years, a regional bbox over three years, and a
CQL2-filtered regional query. Each is run ``--repeat`` times after one warm-up; the median
and the first run are reported, with the items each method returned.

Then the cold runs (``--cold K``, 0 to skip): each query as the first one of a fresh
process, K times per method (median reported), modules imported and the table opened
before the clock starts — what an ``earthcatalog-dagster search`` command pays. ``search()``
twice: with an empty manifest-index cache (``$EARTHCATALOG_QUERY_CACHE``, the first query
after a new snapshot) and with the cache the previous run left (every later process).

Usage::

    python benchmarks/bench_search.py                        # 100,000 items
    python benchmarks/bench_search.py --items 20000 --workdir /tmp/bs --keep --json out.json

Needs ``duckdb`` (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import loadavg, machine, timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

DATE = dt.date(2026, 4, 28)
YEARS = ("2024-01-01", "2026-12-31")
QUERIES: dict[str, dict[str, Any]] = {
    "point_3y": {
        "intersects": {"type": "Point", "coordinates": [-142.0, 60.2]},
        "datetime": f"{YEARS[0]}/{YEARS[1]}",
    },
    "region_3y": {"bbox": [-55.0, 60.0, -20.0, 80.0], "datetime": f"{YEARS[0]}/{YEARS[1]}"},
    "cql2_region": {
        "bbox": [70.0, 27.5, 98.0, 44.5],
        "filter": "percent_valid_pixels >= 80 AND platform = 'LC08'",
    },
}


def build(workdir: Path, items: int, seed: int) -> Any:
    """A fresh embedded catalog of ``items`` synthetic items under ``workdir``."""
    from earthcatalog_dagster import ingest
    from earthcatalog_dagster.config import Settings
    from earthcatalog_dagster.synthetic import generate_day, write_inventory

    settings = Settings.embedded(workdir)
    if Path(settings.catalog).exists():
        print(f"reusing the catalog at {workdir}")
        return settings
    started = time.perf_counter()
    day = generate_day(DATE, items, source_root=settings.source_root, seed=seed)
    manifest = write_inventory(settings.inventory, DATE, day.refs)
    print(f"generated {items} items in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    summary = ingest(manifest, settings=settings, h3_resolution=1)
    print(
        f"ingested in {time.perf_counter() - started:.1f} s: {summary.rows_written} rows, "
        f"{summary.files_written} files"
    )
    return settings


def duckdb_method(table: Any, query: dict[str, Any]) -> tuple[int, int]:
    """The users' method: pruned paths, then DuckDB with a covering-bbox predicate.

    Returns (rows, distinct ids)."""
    import duckdb
    import pyarrow.compute as pc
    import shapely
    from pyiceberg.expressions import And, GreaterThanOrEqual, In, LessThanOrEqual

    from earthcatalog_dagster.query.params import build_params
    from earthcatalog_dagster.query.plan import cover

    params = build_params(
        bbox=query.get("bbox"),
        intersects=query.get("intersects"),
        datetime=query.get("datetime"),
    )
    cells = cover(params.geometry, 1)
    # Their scan: partition filters on grid_partition and datetime (year pruning).
    row_filter: Any = In("grid_partition", cells)
    if params.start is not None:
        row_filter = And(row_filter, GreaterThanOrEqual("datetime", params.start.isoformat()))
    if params.end is not None:
        row_filter = And(row_filter, LessThanOrEqual("datetime", params.end.isoformat()))
    paths = [t.file.file_path for t in table.scan(row_filter=row_filter).plan_files()]
    if not paths:
        return 0, 0
    west, south, east, north = shapely.bounds(params.geometry)
    where = [
        f"bbox.xmin <= {east}",
        f"bbox.xmax >= {west}",
        f"bbox.ymin <= {north}",
        f"bbox.ymax >= {south}",
    ]
    if params.start is not None:
        where.append(f"datetime >= TIMESTAMPTZ '{params.start.isoformat()}'")
    if params.end is not None:
        where.append(f"datetime <= TIMESTAMPTZ '{params.end.isoformat()}'")
    if "filter" in query:
        where.append(f"({query['filter']})")  # this CQL2 text is also SQL
    # Every column of the matching rows, as Arrow: what search().to_arrow() hands back.
    sql = "SELECT * FROM read_parquet($paths) WHERE " + " AND ".join(where)
    relation = duckdb.sql(sql, params={"paths": paths})
    rows = relation.to_arrow_table() if hasattr(relation, "to_arrow_table") else relation.arrow()
    return rows.num_rows, len(pc.unique(rows["id"]))


def first_and_median(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """(first seconds, median seconds of ``repeat`` more runs, last answer)."""
    first, answer = timed(fn)
    runs = []
    for _ in range(repeat):
        seconds, answer = timed(fn)
        runs.append(seconds)
    return first, statistics.median(runs) if runs else first, answer


def cold_child(settings: Any, name: str, method: str) -> float:
    """Seconds of ``name`` by ``method`` as the first query of this process (imports and
    the table's opening not counted: both methods need them)."""
    import duckdb  # noqa: F401  (imported before the clock, as search's modules are)

    from earthcatalog_dagster import search
    from earthcatalog_dagster.query import open_table
    from earthcatalog_dagster.query.execute import use_search_memory_pool

    use_search_memory_pool()  # as the search and serve commands do at start-up
    table = open_table(settings)
    started = time.perf_counter()
    if method == "duckdb":
        duckdb_method(table, QUERIES[name])
    else:
        search(table=table, **QUERIES[name]).to_arrow()
    return time.perf_counter() - started


def cold_runs(
    workdir: Path, items: int, name: str, method: str, cache: Path | None, repeat: int
) -> float:
    """Median seconds of ``repeat`` fresh processes running :func:`cold_child`; ``cache``:
    the manifest-index cache folder to use, emptied before each run when it is ``None``."""
    import subprocess

    runs = []
    for _ in range(repeat):
        folder = cache or Path(tempfile.mkdtemp(prefix="bench_search_cache_"))
        env = os.environ | {"EARTHCATALOG_QUERY_CACHE": str(folder)}
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--items",
                str(items),
                "--workdir",
                str(workdir),
                "--child",
                f"{name}:{method}",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(float(done.stdout.strip().splitlines()[-1]))
        if cache is None:
            shutil.rmtree(folder, ignore_errors=True)
    return statistics.median(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--cold",
        type=int,
        default=3,
        metavar="K",
        help="fresh-process runs per query and method (0: none)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)  # QUERY:METHOD, one cold run
    args = parser.parse_args(argv)
    if args.child:
        from earthcatalog_dagster.config import Settings

        name, method = args.child.split(":")
        settings = Settings.embedded(args.workdir / str(args.items))
        print(f"{cold_child(settings, name, method):.6f}")
        return 0

    from earthcatalog_dagster import search
    from earthcatalog_dagster.query import open_table
    from earthcatalog_dagster.query.execute import use_search_memory_pool

    use_search_memory_pool()  # as the search and serve commands do at start-up
    temporary = args.workdir is None
    # This process's own, empty manifest-index cache: its first query decodes the manifests.
    cache = tempfile.mkdtemp(prefix="bench_search_cache_")
    os.environ["EARTHCATALOG_QUERY_CACHE"] = cache
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_search_"))
    results: dict[str, Any] = {
        "items": args.items,
        "machine": machine(),
        "queries": {},
    }
    try:
        settings = build(workdir / str(args.items), args.items, args.seed)
        table = open_table(settings)
        summary = table.current_snapshot().summary.additional_properties
        print(
            f"table: {summary.get('total-data-files')} files, {summary.get('total-records')} rows"
        )
        for name, query in QUERIES.items():

            def ours(query: dict[str, Any] = query) -> Any:
                result = search(table=table, **query)
                result.to_arrow()
                return result

            first, median, result = first_and_median(ours, args.repeat)
            d_first, d_median, (rows, distinct) = first_and_median(
                lambda query=query: duckdb_method(table, query), args.repeat
            )
            explain = result.explain()
            entry = {
                "search_first_s": round(first, 4),
                "search_median_s": round(median, 4),
                "search_items": result.count(),
                "files_planned": explain.files_planned,
                "files_skipped_by_statistics": explain.files_skipped_by_statistics,
                "duckdb_first_s": round(d_first, 4),
                "duckdb_median_s": round(d_median, 4),
                "duckdb_rows": rows,
                "duckdb_distinct_ids": distinct,
            }
            results["queries"][name] = entry
            print(
                f"{name:12s} search {median * 1000:8.1f} ms (first {first * 1000:7.1f}) "
                f"{entry['search_items']:6d} items, {explain.files_planned} files "
                f"({explain.files_skipped_by_statistics} skipped) | duckdb "
                f"{d_median * 1000:8.1f} ms (first {d_first * 1000:7.1f}) {rows} rows / "
                f"{distinct} ids (bbox overlap, not exact)"
            )
        if args.cold:
            print(f"cold: first query of a fresh process, median of {args.cold}")
            shared = Path(tempfile.mkdtemp(prefix="bench_search_cache_"))
            for name in QUERIES:
                cold = {
                    "duckdb_cold_s": cold_runs(
                        workdir, args.items, name, "duckdb", None, args.cold
                    ),
                    "search_cold_s": cold_runs(
                        workdir, args.items, name, "search", None, args.cold
                    ),
                }
                cold_runs(workdir, args.items, name, "search", shared, 1)  # fills the cache
                cold["search_cold_cached_s"] = cold_runs(
                    workdir, args.items, name, "search", shared, args.cold
                )
                results["queries"][name].update({k: round(v, 4) for k, v in cold.items()})
                print(
                    f"{name:12s} search {cold['search_cold_s'] * 1000:8.1f} ms "
                    f"(manifest index cached {cold['search_cold_cached_s'] * 1000:7.1f}) | "
                    f"duckdb {cold['duckdb_cold_s'] * 1000:8.1f} ms"
                )
            shutil.rmtree(shared, ignore_errors=True)
        results["machine"]["loadavg_after"] = loadavg()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if temporary and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
