"""The six daily-partitioned assets of group ``ingest``, thin over the pipeline phases.

delta_inventory → staged_chunks → ndjson_items → warehouse_parquets → iceberg_table →
hash_index. Partition key D is the delta date; every file of D's run lives under
``<staging>/delta_D/``. Each asset returns a small descriptor (stored by the staging IO
manager) and reports metadata a person reads at a glance.
"""

import functools
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    Failure,
    MetadataValue,
    Output,
    asset,
)
from dagster_aws.s3 import S3Resource
from pydantic import Field

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import hash_ids, load_hash_index
from earthcatalog_dagster.core.inventory import ids_of_keys
from earthcatalog_dagster.orchestration.partitions import backfill_policy, daily_partitions
from earthcatalog_dagster.orchestration.resources import (
    DaskCompute,
    IcebergCatalog,
    StorageRoots,
    use_s3,
    with_s3,
)
from earthcatalog_dagster.orchestration.runs import dates_being_ingested
from earthcatalog_dagster.pipeline import phases
from earthcatalog_dagster.pipeline.delta import DeltaSourceNotFound, daily_delta
from earthcatalog_dagster.pipeline.hash_sync import read_ids, sync_hash_index
from earthcatalog_dagster.pipeline.overlap import drop_registered_rows, registered_ids

GROUP = "ingest"
ICEBERG_POOL = "iceberg_commit"

_COMMON: dict[str, Any] = {
    "partitions_def": daily_partitions,
    "backfill_policy": backfill_policy,
    "group_name": GROUP,
    "io_manager_key": "staging_io_manager",
}


class DeltaConfig(Config):
    """Where the day's S3 Inventory manifest is, when no pending delta exists yet."""

    manifest_template: str = Field(
        default="{inventory}/{date}T01-00Z/manifest.json",
        description="Manifest path; {inventory} is the inventory root, {date} the delta date",
    )
    since: str | None = Field(default=None, description="Only rows modified on/after this")


class ChunkConfig(Config):
    """The operators' chunking inputs."""

    chunk_size: int = Field(default=10_000, description="Items per chunk")
    limit: int | None = Field(default=None, description="Stop after this many items (smoke)")
    since: str | None = Field(default=None, description="Only rows modified on/after this")


class ComputeConfig(Config):
    """Where this run's tasks run; unset fields take the ``compute`` resource's values."""

    scheduler: str | None = Field(default=None, description="local | synchronous | address")
    workers: int | None = Field(default=None, description="Dask workers (local scheduler)")
    fetch_concurrency: int = Field(default=256, description="Concurrent GETs per task")
    compact_rows: int = Field(default=200_000, description="Maximum rows per warehouse file")


def _staging(roots: StorageRoots, context: AssetExecutionContext) -> str:
    return layout.staging_for(roots.settings().staging, context.partition_key)


def _seconds(start: float) -> float:
    return round(time.perf_counter() - start, 3)


@asset(
    **_COMMON,
    description=(
        "The day's delta: `delta/pending/delta_D.parquet` (bucket, key, id_hash) if it exists "
        "(minus ids indexed meanwhile); otherwise built from the S3 Inventory of D anti-joined "
        "against the hash index, plus the un-indexed rows of older pending deltas."
    ),
)
def delta_inventory(
    context: AssetExecutionContext, config: DeltaConfig, roots: StorageRoots, s3: S3Resource
) -> Output[dict[str, Any]]:
    start = time.perf_counter()
    use_s3(s3)
    cfg = roots.settings()
    date = context.partition_key
    manifest = config.manifest_template.format(inventory=cfg.inventory, date=date)
    try:
        result = daily_delta(
            manifest,
            delta_prefix=cfg.delta_prefix,
            date=date,
            hash_index_uri=cfg.warehouse_hash,
            since=config.since,
            # Dates another unfinished run ingests (a backfill's other dates) are not
            # carried: that run brings them in.
            in_flight=dates_being_ingested(context.instance, exclude_run_id=context.run.run_id),
        )
    except DeltaSourceNotFound as exc:
        raise Failure(
            description=str(exc), metadata={"delta": exc.delta, "manifest": exc.manifest}
        ) from None
    delta_uri = result.uri
    source = "pending delta" if result.reused else manifest
    descriptor = {"delta": delta_uri, "rows": result.rows, "source": source}
    return Output(
        descriptor,
        metadata={
            "delta": MetadataValue.path(delta_uri),
            "source": source,
            "reused": result.reused,
            "rows in": result.source_rows if not result.reused else result.rows + result.pruned,
            "already ingested": result.already_ingested + result.pruned,
            "carried from older pending deltas": result.carried,
            "older pending deltas": ", ".join(result.carried_from) or "none",
            "older pending deltas left to their runs": ", ".join(result.left_in_flight) or "none",
            "duplicate keys dropped": result.duplicates_dropped,
            "rows out": result.rows,
            "hash index size": result.index_size,
            "duration s": _seconds(start),
        },
    )


