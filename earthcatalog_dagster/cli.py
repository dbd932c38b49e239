"""The ``earthcatalog-dagster`` command line."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from earthcatalog_dagster.config import Settings

INSTANCE_YAML = """\
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env()
    return settings.with_overrides(
        warehouse=getattr(args, "warehouse", None),
        warehouse_hash=getattr(args, "hash_index", None),
        catalog=getattr(args, "catalog", None),
        catalog_remote=getattr(args, "catalog_remote", None),
        staging=getattr(args, "staging", None),
    )


def cmd_info(args: argparse.Namespace) -> int:
    from earthcatalog_dagster.pipeline.info import catalog_info

    cfg = _settings(args)
    path = cfg.catalog
    if cfg.catalog_remote and not args.catalog:  # the shared catalog as it is now
        from earthcatalog_dagster.core.remote_catalog import read_copy

        path = read_copy(cfg.catalog_remote)
    print(catalog_info(path, cfg.warehouse, cfg.warehouse_hash).render())
    return 0


def cmd_daily_delta(args: argparse.Namespace) -> int:
    """The delta of one date outside Dagster: ``DELTA_PREFIX/pending/delta_D.parquet``."""
    from earthcatalog_dagster import layout
    from earthcatalog_dagster.pipeline.delta import daily_delta

    cfg = Settings.from_env().with_overrides(
        warehouse_hash=args.warehouse_hash,
        delta_prefix=args.delta_prefix,
        inventory=args.inventory,
    )
    date = args.date or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    result = daily_delta(
        args.manifest or layout.inventory_manifest(cfg.inventory, date),
        delta_prefix=cfg.delta_prefix,
        date=date,
        hash_index_uri=cfg.warehouse_hash,
        since=args.since,
        carry_over=not args.no_carry_over,
    )
    print(json.dumps(result.as_dict(), indent=2))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from earthcatalog_dagster.pipeline.ingest import ingest

    cfg = _settings(args)
    summary = ingest(
        args.inventory,
        settings=cfg,
        source_root=args.source_root,
        mode=args.mode,
        since=args.since,
        limit=args.limit,
        update_hash_index=not args.no_hash_index,
        h3_resolution=args.h3_resolution,
        fetch_concurrency=args.fetch_concurrency,
        use_lock=not args.no_lock,
        skip_upload=args.skip_upload,
    )
    print(json.dumps(summary.as_dict(), indent=2, default=str))
    return 0 if summary.reconciles else 1


def cmd_generate(args: argparse.Namespace) -> int:
    from earthcatalog_dagster.synthetic import generate_day, write_inventory

    cfg = _settings(args)
    day = generate_day(
        args.date, args.items, source_root=cfg.source_root or cfg.home, seed=args.seed
    )
    manifest = write_inventory(cfg.inventory, args.date, day.refs, fmt=args.format)
    print(f"wrote {len(day.items):,} items and the inventory {manifest}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Two consecutive days on the embedded default, each materialized through Dagster."""
    from earthcatalog_dagster.pipeline.info import catalog_info
    from earthcatalog_dagster.synthetic import generate_day, write_inventory

    cfg = Settings.embedded(args.home) if args.home else Settings.from_env()
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or Path(cfg.home) / "dagster")
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance_yaml = dagster_home / "dagster.yaml"
    if not instance_yaml.exists():
        instance_yaml.write_text(INSTANCE_YAML)
    print(f"Embedded catalog under {cfg.home} (Dagster instance: {dagster_home})")
    dates = [args.date, args.date + dt.timedelta(days=1)]
    for seed, date in enumerate(dates, start=args.seed):
        day = generate_day(date, args.items, source_root=cfg.source_root or cfg.home, seed=seed)
        manifest = write_inventory(
            cfg.inventory, date, day.refs, fmt="parquet" if seed % 2 == 0 else "csv"
        )
        print(f"{date}: generated {len(day.items):,} ITS_LIVE items (+ a few bad objects)")
        print(f"{date}: inventory {manifest}")
    env = {
        **os.environ,
        "EARTHCATALOG_HOME": cfg.home,
        "DAGSTER_HOME": str(dagster_home),
        "EARTHCATALOG_SCHEDULER": args.scheduler,
    }
    for date in dates:
        command = [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "earthcatalog_dagster.definitions",
            "--select",
            "group:ingest",
            "--partition",
            date.isoformat(),
        ]
        print(f"{date}: dagster asset materialize --select group:ingest --partition {date} ...")
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
            print(f"error: materializing {date} failed", file=sys.stderr)
            return 1
        print(f"{date}: materialized in {time.perf_counter() - started:.1f} s")
    print()
    print(catalog_info(cfg.catalog, cfg.warehouse, cfg.warehouse_hash).render())
    print()
    print(f"See the runs: DAGSTER_HOME={dagster_home} EARTHCATALOG_HOME={cfg.home} dagster dev")
    return 0


