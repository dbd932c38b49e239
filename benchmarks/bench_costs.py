"""The cost model: what one item and one warehouse file cost, and the floor they imply.

Measures each unit of work of an ingest alone, single-threaded, on the items of one
synthetic ITS_LIVE day, then adds them up into the least time a run of ``--items`` items
can take on this machine (see ``benchmarks/README.md``, "Cost model"):

per item
    ``fetch``     one GET through :func:`~earthcatalog_dagster.core.fetch.fetch_objects`,
                  from the local folder and over HTTP from the static S3 server of
                  ``bench_http.py`` (``s3://its-live-data/<key>``, unsigned, as in
                  production), wall time at the run's concurrency;
    ``json``      ``orjson.loads`` of the body;
    ``arrow``     the rest of :func:`~earthcatalog_dagster.core.items.parse_items`:
                  validation, WKB, coercion and Arrow columns;
    ``fan_out``   :func:`~earthcatalog_dagster.core.buckets.explode_to_cells` at
                  resolution 1.
per file
    ``encode``    :func:`~earthcatalog_dagster.core.geoparquet.to_parquet_bytes` of one
                  (cell, year) bucket (sorting excluded: buckets arrive sorted);
    ``data_file`` its Iceberg ``DataFile`` (statistics and partition from the footer
                  the writer handed over): :func:`~earthcatalog_dagster.core.catalog.
                  data_files`;
    ``register``  ``DataFile`` + manifest entry + commit: :func:`register_files` of every
                  file in one snapshot, per file, footers handed over (no re-read);
    ``put``       :func:`storage.write_bytes` of the encoded bytes to a local folder.

The floor assumes perfect use of ``--cores``: per-item and encode work split over the
cores, registration on one (it is one Python commit), fetch overlapped with CPU work
(its CPU is in the HTTP fetch's wall time; the server shares the machine).

Usage::

    python benchmarks/bench_costs.py --items 20000
    python benchmarks/bench_costs.py --items 20000 --workdir /tmp/costs --json costs.json
    python benchmarks/bench_costs.py --items 20000 --no-http      # local folder only
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import machine, timed

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a checkout

DATE = dt.date(2026, 4, 28)


def best_of(repeat: int, fn: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs (the least disturbed by other work on the machine)."""
    runs = [timed(fn) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[-1][1]


def load_day(workdir: Path, n: int) -> tuple[list[bytes], list[str], Any]:
    """Bodies, keys and inventory refs of a synthetic day of ``n`` good items, generated
    once per workdir."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from earthcatalog_dagster import layout
    from earthcatalog_dagster.synthetic import generate_day

    source = workdir / str(n) / "source"  # <source>/its-live-data/<key>, as bench_http
    saved = workdir / str(n) / "refs.parquet"
    if not saved.exists():
        day = generate_day(DATE, n, source_root=str(source), bad=False)
        pq.write_table(day.refs, saved)
    refs = pq.read_table(saved)
    refs = refs.filter(pc.ends_with(refs["key"], ".stac.json"))
    keys = refs["key"].to_pylist()
    bodies = []
    for key in keys:
        with open(layout.source_object("its-live-data", key, str(source)), "rb") as f:
            bodies.append(f.read())
    return bodies, keys, refs


def measure_items(bodies: list[bytes], keys: list[str], repeat: int) -> dict[str, Any]:
    import orjson

    from earthcatalog_dagster.core.buckets import explode_to_cells
    from earthcatalog_dagster.core.items import parse_items
    from earthcatalog_dagster.pipeline.runtime import paused_gc

    n = len(bodies)
    with paused_gc():  # as the pipeline runs them
        json_s, _ = best_of(repeat, lambda: [orjson.loads(b) for b in bodies])
        parse_s, parsed = best_of(repeat, lambda: parse_items(bodies, keys))
        fan_s, exploded = best_of(repeat, lambda: explode_to_cells(parsed, 1))
    return {
        "items": n,
        "json_us": 1e6 * json_s / n,
        "arrow_us": 1e6 * max(parse_s - json_s, 0.0) / n,
        "fan_out_us": 1e6 * fan_s / n,
        "rows": exploded.num_rows,
        "exploded": exploded,
    }


def measure_fetch(refs: Any, source_root: str | None, concurrency: int) -> float:
    """Wall µs per object of one ``fetch_objects`` over every ref."""
    from earthcatalog_dagster.core.fetch import fetch_objects

    seconds, result = timed(
        lambda: fetch_objects(refs, source_root=source_root, concurrency=concurrency)
    )
    if result.missing.num_rows or result.failed.num_rows:
        raise SystemExit(
            f"fetch from {source_root}: {result.missing.num_rows} missing,"
            f" {result.failed.num_rows} failed — is the day served there?"
        )
    return 1e6 * seconds / refs.num_rows


def measure_http_fetch(refs: Any, home: Path, args: argparse.Namespace) -> float:
    """Wall µs per object fetched over HTTP from ``bench_http.py``'s static S3 server."""
    from bench_http import Server  # beside this script

    from earthcatalog_dagster.core import storage

    server = Server("static", home / "source")
    try:
        storage.configure_s3(region="us-west-2", endpoint_url=server.endpoint)
        os.environ["AWS_ALLOW_HTTP"] = "true"
        storage.clear_cache()
        return measure_fetch(refs, None, args.fetch_concurrency)
    finally:
        server.stop()
        storage.configure_s3()


def buckets_of(exploded: Any) -> list[Any]:
    import pyarrow as pa

    from earthcatalog_dagster.core.buckets import dedupe_latest, split_buckets
    from earthcatalog_dagster.core.schema import WAREHOUSE_SCHEMA

    rows = exploded.cast(pa.schema(WAREHOUSE_SCHEMA))
    return [dedupe_latest(bucket) for _, bucket in split_buckets(rows)]


def measure_files(buckets: list[Any], workdir: Path) -> dict[str, Any]:
    from earthcatalog_dagster.core import catalog as iceberg
    from earthcatalog_dagster.core import storage
    from earthcatalog_dagster.core.geoparquet import WrittenFile, _encode

    files = len(buckets)
    encode_s, encoded = timed(lambda: [_encode(b, True) for b in buckets])

    home = Path(tempfile.mkdtemp(dir=workdir, prefix="costs_"))
    warehouse = str(home / "warehouse")
    uris = [f"{warehouse}/bench/part_costs_{i}.parquet" for i in range(files)]
    put_s, _ = timed(
        lambda: [storage.write_bytes(u, d) for u, (d, _) in zip(uris, encoded, strict=True)]
    )

    catalog = iceberg.open_catalog(str(home / "catalog.db"), warehouse)
    table = iceberg.create_table(
        catalog, warehouse=warehouse, resolution=1, hash_index_path=str(home / "h.parquet")
    )
    footers = {
        u: WrittenFile(u, len(d), footer) for u, (d, footer) in zip(uris, encoded, strict=True)
    }
    data_file_s, _ = timed(lambda: iceberg.data_files(table, uris, footers=footers))
    register_s, _ = timed(lambda: iceberg.register_files(table, uris, footers=footers))
    per = lambda s: None if s is None else 1e3 * s / files  # noqa: E731
    return {
        "files": files,
        "rows": sum(b.num_rows for b in buckets),
        "encode_ms": per(encode_s),
        "data_file_ms": per(data_file_s),
        "register_ms": per(register_s),
        "put_local_ms": per(put_s),
        "bytes_per_file": sum(len(d) for d, _ in encoded) / files,
    }


def floor(
    items: dict[str, Any], files: dict[str, Any], fetch_us: float | None, cores: int
) -> dict[str, float]:
    """Least seconds for the day on ``cores`` cores (see the module doc for the model)."""
    per_item_cpu = items["json_us"] + items["arrow_us"] + items["fan_out_us"]
    item_s = items["items"] * per_item_cpu / 1e6 / cores
    encode_s = files["files"] * files["encode_ms"] / 1e3 / cores
    register_s = files["files"] * (files["register_ms"] + files["put_local_ms"] / cores) / 1e3
    fetch_s = items["items"] * (fetch_us or 0.0) / 1e6
    cpu_s = item_s + encode_s + register_s
    return {
        "items_s": item_s,
        "encode_s": encode_s,
        "register_put_s": register_s,
        "fetch_s": fetch_s,
        "floor_s": max(cpu_s, fetch_s),
        "floor_items_per_s": items["items"] / max(cpu_s, fetch_s),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--workdir", default=None, help="keeps the generated day between runs")
    parser.add_argument(
        "--no-http", action="store_true", help="skip the fetch over HTTP (local folder only)"
    )
    parser.add_argument("--fetch-concurrency", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="best of N for per-item costs")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_costs_"))
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine()
    bodies, keys, refs = load_day(workdir, args.items)
    items = measure_items(bodies, keys, args.repeat)
    buckets = buckets_of(items.pop("exploded"))
    fetch_local = measure_fetch(
        refs, str(workdir / str(args.items) / "source"), args.fetch_concurrency
    )
    fetch_http = None if args.no_http else measure_http_fetch(refs, workdir / str(args.items), args)
    files = measure_files(buckets, workdir)
    model = floor(items, files, fetch_http, args.cores)
    info["loadavg_end"] = machine()["loadavg"]

    print(
        f"machine: {info['cpus']} CPUs, Python {info['python']},"
        f" loadavg {info['loadavg']} → {info['loadavg_end']}"
    )
    print(
        f"{items['items']:,} items → {items['rows']:,} rows in {files['files']:,} files"
        f" ({files['bytes_per_file'] / 1024:.1f} KiB each)"
    )
    print("per item (one core)                 µs")
    concurrency = f"(wall, concurrency {args.fetch_concurrency})"
    print(f"  fetch, local folder            {fetch_local:8.1f}  {concurrency}")
    if fetch_http is not None:
        print(f"  fetch, HTTP                    {fetch_http:8.1f}  {concurrency}")
    for name in ("json", "arrow", "fan_out"):
        print(f"  {name:<30} {items[name + '_us']:8.1f}")
    print("per file (one core)                 ms")
    for name in ("encode", "data_file", "register", "put_local"):
        value = files[name + "_ms"]
        if value is not None:
            print(f"  {name:<30} {value:8.3f}")
    print(f"floor on {args.cores} cores                    s")
    for name, value in model.items():
        print(
            f"  {name:<30} {value:8.2f}"
            if not name.endswith("per_s")
            else f"  {name:<30} {value:8,.0f}"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": info,
                    "items": items,
                    "fetch_local_us": fetch_local,
                    "fetch_http_us": fetch_http,
                    "files": files,
                    "floor": model,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