@asset(
    **_COMMON,
    description="The delta split into `chunk_NNNNNN.parquet` files of `chunk_size` rows.",
)
def staged_chunks(
    context: AssetExecutionContext,
    config: ChunkConfig,
    roots: StorageRoots,
    s3: S3Resource,
    delta_inventory: dict[str, Any],
) -> Output[dict[str, Any]]:
    start = time.perf_counter()
    use_s3(s3)
    plan = phases.write_chunks(
        delta_inventory["delta"],
        _staging(roots, context),
        chunk_size=config.chunk_size,
        since=config.since,
        limit=config.limit,
    )
    return Output(
        {"chunks": plan.chunks, "rows": plan.rows, "chunk_size": plan.chunk_size},
        metadata={
            "rows in": delta_inventory["rows"],
            "rows out": plan.rows,
            "chunks": len(plan.chunks),
            "reused from an earlier attempt": plan.reused,
            "duration s": _seconds(start),
        },
    )


@asset(
    **_COMMON,
    description=(
        "Per chunk (one Dask task each): fetch, fan out to H3 cells, write NDJSON per "
        "(cell, year); failed keys to `pending_chunks/`, bad items to `rejects/`."
    ),
)
def ndjson_items(
    context: AssetExecutionContext,
    config: ComputeConfig,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    compute: DaskCompute,
    s3: S3Resource,
    staged_chunks: dict[str, Any],
) -> Output[dict[str, Any]]:
    start = time.perf_counter()
    use_s3(s3)
    cfg = roots.settings()
    task = with_s3(
        functools.partial(
            phases.ingest_chunk,
            staging_dir=_staging(roots, context),
            source_root=cfg.source_root,
            resolution=catalog.resolution(cfg),
            fetch_concurrency=config.fetch_concurrency,
        ),
        s3,
    )
    results = compute.map(
        task, staged_chunks["chunks"], scheduler=config.scheduler, workers=config.workers
    )
    buckets = sorted({(cell, year) for r in results for cell, year, _ in r.buckets})
    totals = {
        name: sum(getattr(r, name) for r in results)
        for name in ("rows", "fetched", "missing", "failed", "rejected", "items", "rows_out")
    }
    descriptor = {"buckets": [list(b) for b in buckets], **totals}
    return Output(
        descriptor,
        metadata={
            "rows in": totals["rows"],
            "items fetched": totals["fetched"],
            "items missing (404)": totals["missing"],
            "items failed (pending retry)": totals["failed"],
            "items rejected": totals["rejected"],
            "items staged": totals["items"],
            "rows out (item × cell)": totals["rows_out"],
            "average fan-out": round(totals["rows_out"] / totals["items"], 3)
            if totals["items"]
            else 0.0,
            "cells": len({cell for cell, _ in buckets}),
            "years": ", ".join(sorted({year for _, year in buckets})) or "none",
            "chunks skipped (already done)": sum(r.skipped for r in results),
            "duration s": _seconds(start),
        },
    )


