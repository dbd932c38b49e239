"""Group ``maintenance``: compaction, snapshot expiry and orphan cleanup as Dagster assets.

compacted_table → expired_snapshots → orphans_removed, three unpartitioned assets, each
depending on the daily-partitioned ``iceberg_table`` (its latest partition: maintenance
acts on the table as it is, and never waits for every partition to be materialized) and
on the step before it, so one run does them in order. Each is a thin call of its pipeline
function (:mod:`earthcatalog_dagster.pipeline.maintenance`), which holds the catalog lock
while it commits; the steps also run in pool ``iceberg_commit``, so they never interleave
with a daily commit of the same instance. Their numeric metadata (buckets compacted, files
before/after, rows, bytes freed, snapshots expired, ...) plots the table's health over time
in the UI.

``table_health`` checks the table after maintenance: files per (cell, year), the share of
small files compaction would merge, and that every registered file is on storage. They
read the table's whole file list and list the warehouse, so they run with this weekly
group only, never on the daily path.

``maintenance_job`` (the whole group) runs on ``maintenance_schedule``: Sundays 06:00 UTC,
stopped by default, like the other schedules. It carries the daily lane's run tag, so
with the project's ``dagster.yaml`` it queues behind an automated ingest instead of
running beside it. GitHub Actions' ``maintenance.yml`` is the same job for the Actions
deployment (run one or the other).
"""

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetSelection,
    Config,
    DefaultScheduleStatus,
    Failure,
    LastPartitionMapping,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
    define_asset_job,
    multi_asset_check,
)
from pydantic import Field

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.options import MAINTENANCE_DEFAULTS, MaintenanceOptions, OptionError
from earthcatalog_dagster.orchestration.assets import ICEBERG_POOL
from earthcatalog_dagster.orchestration.automation import LANE, LANE_TAG
from earthcatalog_dagster.orchestration.resources import DataPlaneS3, IcebergCatalog, StorageRoots
from earthcatalog_dagster.pipeline.commit import current_table
from earthcatalog_dagster.pipeline.maintenance.expire import expire_snapshots
from earthcatalog_dagster.pipeline.maintenance.orphans import remove_orphans
from earthcatalog_dagster.pipeline.maintenance.references import normalize

GROUP = "maintenance"
D = MAINTENANCE_DEFAULTS

#: ``iceberg_table`` as every maintenance asset depends on it: its latest partition.
ON_TABLE = AssetDep("iceberg_table", partition_mapping=LastPartitionMapping())

FILES_PER_BUCKET = "files_per_bucket"
SMALL_FILES = "small_file_ratio"
FILES_PRESENT = "registered_files_present"
#: Most of the files compaction would merge (small files sharing their bucket with
#: another small one) the table may hold after maintenance, as a share of all its files.
SMALL_FILE_RATIO_LIMIT = 0.1


class CompactConfig(Config):
    """Compaction settings (defaults: :data:`options.MAINTENANCE_DEFAULTS`)."""

    min_files: int = Field(default=D.min_files, description="Compact a (cell, year) with N+ files")
    small_file_bytes: int = Field(
        default=D.small_file_bytes, description="...or with two or more files under N bytes"
    )
    compact_rows: int = Field(default=D.compact_rows, description="Most rows per compacted file")
    cells: list[str] | None = Field(default=D.cells, description="Only these H3 cells")
    years: list[int] | None = Field(default=D.years, description="Only these years")
    max_buckets: int | None = Field(default=D.max_buckets, description="At most N buckets")
    dry_run: bool = Field(default=D.dry_run, description="Plan and report; change nothing")


class ExpireConfig(Config):
    """Snapshot expiry settings (defaults: :data:`options.MAINTENANCE_DEFAULTS`)."""

    expire_older_than_days: float = Field(
        default=D.expire_older_than_days, description="Expire snapshots older than N days"
    )
    retain_last: int = Field(default=D.retain_last, description="Always keep the newest N")
    dry_run: bool = Field(default=D.dry_run, description="Report; delete nothing")


class OrphansConfig(Config):
    """Orphan cleanup settings (defaults: :data:`options.MAINTENANCE_DEFAULTS`)."""

    orphan_older_than_days: float = Field(
        default=D.orphan_older_than_days,
        description="Only files older than N days (a run in progress writes younger ones)",
    )
    dry_run: bool = Field(default=D.dry_run, description="List the orphans; delete nothing")


def maintenance_options(catalog: IcebergCatalog, config: Config) -> MaintenanceOptions:
    """The step's options: the defaults, the catalog resource's lock and upload switches,
    then the step's ``Config``; a Failure naming the setting when a value is unusable."""
    values: dict[str, Any] = {
        "use_lock": catalog.use_lock,
        "lock_timeout": catalog.lock_timeout_s,
        "skip_upload": catalog.skip_upload,
        **config.model_dump(),
    }
    try:
        return MAINTENANCE_DEFAULTS.with_values(**values)
    except OptionError as exc:
        raise Failure(description=f"invalid maintenance setting: {exc}") from None


