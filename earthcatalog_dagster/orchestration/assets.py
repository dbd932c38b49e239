"""The six daily-partitioned assets of group ``ingest``, thin over the pipeline.

delta_inventory → staged_chunks → ndjson_items → warehouse_parquets → iceberg_table →
hash_index. Partition key D is the delta date; every file of D's run lives under
``<staging>/delta_D/``. Each asset builds one :class:`~earthcatalog_dagster.options.IngestOptions`
from its ``Config`` and the resources, runs the pipeline function of its phase, and
returns a typed descriptor (:mod:`.descriptors`, stored by the staging IO manager) with
metadata a person reads at a glance. The commit is the one commit path
(:mod:`earthcatalog_dagster.pipeline.commit`) that ``ingest()`` and ``bulk_ingest()`` use;
the checks are in :mod:`.checks`.

A date whose delta is ingested already (``ingested/delta_D.done`` and no pending delta) is
a no-op that succeeds: ``delta_inventory`` returns an :class:`AlreadyIngested` descriptor
and every downstream asset passes it on without touching anything.
"""

import datetime as dt
import functools
import time
from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    Config,
    Failure,
    FreshnessPolicy,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.options import DEFAULTS, IngestOptions, OptionError
from earthcatalog_dagster.orchestration import checks
from earthcatalog_dagster.orchestration.descriptors import (
    AlreadyIngested,
    ChunksDescriptor,
    DeltaDescriptor,
    HashIndexDescriptor,
    NdjsonDescriptor,
    RegistrationDescriptor,
    WarehouseDescriptor,
)
from earthcatalog_dagster.orchestration.partitions import backfill_policy, daily_partitions
from earthcatalog_dagster.orchestration.resources import (
    DaskCompute,
    DataPlaneS3,
    IcebergCatalog,
    StorageRoots,
    run_options,
)
from earthcatalog_dagster.orchestration.runs import dates_being_ingested
from earthcatalog_dagster.pipeline import phases
from earthcatalog_dagster.pipeline.commit import (
    ResolutionError,
    TablePlan,
    current_table,
    plan_table,
    register,
    session_for,
    sync_index,
)
from earthcatalog_dagster.pipeline.compute import release_pool, writer_threads
from earthcatalog_dagster.pipeline.delta import DeltaSourceNotFound, daily_delta
from earthcatalog_dagster.pipeline.handover import read_footers, write_footers
from earthcatalog_dagster.pipeline.hash_sync import merge_staged_aliases, read_staged_aliases
from earthcatalog_dagster.pipeline.outcomes import (
    MISMATCH_EXAMPLES,
    SourceUnreadable,
    check_missing,
    describe_mismatches,
)

GROUP = "ingest"
ICEBERG_POOL = "iceberg_commit"
#: The table is stale when no partition was committed for a day and a few hours (the daily
#: ingest runs at 04:00 UTC; warn after 26 h, fail after 30 h).
TABLE_FRESHNESS = FreshnessPolicy.time_window(
    fail_window=dt.timedelta(hours=30), warn_window=dt.timedelta(hours=26)
)
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
    since: str | None = Field(default=DEFAULTS.since, description="Only rows modified on/after")


class ChunkConfig(Config):
    """The operators' chunking inputs (defaults: :data:`options.DEFAULTS`)."""

    chunk_size: int = Field(default=DEFAULTS.chunk_size, description="Items per chunk")
    limit: int | None = Field(default=DEFAULTS.limit, description="Only the first N rows (smoke)")
    since: str | None = Field(default=DEFAULTS.since, description="Only rows modified on/after")


class ComputeConfig(Config):
    """How this run's tasks run; ``scheduler``/``workers`` unset take the ``compute``
    resource's values (scheduler ``auto`` by default, see
    :data:`~earthcatalog_dagster.orchestration.resources.DEFAULT_SCHEDULER`)."""

    scheduler: str | None = Field(
        default=None, description="auto | processes | synchronous | local | tcp://address"
    )
    workers: int | None = Field(
        default=None, description="Worker processes (local; auto/processes: at most the CPUs)"
    )
    fetch_concurrency: int = Field(
        default=DEFAULTS.fetch_concurrency, description="Concurrent GETs per task"
    )
    compact_rows: int = Field(
        default=DEFAULTS.compact_rows, description="Maximum rows per warehouse file"
    )
    max_missing_fraction: float = Field(
        default=DEFAULTS.max_missing_fraction,
        description="Fail when more than this share of the fetched objects is missing (404)",
    )