@asset(
    **_COMMON,
    description=(
        "Per (cell, year) (one Dask task each): NDJSON deduplicated by id (latest `updated` "
        "wins) and written as GeoParquet under deterministic names in the warehouse."
    ),
    check_specs=[
        AssetCheckSpec(
            "files_match_their_bucket",
            asset="warehouse_parquets",
            blocking=True,
            description="Every new file holds exactly one (cell, year), the one its path names",
        ),
        AssetCheckSpec(
            "no_duplicate_rows",
            asset="warehouse_parquets",
            blocking=True,
            description=(
                "No (id, grid_partition) twice among the new rows; rows whose id the table "
                "holds already are dropped at registration"
            ),
        ),
        AssetCheckSpec(
            "delta_accounted_for",
            asset="warehouse_parquets",
            description="Every id of the delta is in the new files, in rejects or pending",
        ),
    ],
)
def warehouse_parquets(
    context: AssetExecutionContext,
    config: ComputeConfig,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    compute: DaskCompute,
    s3: S3Resource,
    ndjson_items: dict[str, Any],
):
    start = time.perf_counter()
    use_s3(s3)
    cfg = roots.settings()
    staging = _staging(roots, context)
    table = catalog.load_table(cfg)
    registered = frozenset(iceberg.registered_files(table)) if table is not None else frozenset()
    task = with_s3(
        functools.partial(
            _compact,
            staging_dir=staging,
            warehouse=cfg.warehouse,
            token=context.partition_key,
            registered=registered,
            compact_rows=config.compact_rows,
        ),
        s3,
    )
    results = compute.map(
        task,
        [tuple(b) for b in ndjson_items["buckets"]],
        scheduler=config.scheduler,
        workers=config.workers,
    )
    files = [f for r in results for f in r.files]
    rows = sum(r.rows for r in results)
    yield Output(
        {"files": files, "rows": rows},
        metadata={
            "rows in (item × cell)": ndjson_items["rows_out"],
            "rows out": rows,
            "duplicates dropped": sum(r.duplicates_dropped for r in results),
            "files written": len(files),
            "bytes written": sum(r.bytes for r in results),
            "buckets": len(results),
            "buckets skipped (already done)": sum(r.skipped for r in results),
            "duration s": _seconds(start),
        },
    )
    yield from _warehouse_checks(files, staging, cfg.warehouse_hash, ndjson_items)


def _compact(bucket: tuple[str, str], **kwargs: Any) -> phases.BucketResult:
    cell, year = bucket
    return phases.compact_bucket(kwargs.pop("staging_dir"), cell, year, **kwargs)


def _warehouse_checks(files: list[str], staging: str, hash_index_uri: str, ndjson: dict[str, Any]):
    # On a rerun a file may be gone: registration deletes a file whose every row another
    # run registered first (pipeline/overlap.py).
    files = [uri for uri in files if storage.exists(uri)]
    parts = [_file_rows(uri) for uri in files]
    mismatched = []
    for uri, rows in zip(files, parts, strict=True):
        cell, year = layout.parse_warehouse_file(uri) or ("?", "?")
        cells = set(pc.unique(rows["grid_partition"]).to_pylist())
        years = {
            str(y) if y is not None else layout.NO_YEAR
            for y in pc.unique(pc.year(rows["datetime"])).to_pylist()
        }
        if cells != {cell} or years != {year}:
            mismatched.append(f"{uri}: cells {sorted(cells)}, years {sorted(years)}")
    yield AssetCheckResult(
        check_name="files_match_their_bucket",
        passed=not mismatched,
        metadata={"files checked": len(files), "mismatched": "\n".join(mismatched[:20])},
    )

    new = pa.concat_tables(parts) if parts else None
    pairs = new.num_rows if new is not None else 0
    distinct = (
        pc.count_distinct(
            pc.binary_join_element_wise(new["id"], new["grid_partition"], "\x00")
        ).as_py()
        if new is not None
        else 0
    )
    ids = pc.unique(new["id"]) if new is not None else pa.array([], pa.string())
    index = load_hash_index(hash_index_uri)
    already = int(index.contains(hash_ids(ids)).sum()) if len(ids) else 0
    yield AssetCheckResult(
        check_name="no_duplicate_rows",
        passed=distinct == pairs,
        metadata={
            "new rows": pairs,
            "repeated (id, cell) among new rows": pairs - distinct,
            "new ids already in the table (dropped at registration)": already,
        },
    )

    # Every id of the run's chunks must be in a new file, recorded as rejected/missing or
    # pending retry, or already in the table (a delta reused after a partial run).
    chunk_keys = [
        storage.read_parquet(o.uri, columns=["key"])["key"]
        for o in storage.list_objects(layout.join(staging, "chunks"), suffix=".parquet")
    ]
    recorded = [
        storage.read_parquet(o.uri, columns=["key"])["key"]
        for part in ("rejects", "pending_chunks")
        for o in storage.list_objects(layout.join(staging, part), suffix=".parquet")
    ]
    delta_ids = pc.unique(
        pa.chunked_array([ids_of_keys(k) for k in chunk_keys], pa.string())
    )
    known = pa.chunked_array(
        [ids, *(ids_of_keys(k) for k in recorded)], type=pa.string()
    ).combine_chunks()
    unaccounted = delta_ids.filter(pc.invert(pc.is_in(delta_ids, value_set=known)))
    if len(unaccounted):
        in_table = index.contains(hash_ids(unaccounted))
        unaccounted = unaccounted.filter(pa.array(~in_table))
    counts_add_up = (
        ndjson["items"] + ndjson["rejected"] + ndjson["missing"] + ndjson["failed"]
        == ndjson["rows"]
    )
    yield AssetCheckResult(
        check_name="delta_accounted_for",
        passed=counts_add_up and len(unaccounted) == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "delta ids": len(delta_ids),
            "in warehouse": ndjson["items"],
            "rejected": ndjson["rejected"],
            "missing (404)": ndjson["missing"],
            "pending retry": ndjson["failed"],
            "unaccounted": len(unaccounted),
            "unaccounted sample": ", ".join(unaccounted.slice(0, 5).to_pylist()),
        },
    )