def _settings(roots: StorageRoots, catalog: IcebergCatalog) -> Settings:
    return catalog.settings(roots.settings())


def _run_operation(
    context: AssetExecutionContext,
    operation: Callable[..., Any],
    config: Config,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    metadata: Callable[[Any], dict[str, Any]],
) -> MaterializeResult:
    """Run one maintenance ``operation`` with the step's options and roots, log its report,
    and materialize ``metadata(result)`` plus whether it was a dry run and how long it took."""
    start = time.perf_counter()
    result = operation(maintenance_options(catalog, config), settings=_settings(roots, catalog))
    context.log.info(result.render())
    return MaterializeResult(
        metadata={
            **metadata(result),
            "dry run": result.dry_run,
            "duration s": round(time.perf_counter() - start, 3),
        }
    )


_COMMON: dict[str, Any] = {"group_name": GROUP, "pool": ICEBERG_POOL}


@asset(
    **_COMMON,
    deps=[ON_TABLE],
    description=(
        "Each (cell, year) with `min_files`+ files (or two or more small files) merged into "
        "files of at most `compact_rows` rows, de-duplicated by id, in one OVERWRITE "
        "snapshot under the catalog lock. Old files stay until their snapshots expire."
    ),
)
def compacted_table(
    context: AssetExecutionContext,
    config: CompactConfig,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    s3: DataPlaneS3,
) -> MaterializeResult:
    from earthcatalog_dagster.pipeline.maintenance.compact import compact

    return _run_operation(
        context,
        compact,
        config,
        roots,
        catalog,
        lambda result: {
            "buckets planned": result.buckets_planned,
            "buckets compacted": result.buckets_compacted,
            "files before": result.files_before,
            "files after": result.files_after,
            "rows in": result.rows_in,
            "rows out": result.rows_out,
            "duplicates dropped": result.duplicates_dropped,
            "bytes before": result.bytes_before,
            "bytes after": result.bytes_after,
            "snapshot id": str(result.snapshot_id) if result.snapshot_id else "none",
        },
    )


@asset(
    **_COMMON,
    deps=[ON_TABLE, "compacted_table"],
    description=(
        "Snapshots older than `expire_older_than_days` expired (the newest `retain_last` and "
        "the current one kept), the catalog published, then the data files, manifests and "
        "manifest lists that no retained snapshot reads deleted."
    ),
)
def expired_snapshots(
    context: AssetExecutionContext,
    config: ExpireConfig,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    s3: DataPlaneS3,
) -> MaterializeResult:
    return _run_operation(
        context,
        expire_snapshots,
        config,
        roots,
        catalog,
        lambda result: {
            "snapshots expired": result.snapshots_expired,
            "snapshots retained": result.snapshots_retained,
            "data files deleted": result.data_files_deleted,
            "manifests deleted": result.manifests_deleted,
            "manifest lists deleted": result.manifest_lists_deleted,
            "bytes freed": result.bytes_freed,
        },
    )


@asset(
    **_COMMON,
    deps=[ON_TABLE, "expired_snapshots"],
    description=(
        "Warehouse data files and table metadata files that no snapshot reads, older than "
        "`orphan_older_than_days` (a run in progress writes younger ones), deleted."
    ),
)
def orphans_removed(
    context: AssetExecutionContext,
    config: OrphansConfig,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    s3: DataPlaneS3,
) -> MaterializeResult:
    return _run_operation(
        context,
        remove_orphans,
        config,
        roots,
        catalog,
        lambda result: {
            "data files deleted": result.data_files_deleted,
            "metadata files deleted": result.metadata_files_deleted,
            "bytes freed": result.bytes_freed,
            "unreferenced, within the grace period": result.too_young,
            "files listed": result.files_listed,
        },
    )


# --- checks on the table after maintenance ----------------------------------------------------

HEALTH_CHECKS = [
    AssetCheckSpec(
        FILES_PER_BUCKET,
        asset="orphans_removed",
        description=(
            "No (cell, year) holds more files than compaction leaves: at most "
            f"max(min_files - 1, ceil(rows / compact_rows)) (defaults {D.min_files}, "
            f"{D.compact_rows})"
        ),
    ),
    AssetCheckSpec(
        SMALL_FILES,
        asset="orphans_removed",
        description=(
            "Small files (under small_file_bytes) that share their (cell, year) with another "
            f"small file — what compaction merges — are at most {SMALL_FILE_RATIO_LIMIT:.0%} "
            "of the table's files"
        ),
    ),
    AssetCheckSpec(
        FILES_PRESENT,
        asset="orphans_removed",
        description="Every data file of the current snapshot is on storage",
    ),
]