# --- helpers --------------------------------------------------------------------------------


def _options(
    catalog: IcebergCatalog, compute: DaskCompute | None = None, **config: Any
) -> IngestOptions:
    """The step's options, or a Failure naming the setting whose value is unusable."""
    try:
        return run_options(catalog, compute, **config)
    except OptionError as exc:
        raise Failure(description=f"invalid ingest setting: {exc}") from None


def _settings(roots: StorageRoots, catalog: IcebergCatalog) -> Settings:
    return catalog.settings(roots.settings())


def _staging(roots: StorageRoots, context: AssetExecutionContext) -> str:
    return layout.staging_for(roots.settings().staging, context.partition_key)


def _seconds(start: float) -> float:
    return round(time.perf_counter() - start, 3)


def _owner(context: AssetExecutionContext) -> str:
    """Who holds the catalog lock, as other runs waiting for it see it."""
    return f"earthcatalog-dagster run {context.run.run_id[:8]} ({context.partition_key})"


def _plan(settings: Settings, options: IngestOptions) -> TablePlan:
    """Mode and resolution of the run against the table as it is, or a clear Failure."""
    try:
        return plan_table(current_table(settings), options)
    except ResolutionError as exc:
        raise Failure(description=str(exc)) from None


def already_ingested(delta_prefix: str, date: str) -> AlreadyIngested | None:
    """The date's done marker when its delta was ingested (and no pending delta waits)."""
    if storage.exists(layout.delta_pending(delta_prefix, date)):
        return None
    done = layout.delta_ingested(delta_prefix, date)
    # One listing of ingested/ (one small marker per date): storage has no stat call.
    for obj in storage.list_objects(layout.deltas_ingested_dir(delta_prefix), suffix=".done"):
        if obj.uri == done or obj.uri.endswith("/" + done.rsplit("/", 1)[-1]):
            at = obj.last_modified.astimezone(dt.UTC).isoformat(timespec="seconds")
            return AlreadyIngested(done=done, at=at)
    return None


def _ingested_metadata(ingested: AlreadyIngested, start: float) -> dict[str, Any]:
    return {
        "status": ingested.message,
        "delta": MetadataValue.path(ingested.done),
        "duration s": _seconds(start),
    }


# --- the assets -------------------------------------------------------------------------------