def _file_rows(uri: str) -> pa.Table:
    return storage.read_parquet(uri, columns=["id", "grid_partition", "datetime"])


@asset(
    **_COMMON,
    pool=ICEBERG_POOL,
    description=(
        "The new warehouse files registered in `earthcatalog.stac_items` in one snapshot "
        "(files already registered are skipped). Runs in pool `iceberg_commit`."
    ),
)
def iceberg_table(
    context: AssetExecutionContext,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    s3: S3Resource,
    warehouse_parquets: dict[str, Any],
) -> Output[dict[str, Any]]:
    start = time.perf_counter()
    use_s3(s3)
    cfg = roots.settings()
    with catalog.locked(cfg):
        table = catalog.load_or_create_table(cfg)
        table_files = iceberg.registered_files(table)
        files_before = len(table_files)
        # Overlapping deltas (carried-over rows, side-by-side backfills): drop rows whose
        # id another run registered first, here where commits are serialized.
        overlap = drop_registered_rows(
            warehouse_parquets["files"],
            registered_ids(table, cfg.warehouse_hash),
            table_files,
        )
        registration = iceberg.register_files(table, overlap.files)
        snapshot = table.current_snapshot()
    descriptor = {
        "files": overlap.files,
        "snapshot_id": registration.snapshot_id,
        "added": registration.added,
        "skipped": registration.skipped,
    }
    return Output(
        descriptor,
        metadata={
            "snapshot id": str(snapshot.snapshot_id) if snapshot else "none",
            "files registered": registration.added,
            "files already registered": registration.skipped,
            "rows dropped (id registered by another run)": overlap.rows_dropped,
            "files rewritten without those rows": len(overlap.rewritten),
            "files removed (all rows registered elsewhere)": len(overlap.removed),
            "table files before": files_before,
            "table files after": files_before + registration.added,
            "duration s": _seconds(start),
        },
    )


@asset(
    **_COMMON,
    pool=ICEBERG_POOL,
    description=(
        "The ids of the new files merged into the hash index; then the delta moves from "
        "`pending/` to `ingested/delta_D.done` and the staging NDJSON is cleaned."
    ),
    check_specs=[
        AssetCheckSpec(
            "index_holds_new_ids",
            asset="hash_index",
            description="The hash index holds every id of the new warehouse files",
        )
    ],
)
def hash_index(
    context: AssetExecutionContext,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    s3: S3Resource,
    iceberg_table: dict[str, Any],
):
    start = time.perf_counter()
    use_s3(s3)
    cfg = roots.settings()
    with catalog.locked(cfg):
        table = catalog.load_or_create_table(cfg)
        synced = sync_hash_index(table, cfg.warehouse_hash)
    date = context.partition_key
    done = layout.delta_ingested(cfg.delta_prefix, date)
    storage.move(layout.delta_pending(cfg.delta_prefix, date), done)
    cleaned = phases.clear_markers(_staging(roots, context))
    yield Output(
        {"hashes_before": synced.before, "hashes_after": synced.after},
        metadata={
            "hashes before": synced.before,
            "hashes after": synced.after,
            "hashes added": synced.added,
            "files read": synced.files_read,
            "delta": MetadataValue.path(done),
            "staging files cleaned": cleaned,
            "duration s": _seconds(start),
        },
    )
    new_ids = read_ids(iceberg_table["files"])
    index = load_hash_index(cfg.warehouse_hash)
    missing = int((~index.contains(hash_ids(new_ids))).sum()) if len(new_ids) else 0
    yield AssetCheckResult(
        check_name="index_holds_new_ids",
        passed=missing == 0,
        metadata={"ids checked": len(new_ids), "ids missing from the index": missing},
    )


ingest_assets = [
    delta_inventory,
    staged_chunks,
    ndjson_items,
    warehouse_parquets,
    iceberg_table,
    hash_index,
]