def cmd_run_backfill(args: argparse.Namespace) -> int:
    """The operators' ``run_backfill.py``: the 4-phase pipeline on Dask."""
    from earthcatalog_dagster.pipeline.bulk import bulk_ingest

    create_client = None
    if args.scheduler == "coiled":
        create_client = _coiled_client(args)
    summary = bulk_ingest(
        args.inventory,
        mode="delta" if args.delta else "full",
        create_client=create_client,
        scheduler=args.scheduler,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        chunk_size=args.chunk_size,
        compact_rows=args.compact_rows,
        fetch_concurrency=args.fetch_concurrency,
        warehouse=args.warehouse,
        catalog=args.catalog,
        catalog_remote=args.catalog_remote,
        hash_index=args.hash_index,
        staging=args.staging,
        source_root=args.source_root,
        since=args.since,
        limit=args.limit,
        h3_resolution=args.h3_resolution,
        update_hash_index=args.update_hash_index,
        skip_inventory=args.skip_inventory,
        skip_ingest=args.skip_ingest,
        retry_pending=args.retry_pending,
        use_lock=not args.no_lock,
        skip_upload=args.skip_upload,
    )
    print(summary.render())
    return 0 if summary.reconciles else 1


def _coiled_client(args: argparse.Namespace):  # -> Callable[[], Client]
    def create() -> object:
        try:
            import coiled
        except ImportError:
            raise SystemExit(
                "error: --scheduler coiled needs the coiled package (pip install coiled)"
            ) from None
        cluster = coiled.Cluster(
            n_workers=args.coiled_n_workers,
            worker_vm_types=[args.coiled_vm_type] if args.coiled_vm_type else None,
        )
        return cluster.get_client()

    return create


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="earthcatalog-dagster",
        description="Keep the ITS_LIVE STAC catalog current (GeoParquet warehouse + Iceberg).",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)

    def roots(p: argparse.ArgumentParser) -> None:
        p.add_argument("--catalog", help="local catalog.db path (env CATALOG)")
        p.add_argument("--warehouse", help="warehouse root (env WAREHOUSE)")
        p.add_argument("--hash-index", help="hash index Parquet (env WAREHOUSE_HASH)")

    info = sub.add_parser("info", help="print the catalog summary")
    roots(info)
    info.set_defaults(func=cmd_info)

    dd = sub.add_parser(
        "daily-delta",
        help="write DELTA_PREFIX/pending/delta_D.parquet: the day's S3 Inventory minus the "
        "hash index, plus older pending deltas (reused if it exists)",
    )
    dd.add_argument(
        "manifest",
        nargs="?",
        help="the day's S3 Inventory manifest (default <INVENTORY>/<date>T01-00Z/manifest.json)",
    )
    dd.add_argument("--date", type=_date, help="delta date YYYY-MM-DD (default: yesterday, UTC)")
    dd.add_argument("--warehouse-hash", help="hash index Parquet (env WAREHOUSE_HASH)")
    dd.add_argument("--delta-prefix", help="deltas root: pending/, ingested/ (env DELTA_PREFIX)")
    dd.add_argument("--inventory", help="S3 Inventory root, default manifest (env INVENTORY)")
    dd.add_argument("--since", help="only rows with last_modified_date >= this (ISO date/time)")
    dd.add_argument("--no-carry-over", action="store_true", help="leave older pending deltas out")
    dd.set_defaults(func=cmd_daily_delta)

    ing = sub.add_parser("ingest", help="single-node ingest of an inventory (ingest())")
    ing.add_argument(
        "inventory", help="manifest.json, CSV/CSV.gz/Parquet of bucket,key, or a delta"
    )
    roots(ing)
    ing.add_argument("--staging", help="where rejects are recorded (env STAGING)")
    ing.add_argument("--source-root", help="read <root>/<bucket>/<key> instead of s3://bucket/key")
    ing.add_argument("--mode", choices=["auto", "full", "delta"], default="auto")
    ing.add_argument("--since", help="only rows with last_modified_date >= this (ISO date/time)")
    ing.add_argument("--limit", type=int)
    ing.add_argument("--h3-resolution", type=int)
    ing.add_argument("--fetch-concurrency", type=int, default=256)
    ing.add_argument("--no-hash-index", action="store_true", help="do not update the hash index")
    ing.add_argument(
        "--catalog-remote", help="shared catalog.db, e.g. s3://.../earthcatalog.db (CATALOG_REMOTE)"
    )
    ing.add_argument("--no-lock", action="store_true", help="skip the catalog lock")
    ing.add_argument(
        "--skip-upload", action="store_true", help="do not upload catalog.db to CATALOG_REMOTE"
    )
    ing.set_defaults(func=cmd_ingest)

    bf = sub.add_parser(
        "run-backfill",
        help="the 4-phase pipeline on Dask (bulk_ingest()), every flag of run_backfill.py",
    )
    bf.add_argument(
        "--inventory", required=True, help="delta Parquet, manifest.json or CSV/Parquet"
    )
    bf.add_argument("--catalog", help="local catalog.db (env CATALOG)")
    bf.add_argument(
        "--catalog-remote",
        help="shared catalog copy, e.g. s3://.../earthcatalog.db (env CATALOG_REMOTE)",
    )
    bf.add_argument("--warehouse", help="warehouse root (env WAREHOUSE)")
    bf.add_argument("--staging", help="this run's own staging prefix, e.g. .../ingest/delta_D")
    bf.add_argument("--delta", action="store_true", help="append mode: add files, keep table")
    bf.add_argument(
        "--update-hash-index", action="store_true", help="merge the new ids into the hash index"
    )
    bf.add_argument("--hash-index", help="hash index Parquet (env WAREHOUSE_HASH)")
    bf.add_argument("--skip-upload", action="store_true", help="do not upload catalog.db")
    bf.add_argument(
        "--skip-inventory", action="store_true", help="reuse existing chunks (after a crash)"
    )
    bf.add_argument("--no-lock", action="store_true", help="skip the catalog lock")
    bf.add_argument("--limit", type=int, help="only the first N items (smoke test)")
    bf.add_argument(
        "--scheduler", default="local", help="local | synchronous | coiled | tcp://host:8786"
    )
    bf.add_argument("--workers", type=int, default=4, help="Dask workers (local scheduler)")
    bf.add_argument("--chunk-size", type=int, default=10_000, help="items per chunk")
    bf.add_argument("--since", help="only rows with last_modified_date >= this")
    bf.add_argument(
        "--h3-resolution", type=int, help="required for a first full build; read from the table"
    )
    bf.add_argument("--compact-rows", type=int, default=200_000, help="max rows per file")
    bf.add_argument("--fetch-concurrency", type=int, default=256)
    bf.add_argument("--retry-pending", action="store_true", help="retry recorded failures")
    bf.add_argument("--skip-ingest", action="store_true", help="go straight to Phase 3")
    bf.add_argument("--threads-per-worker", type=int, default=1)
    bf.add_argument("--coiled-n-workers", type=int, default=50)
    bf.add_argument("--coiled-vm-type", help="e.g. m6i.large")
    bf.add_argument("--source-root", help="read <root>/<bucket>/<key> instead of s3://")
    bf.set_defaults(func=cmd_run_backfill)

    gen = sub.add_parser("generate", help="write a synthetic ITS_LIVE day and its S3 Inventory")
    roots(gen)
    gen.add_argument("--date", type=_date, default=dt.date.today() - dt.timedelta(days=1))
    gen.add_argument("--items", type=int, default=1000)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    gen.set_defaults(func=cmd_generate)

    demo = sub.add_parser(
        "demo", help="two days generated and materialized through Dagster on the embedded default"
    )
    demo.add_argument(
        "--home", help="embedded root (default $EARTHCATALOG_HOME or ./.earthcatalog)"
    )
    demo.add_argument("--date", type=_date, default=dt.date(2026, 4, 28))
    demo.add_argument("--items", type=int, default=3000, help="items per day")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument(
        "--scheduler", default="synchronous", help="synchronous | local (a Dask LocalCluster)"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    chatty = args.verbose or args.command == "run-backfill"
    logging.basicConfig(
        level=logging.INFO if chatty else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