@asset(
    **_COMMON,
    description=(
        "The day's delta: `delta/pending/delta_D.parquet` (bucket, key, id_hash) if it exists "
        "(minus ids indexed meanwhile); otherwise built from the S3 Inventory of D anti-joined "
        "against the hash index, plus the un-indexed rows of older pending deltas. A date "
        "already ingested (`ingested/delta_D.done`, no pending delta) is a no-op."
    ),
)
def delta_inventory(
    context: AssetExecutionContext,
    config: DeltaConfig,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    s3: DataPlaneS3,
) -> Output[DeltaDescriptor]:
    start = time.perf_counter()
    cfg = roots.settings()
    date = context.partition_key
    options = _options(catalog, since=config.since)
    ingested = already_ingested(cfg.delta_prefix, date)
    if ingested is not None:
        return Output(
            DeltaDescriptor(ingested=ingested), metadata=_ingested_metadata(ingested, start)
        )
    manifest = config.manifest_template.format(inventory=cfg.inventory, date=date)
    try:
        result = daily_delta(
            manifest,
            delta_prefix=cfg.delta_prefix,
            date=date,
            hash_index_uri=cfg.warehouse_hash,
            since=options.since,
            # Dates another unfinished run ingests (a backfill's other dates) are not
            # carried: that run brings them in.
            in_flight=dates_being_ingested(context.instance, exclude_run_id=context.run.run_id),
        )
    except DeltaSourceNotFound as exc:
        raise Failure(
            description=str(exc),
            metadata={
                "delta": exc.delta,
                "done marker": exc.done or layout.delta_ingested(cfg.delta_prefix, date),
                "manifest": exc.manifest,
            },
        ) from None
    source = "pending delta" if result.reused else manifest
    return Output(
        DeltaDescriptor(delta=result.uri, rows=result.rows, source=source),
        metadata={
            "delta": MetadataValue.path(result.uri),
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
    catalog: IcebergCatalog,
    s3: DataPlaneS3,
    delta_inventory: DeltaDescriptor,
) -> Output[ChunksDescriptor]:
    start = time.perf_counter()
    if delta_inventory.ingested is not None:
        ingested = delta_inventory.ingested
        return Output(
            ChunksDescriptor(ingested=ingested), metadata=_ingested_metadata(ingested, start)
        )
    options = _options(
        catalog, chunk_size=config.chunk_size, limit=config.limit, since=config.since
    )
    plan = phases.write_chunks(
        delta_inventory.delta,
        _staging(roots, context),
        chunk_size=options.chunk_size,
        since=options.since,
        limit=options.limit,
    )
    return Output(
        ChunksDescriptor(chunks=tuple(plan.chunks), rows=plan.rows, chunk_size=plan.chunk_size),
        metadata={
            "rows in": delta_inventory.rows,
            "rows out": plan.rows,
            "chunks": len(plan.chunks),
            "reused from an earlier attempt": plan.reused,
            "duration s": _seconds(start),
        },
    )


@asset(
    **_COMMON,
    description=(
        "Per chunk (one task each): fetch, fan out to H3 cells, write NDJSON per "
        "(cell, year); failed keys to `pending_chunks/`, bad items to `rejects/`. Fails when "
        "every fetched object (or more than `max_missing_fraction`) is missing."
    ),
)
def ndjson_items(
    context: AssetExecutionContext,
    config: ComputeConfig,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    compute: DaskCompute,
    s3: DataPlaneS3,
    staged_chunks: ChunksDescriptor,
) -> Output[NdjsonDescriptor]:
    start = time.perf_counter()
    if staged_chunks.ingested is not None:
        ingested = staged_chunks.ingested
        return Output(
            NdjsonDescriptor(ingested=ingested), metadata=_ingested_metadata(ingested, start)
        )
    cfg = _settings(roots, catalog)
    options = _options(
        catalog,
        compute,
        scheduler=config.scheduler,
        workers=config.workers,
        fetch_concurrency=config.fetch_concurrency,
        max_missing_fraction=config.max_missing_fraction,
    )
    plan = _plan(cfg, options)
    staging = _staging(roots, context)
    task = s3.task(
        functools.partial(
            phases.ingest_chunk,
            staging_dir=staging,
            source_root=cfg.source_root,
            resolution=plan.resolution,
            fetch_concurrency=options.fetch_concurrency,
        ),
    )
    results = compute.map(task, staged_chunks.chunks, options)
    totals = {
        name: sum(getattr(r, name) for r in results)
        for name in ("rows", "fetched", "missing", "failed", "rejected", "items", "rows_out")
    }
    try:
        check_missing(
            fetched=totals["fetched"],
            missing=totals["missing"],
            max_fraction=options.max_missing_fraction,
            source_root=cfg.source_root,
            example_key=next((r.example_missing for r in results if r.example_missing), None),
        )
    except SourceUnreadable as exc:
        phases.forget_phase_2(staging)
        raise Failure(
            description=str(exc),
            metadata={
                "source root": cfg.source_root or "s3://<bucket>/<key>",
                "items fetched": totals["fetched"],
                "items missing (404)": totals["missing"],
            },
        ) from None
    staged_rows: dict[tuple[str, str], int] = {}
    for result in results:
        for cell, year, count in result.buckets:
            staged_rows[(cell, year)] = staged_rows.get((cell, year), 0) + count
    buckets = sorted(staged_rows)
    aliases = read_staged_aliases(staging)
    return Output(
        NdjsonDescriptor(
            buckets=tuple(buckets),
            bucket_rows=tuple(staged_rows[b] for b in buckets),
            resolution=plan.resolution,
            **totals,
        ),
        metadata={
            "items whose id differs from their file name": aliases.num_rows,
            "id ≠ file name examples": "\n".join(
                describe_mismatches(aliases.slice(0, MISMATCH_EXAMPLES))
            ),
            "bboxes recomputed from the geometry": sum(r.bbox_fixed for r in results),
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
            "h3 resolution": plan.resolution,
            "cells": len({cell for cell, _ in buckets}),
            "years": ", ".join(sorted({year for _, year in buckets})) or "none",
            "chunks skipped (already done)": sum(r.skipped for r in results),
            "duration s": _seconds(start),
        },
    )


@asset(
    **_COMMON,
    description=(
        "Per (cell, year), in tasks of up to 256 buckets: NDJSON deduplicated by id "
        "(latest `updated` wins) and written as GeoParquet under deterministic names in "
        "the warehouse."
    ),
    check_specs=checks.WAREHOUSE_CHECKS,
)
def warehouse_parquets(
    context: AssetExecutionContext,
    config: ComputeConfig,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    compute: DaskCompute,
    s3: DataPlaneS3,
    ndjson_items: NdjsonDescriptor,
) -> Iterator[Output[WarehouseDescriptor] | AssetCheckResult]:
    start = time.perf_counter()
    if ndjson_items.ingested is not None:
        ingested = ndjson_items.ingested
        yield Output(
            WarehouseDescriptor(ingested=ingested), metadata=_ingested_metadata(ingested, start)
        )
        yield from checks.skipped(checks.WAREHOUSE_CHECKS, ingested)
        return
    cfg = _settings(roots, catalog)
    options = _options(
        catalog,
        compute,
        scheduler=config.scheduler,
        workers=config.workers,
        compact_rows=config.compact_rows,
    )
    staging = _staging(roots, context)
    table = current_table(cfg)
    # New files are numbered past the registered ones, so a rerun never replaces one.
    token = context.partition_key
    registered = (
        frozenset(iceberg.files_of_runs(table, [token])) if table is not None else frozenset()
    )
    rows_known = len(ndjson_items.bucket_rows) == len(ndjson_items.buckets)
    groups = phases.bucket_groups(
        ndjson_items.buckets, ndjson_items.bucket_rows if rows_known else None
    )
    task = s3.task(
        functools.partial(
            phases.compact_task,
            staging_dir=staging,
            warehouse=cfg.warehouse,
            token=token,
            registered=registered,
            compact_rows=options.compact_rows,
            keep_ids=True,  # the checks' and the hash index's evidence: no file read back
            writers=writer_threads(cfg.warehouse, options.scheduler, len(groups)),
        ),
    )
    results = [r for group in compute.map(task, groups, options) for r in group]
    files = tuple(f for r in results for f in r.files)
    rows = sum(r.rows for r in results)
    # What the checks need, from what the tasks returned (only files of buckets compacted
    # by an earlier attempt are read back); the ids are also kept for the next two steps.
    new = checks.NewRows.from_results(results)
    checks.write_new_ids(staging, new)
    write_footers(staging, [w for r in results for w, _ in r.handed_over()])
    yield Output(
        WarehouseDescriptor(files=files, rows=rows, resolution=ndjson_items.resolution),
        metadata={
            "rows in (item × cell)": ndjson_items.rows_out,
            "rows out": rows,
            "duplicates dropped": sum(r.duplicates_dropped for r in results),
            "files written": len(files),
            "bytes written": sum(r.bytes for r in results),
            "buckets": len(results),
            "buckets skipped (already done)": sum(r.skipped for r in results),
            "duration s": _seconds(start),
        },
    )
    index = checks.load_index(cfg.warehouse_hash)
    yield checks.files_match_their_bucket(new)
    yield checks.no_duplicate_rows(new, index)
    yield checks.delta_accounted_for(new, index, staging, ndjson_items)


@asset(
    **_COMMON,
    pool=ICEBERG_POOL,
    freshness_policy=TABLE_FRESHNESS,
    description=(
        "The new warehouse files registered in `earthcatalog.stac_items` in one snapshot, "
        "through the one commit path (rows whose id the table holds already are dropped; "
        "files already registered are skipped). Runs in pool `iceberg_commit`."
    ),
)
def iceberg_table(
    context: AssetExecutionContext,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    s3: DataPlaneS3,
    warehouse_parquets: WarehouseDescriptor,
) -> Output[RegistrationDescriptor]:
    start = time.perf_counter()
    if warehouse_parquets.ingested is not None:
        ingested = warehouse_parquets.ingested
        return Output(
            RegistrationDescriptor(ingested=ingested), metadata=_ingested_metadata(ingested, start)
        )
    release_pool()  # the compaction's workers: their memory back before registering
    cfg = _settings(roots, catalog)
    options = _options(catalog)
    if warehouse_parquets.resolution is not None:
        # The files were fanned out at this resolution: that is what gets registered.
        options = options.with_values(h3_resolution=warehouse_parquets.resolution)
    plan = _plan(cfg, options)
    # The ids and footers warehouse_parquets recorded: registration reads no file for them.
    staging = _staging(roots, context)
    known_ids = checks.read_new_ids(staging, warehouse_parquets.files)
    footers = read_footers(staging, warehouse_parquets.files)
    try:
        with session_for(cfg, options, _owner(context)) as session:
            _, result = register(
                session,
                cfg,
                plan,
                warehouse_parquets.files,
                footers=footers,
                known_ids=known_ids,
            )
    except ResolutionError as exc:
        raise Failure(description=str(exc)) from None
    return Output(
        RegistrationDescriptor(
            files=tuple(result.files),
            snapshot_id=result.snapshot_id,
            added=result.files_registered,
            skipped=result.files_already_registered,
            table_created=result.table_created,
            rewritten=tuple(result.files_rewritten),
        ),
        metadata={
            "snapshot id": str(result.snapshot_id) if result.snapshot_id else "none",
            "table created": result.table_created,
            "h3 resolution": plan.resolution,
            "files registered": result.files_registered,
            "files already registered": result.files_already_registered,
            "rows dropped (id registered by another run)": result.rows_dropped,
            "files rewritten without those rows": len(result.files_rewritten),
            "files removed (all rows registered elsewhere)": len(result.files_removed),
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
    check_specs=checks.HASH_INDEX_CHECKS,
)
def hash_index(
    context: AssetExecutionContext,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    s3: DataPlaneS3,
    iceberg_table: RegistrationDescriptor,
) -> Iterator[Output[HashIndexDescriptor] | AssetCheckResult]:
    start = time.perf_counter()
    if iceberg_table.ingested is not None:
        ingested = iceberg_table.ingested
        yield Output(
            HashIndexDescriptor(ingested=ingested), metadata=_ingested_metadata(ingested, start)
        )
        yield from checks.skipped(checks.HASH_INDEX_CHECKS, ingested)
        return
    cfg = _settings(roots, catalog)
    options = _options(catalog)
    staging = _staging(roots, context)
    # The new files' ids, as warehouse_parquets recorded them (files the registration
    # rewrote, or without a record, are read): the sync merges them, the check looks them up.
    rewritten = set(iceberg_table.rewritten)
    known_ids = checks.read_new_ids(staging, [f for f in iceberg_table.files if f not in rewritten])
    known_ids.update(
        checks.read_ids_by_file([f for f in iceberg_table.files if f not in known_ids])
    )
    synced = None
    with session_for(cfg, options, _owner(context)) as session:
        table = iceberg.load_table(iceberg.open_catalog(session.local, cfg.warehouse))
        if table is not None:
            synced = sync_index(
                table, cfg, known_ids=known_ids, rebuild=iceberg_table.table_created
            )
            # Keys whose item id differs: never fetched again (after the ids, like them).
            merge_staged_aliases(staging, cfg.warehouse_hash)
    date = context.partition_key
    done = layout.delta_ingested(cfg.delta_prefix, date)
    storage.move(layout.delta_pending(cfg.delta_prefix, date), done)
    cleaned = phases.clear_markers(staging)
    storage.delete(layout.warehouse_ids(staging))
    storage.delete(layout.warehouse_footers(staging))
    yield Output(
        HashIndexDescriptor(
            hashes_before=synced.before if synced else None,
            hashes_after=synced.after if synced else None,
        ),
        metadata={
            "hashes before": synced.before if synced else 0,
            "hashes after": synced.after if synced else 0,
            "hashes added": synced.added if synced else 0,
            "files read": synced.files_read if synced else 0,
            "delta": MetadataValue.path(done),
            "staging files cleaned": cleaned,
            "duration s": _seconds(start),
        },
    )
    yield checks.index_holds_new_ids(
        checks.concat_ids(known_ids.values()), synced.index if synced else None
    )


ingest_assets = [
    delta_inventory,
    staged_chunks,
    ndjson_items,
    warehouse_parquets,
    iceberg_table,
    hash_index,
]