@multi_asset_check(
    specs=HEALTH_CHECKS,
    name="table_health",
    description="The table after maintenance: file layout and files on storage (weekly).",
)
def table_health(
    context: AssetCheckExecutionContext,
    roots: StorageRoots,
    catalog: IcebergCatalog,
    s3: DataPlaneS3,
) -> Iterator[AssetCheckResult]:
    settings = _settings(roots, catalog)
    table = current_table(settings)
    files = _file_list(table)
    yield files_per_bucket(files)
    yield small_file_ratio(files)
    yield registered_files_present(files, settings.warehouse)


def _file_list(table: Any) -> list[dict[str, Any]]:
    """Path, (cell, year), rows and bytes of each data file of the current snapshot."""
    if table is None or table.current_snapshot() is None:
        return []
    listed = table.inspect.files().select(
        ["file_path", "partition", "record_count", "file_size_in_bytes"]
    )
    return [
        {
            "path": normalize(row["file_path"]),
            "bucket": (row["partition"]["grid_partition"], row["partition"]["datetime_year"]),
            "rows": row["record_count"],
            "bytes": row["file_size_in_bytes"],
        }
        for row in listed.to_pylist()
    ]


def _buckets(files: list[dict[str, Any]]) -> dict[tuple[Any, Any], list[dict[str, Any]]]:
    out: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for f in files:
        out.setdefault(f["bucket"], []).append(f)
    return out


def files_per_bucket(
    files: list[dict[str, Any]], options: MaintenanceOptions = MAINTENANCE_DEFAULTS
) -> AssetCheckResult:
    """Buckets holding more files than a compaction would leave them."""
    buckets = _buckets(files)
    counts = sorted(len(v) for v in buckets.values())
    over = {
        b: len(v)
        for b, v in buckets.items()
        if len(v)
        > max(options.min_files - 1, math.ceil(sum(f["rows"] for f in v) / options.compact_rows))
    }
    worst = sorted(over.items(), key=lambda kv: -kv[1])[:10]
    return AssetCheckResult(
        check_name=FILES_PER_BUCKET,
        passed=not over,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "buckets": len(buckets),
            "buckets over the limit": len(over),
            "max files per bucket": counts[-1] if counts else 0,
            "p95 files per bucket": counts[int(0.95 * (len(counts) - 1))] if counts else 0,
            "worst buckets": MetadataValue.text(
                ", ".join(f"{c}/{y}: {n}" for (c, y), n in worst) or "none"
            ),
        },
    )


def small_file_ratio(
    files: list[dict[str, Any]], options: MaintenanceOptions = MAINTENANCE_DEFAULTS
) -> AssetCheckResult:
    """The share of the table's files that compaction would still merge."""
    small = [f for f in files if f["bytes"] < options.small_file_bytes]
    per_bucket: dict[Any, int] = {}
    for f in small:
        per_bucket[f["bucket"]] = per_bucket.get(f["bucket"], 0) + 1
    mergeable = sum(n for n in per_bucket.values() if n >= 2)
    ratio = mergeable / len(files) if files else 0.0
    return AssetCheckResult(
        check_name=SMALL_FILES,
        passed=ratio <= SMALL_FILE_RATIO_LIMIT,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "files": len(files),
            "small files": len(small),
            "small files compaction would merge": mergeable,
            "mergeable small-file ratio": round(ratio, 4),
            "small-file ratio": round(len(small) / len(files), 4) if files else 0.0,
            "average rows per file": round(sum(f["rows"] for f in files) / len(files), 1)
            if files
            else 0.0,
        },
    )


def registered_files_present(files: list[dict[str, Any]], warehouse: str) -> AssetCheckResult:
    """Every registered file is on storage: one listing of the warehouse."""
    listed = {o.uri for o in storage.list_objects(warehouse, suffix=".parquet")}
    outside = [f["path"] for f in files if not f["path"].startswith(warehouse.rstrip("/") + "/")]
    missing = [f["path"] for f in files if f["path"] not in listed and f["path"] not in outside]
    missing += [p for p in outside if not storage.exists(p)]
    return AssetCheckResult(
        check_name=FILES_PRESENT,
        passed=not missing,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "registered files": len(files),
            "missing": len(missing),
            "first missing": MetadataValue.text("\n".join(sorted(missing)[:10]) or "none"),
        },
    )


maintenance_assets = [compacted_table, expired_snapshots, orphans_removed]
maintenance_checks = [table_health]

maintenance_job = define_asset_job(
    "maintenance_job",
    selection=AssetSelection.groups(GROUP),
    run_tags={LANE_TAG: LANE},
    description=(
        "Weekly table maintenance: compaction, snapshot expiry, orphan cleanup, then the "
        "table's health checks."
    ),
)

maintenance_schedule = ScheduleDefinition(
    name="maintenance_schedule",
    job=maintenance_job,
    cron_schedule="0 6 * * 0",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Sundays 06:00 UTC: compaction, snapshot expiry, orphan cleanup.",
)
