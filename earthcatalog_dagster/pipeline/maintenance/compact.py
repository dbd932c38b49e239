"""Compaction: merge the small files of each (cell, year) into few large ones, in one
Iceberg OVERWRITE snapshot that keeps history.

Daily runs add a few small files to many (cell, year) buckets; left alone, a bucket
collects hundreds of them and every scan pays per file. :func:`compact` rewrites them:

1. **Plan** (read-only, no lock). The current snapshot's data files (scan planning over its
   manifests, pruned to ``cells`` by the manifests' partition summaries) are grouped by
   their partition (cell, year). Files holding ``compact_rows`` rows or more are full and
   left alone; a bucket is planned when it has at least ``min_files`` non-full files, or
   two or more under ``small_file_bytes``. ``cells``, ``years`` and ``max_buckets`` (the
   buckets with most files first) narrow the run. Reading every manifest is fine here:
   maintenance runs weekly, not in the daily path.
2. **Work** (no lock; one bucket in memory at a time). The bucket's files are read,
   de-duplicated by (id, cell) — the latest ``updated`` wins, as in ingest — sorted like
   ingest output (platform, datetime, id) and written with the project's GeoParquet writer
   (``geo`` metadata, bbox covering, stac-geoparquet metadata; PyIceberg's writers drop
   them) as files of at most ``compact_rows`` rows named
   ``part_compact-<hash of the sorted input paths>_<n>.parquet`` in the bucket's folder.
   The written files' ids are read back and checked: rows out = distinct ids in (the cell
   is fixed within a bucket), and the same set of ids; otherwise :class:`CompactionError`
   is raised and nothing is committed.
3. **Commit** (under the catalog lock, one snapshot for the whole run). The table is
   reloaded; a bucket whose input files are not all still in the current snapshot
   (another compaction or run changed it meanwhile) is skipped. One transaction deletes
   the input files and appends the outputs (``overwrite()`` with ``delete_data_file`` /
   ``append_data_file``: PyIceberg 0.12 has no ``rewrite_data_files``), with snapshot
   properties ``earthcatalog.operation=compact`` and the counts, so ``info`` and Dagster
   can show the last maintenance.

The old files stay on storage: a reader holding an earlier snapshot keeps reading them
until snapshot expiry deletes what no retained snapshot references. The table is never
dropped, and the hash index is untouched (the ids are the same).

Killed at any point and rerun: before the commit, the table is unchanged and the rerun
plans the same inputs, hence writes the same names over the killed run's files; after
it, the inputs are gone from the table and the rerun plans nothing for those buckets.
Files written by a run whose commit never happened are unregistered, left for orphan
cleanup (or overwritten by the rerun); nothing unverified is ever registered.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.expressions import AlwaysTrue, BooleanExpression, In
from pyiceberg.manifest import DataFile
from pyiceberg.table import Table

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.buckets import dedupe_latest
from earthcatalog_dagster.core.geoparquet import WrittenFile, sort_rows, write_geoparquet
from earthcatalog_dagster.core.remote_catalog import read_copy
from earthcatalog_dagster.core.schema import WAREHOUSE_SCHEMA
from earthcatalog_dagster.options import MaintenanceOptions
from earthcatalog_dagster.pipeline.maintenance.references import (
    maintenance_session,
    resolve_options,
)

log = logging.getLogger(__name__)

#: Snapshot property naming the maintenance operation that made a snapshot.
OPERATION_PROPERTY = iceberg.OPERATION_PROPERTY
COMPACT_OPERATION = "compact"
#: Commit attempts when the table moves under an unlocked commit (``use_lock=False``).
COMMIT_ATTEMPTS = 5
#: Concurrent reads of one bucket's input files (I/O bound on S3).
READ_THREADS = 8
LOCK_OWNER = "earthcatalog-dagster compact"


class CompactionError(RuntimeError):
    """The compacted files do not hold exactly the rows they replace; nothing committed."""


@dataclass
class BucketPlan:
    """One (cell, year) bucket of a compaction: its planned inputs and, once done, outputs.

    ``files_out`` is planned as ``ceil(rows / compact_rows)`` and becomes the number of
    files written; ``status`` is ``planned``, ``dry run``, ``written``, ``compacted`` or
    ``skipped`` (its inputs changed before the commit).
    """

    cell: str
    year: str
    files: list[str]
    rows: int
    bytes: int
    files_out: int
    outputs: list[str] = field(default_factory=list)
    rows_out: int = 0
    bytes_out: int = 0
    duplicates_dropped: int = 0
    status: str = "planned"
    data_files: list[DataFile] = field(default_factory=list, repr=False, compare=False)
    written: list[WrittenFile] = field(default_factory=list, repr=False, compare=False)

    @property
    def files_in(self) -> int:
        return len(self.files)

    def as_dict(self) -> dict[str, Any]:
        return {
            "cell": self.cell,
            "year": self.year,
            "files_in": self.files_in,
            "rows": self.rows,
            "bytes": self.bytes,
            "files_out": self.files_out,
            "rows_out": self.rows_out,
            "bytes_out": self.bytes_out,
            "duplicates_dropped": self.duplicates_dropped,
            "status": self.status,
            "files": list(self.files),
            "outputs": list(self.outputs),
        }


@dataclass
class CompactionResult:
    """What one compaction planned and did.

    ``files_before``/``files_after``, ``bytes_before``/``bytes_after`` and ``rows_in``/
    ``rows_out`` count the compacted buckets' files (inputs and outputs); in a dry run the
    ``*_after``/``*_out`` values are the plan's estimates (``bytes_after`` 0: nothing is
    written). ``table_files_before``/``table_files_after`` are the table's data files
    before and after the run (snapshot summaries), for the table's health over time.
    ``bytes_freed`` is what snapshot expiry will free once the old files' snapshots go.
    """

    buckets_planned: int = 0
    buckets_compacted: int = 0
    files_before: int = 0
    files_after: int = 0
    rows_in: int = 0
    rows_out: int = 0
    duplicates_dropped: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    snapshot_id: int | None = None
    dry_run: bool = False
    buckets_skipped: int = 0
    table_files_before: int | None = None
    table_files_after: int | None = None
    plan: list[BucketPlan] = field(default_factory=list)

    @property
    def bytes_freed(self) -> int:
        return max(self.bytes_before - self.bytes_after, 0) if not self.dry_run else 0

    def as_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready), the plan as one dict per bucket."""
        return {
            "buckets_planned": self.buckets_planned,
            "buckets_compacted": self.buckets_compacted,
            "buckets_skipped": self.buckets_skipped,
            "files_before": self.files_before,
            "files_after": self.files_after,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "duplicates_dropped": self.duplicates_dropped,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "bytes_freed": self.bytes_freed,
            "table_files_before": self.table_files_before,
            "table_files_after": self.table_files_after,
            "snapshot_id": self.snapshot_id,
            "dry_run": self.dry_run,
            "plan": [bucket.as_dict() for bucket in self.plan],
        }

    def render(self, max_buckets: int = 50) -> str:
        """A human summary: the totals, then one line per bucket (the first ``max_buckets``)."""
        head = "Compaction plan (dry run: nothing changed)" if self.dry_run else "Compaction"
        lines = [head]
        if not self.plan:
            lines.append("  nothing to compact")
            return "\n".join(lines)
        after = "?" if self.dry_run else _size(self.bytes_after)
        lines += [
            f"  buckets      : {self.buckets_planned:,} planned"
            + ("" if self.dry_run else f", {self.buckets_compacted:,} compacted")
            + (f", {self.buckets_skipped:,} skipped (changed)" if self.buckets_skipped else ""),
            f"  files        : {self.files_before:,} -> {self.files_after:,}",
            f"  rows         : {self.rows_in:,} -> {self.rows_out:,}"
            + ("" if self.dry_run else f" ({self.duplicates_dropped:,} duplicates dropped)"),
            f"  bytes        : {_size(self.bytes_before)} -> {after}",
        ]
        if self.table_files_before is not None:
            table_after = self.table_files_after if self.table_files_after is not None else "?"
            lines.append(f"  table files  : {self.table_files_before:,} -> {table_after}")
        if self.snapshot_id is not None:
            lines.append(f"  snapshot     : {self.snapshot_id}")
        lines.append("  cell             year    files in -> out       rows      bytes  status")
        for bucket in self.plan[:max_buckets]:
            lines.append(
                f"  {bucket.cell:<16} {bucket.year:<6} {bucket.files_in:>9,} -> "
                f"{bucket.files_out:<4,} {bucket.rows:>10,} {_size(bucket.bytes):>10}  "
                f"{bucket.status}"
            )
        if len(self.plan) > max_buckets:
            lines.append(f"  ... and {len(self.plan) - max_buckets:,} more buckets")
        return "\n".join(lines)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


# --- the entry point ----------------------------------------------------------------------


def compact(
    options: MaintenanceOptions | None = None,
    *,
    settings: Settings | None = None,
    **values: Any,
) -> CompactionResult:
    """Compact the table's small files per (cell, year) in one OVERWRITE snapshot.

    Args:
        options: the maintenance settings
            (:class:`~earthcatalog_dagster.options.MaintenanceOptions`): ``min_files``,
            ``small_file_bytes``, ``compact_rows``, ``cells``, ``years``, ``max_buckets``,
            ``dry_run``, ``use_lock``, ``lock_timeout``, ``skip_upload``. Any field may also
            be given as a keyword, which overrides ``options``.
        settings: the roots (warehouse, catalog and its remote copy); default: the
            environment, then the embedded default.

    Returns:
        A :class:`CompactionResult` with the plan per bucket. A dry run plans and changes
        nothing; without a table (or with nothing to compact) the result is empty.

    Raises:
        CompactionError: a bucket's written files do not hold exactly its distinct rows
            (nothing is committed).

    See the module documentation for the steps and why a kill at any point is safe.
    """
    opts = resolve_options(options, values)
    cfg = settings or Settings.from_env()
    if not opts.dry_run:
        cfg.check_writable("warehouse", "catalog")
    table = _readable_table(cfg)
    result = CompactionResult(dry_run=opts.dry_run)
    if table is None or table.current_snapshot() is None:
        return result
    planned_on = table.current_snapshot()
    result.table_files_before = _total_data_files(planned_on.summary)
    result.plan = plan_compaction(table, opts)
    result.buckets_planned = len(result.plan)
    if opts.dry_run or not result.plan:
        for bucket in result.plan:
            bucket.status = "dry run"
        _tally(result, committed=False)
        result.table_files_after = None if opts.dry_run else result.table_files_before
        return result
    for bucket in result.plan:
        compact_bucket(bucket, cfg.warehouse, opts.compact_rows)
    result.snapshot_id, result.table_files_after = commit_compaction(
        cfg, opts, result.plan, planned_on.snapshot_id
    )
    _tally(result, committed=True)
    log.info(
        "compacted %d of %d buckets: %d files -> %d, snapshot %s",
        result.buckets_compacted,
        result.buckets_planned,
        result.files_before,
        result.files_after,
        result.snapshot_id,
    )
    return result


def _readable_table(settings: Settings) -> Table | None:
    """The table as it is now, read without the lock (a private copy of a remote catalog);
    ``None`` without one (no catalog file is created for the asking)."""
    if not settings.catalog_remote and not os.path.exists(settings.catalog):
        return None
    path = read_copy(settings.catalog_remote) if settings.catalog_remote else settings.catalog
    return iceberg.load_table(iceberg.open_catalog(path, settings.warehouse))


def _total_data_files(summary: Any) -> int | None:
    value = summary.additional_properties.get("total-data-files") if summary else None
    return int(value) if value is not None else None


def _tally(result: CompactionResult, *, committed: bool) -> None:
    """The totals: over the planned buckets (estimates) before the commit, over the
    compacted ones after it."""
    counted = [b for b in result.plan if b.status == "compacted"] if committed else result.plan
    result.buckets_compacted = len(counted) if committed else 0
    result.buckets_skipped = sum(b.status == "skipped" for b in result.plan)
    result.files_before = sum(b.files_in for b in counted)
    result.files_after = sum(b.files_out for b in counted)
    result.rows_in = sum(b.rows for b in counted)
    result.rows_out = sum(b.rows_out if b.written else b.rows for b in counted)
    result.duplicates_dropped = sum(b.duplicates_dropped for b in counted)
    result.bytes_before = sum(b.bytes for b in counted)
    result.bytes_after = sum(b.bytes_out for b in counted)


# --- 1. plan ------------------------------------------------------------------------------


def live_data_files(table: Table, cells: Iterable[str] | None = None) -> list[DataFile]:
    """The data files of the table's current snapshot (only those of ``cells``, if given).

    Scan planning: every manifest of the snapshot whose partition summary may hold one of
    ``cells`` is read. Maintenance only: the daily path must not list the table's files.
    """
    if table.current_snapshot() is None:
        return []
    wanted = sorted(set(cells)) if cells is not None else None
    row_filter: BooleanExpression = AlwaysTrue() if wanted is None else In("grid_partition", wanted)
    return [task.file for task in table.scan(row_filter=row_filter).plan_files()]


def bucket_of(table: Table, data_file: DataFile) -> tuple[str, str]:
    """``(cell, year label)`` of a data file, from its Iceberg partition values."""
    names = [f.name for f in table.metadata.spec().fields]
    cell = data_file.partition[names.index("grid_partition")]
    year = data_file.partition[names.index("datetime_year")]
    return str(cell), layout.NO_YEAR if year is None else str(1970 + int(year))


def plan_compaction(table: Table, options: MaintenanceOptions) -> list[BucketPlan]:
    """The buckets to compact, in (cell, year) order, with their input files.

    Only files with fewer than ``compact_rows`` rows are inputs: full files are what
    compaction makes, so a compacted bucket is not planned again.
    """
    groups: dict[tuple[str, str], list[DataFile]] = {}
    for data_file in live_data_files(table, options.cells):
        groups.setdefault(bucket_of(table, data_file), []).append(data_file)
    years = {str(y) for y in options.years} if options.years is not None else None
    cells = set(options.cells) if options.cells is not None else None
    chosen: list[BucketPlan] = []
    for (cell, year), files in groups.items():
        if (cells is not None and cell not in cells) or (years is not None and year not in years):
            continue
        inputs = [f for f in files if f.record_count < options.compact_rows]
        small = [f for f in inputs if f.file_size_in_bytes < options.small_file_bytes]
        if len(inputs) < 2 or (len(inputs) < options.min_files and len(small) < 2):
            continue
        inputs.sort(key=lambda f: f.file_path)
        rows = sum(f.record_count for f in inputs)
        chosen.append(
            BucketPlan(
                cell=cell,
                year=year,
                files=[f.file_path for f in inputs],
                rows=rows,
                bytes=sum(f.file_size_in_bytes for f in inputs),
                files_out=max(1, math.ceil(rows / options.compact_rows)),
                data_files=inputs,
            )
        )
    if options.max_buckets is not None:  # the most fragmented buckets first
        chosen.sort(key=lambda b: (-b.files_in, b.cell, b.year))
        chosen = chosen[: options.max_buckets]
    return sorted(chosen, key=lambda b: (b.cell, b.year))


# --- 2. work ------------------------------------------------------------------------------


def read_bucket(uris: Sequence[str]) -> pa.Table:
    """The rows of a bucket's files, in the warehouse schema, in the order of ``uris``."""

    def read(uri: str) -> pa.Table:
        table = storage.read_parquet(uri)
        table = table.select(WAREHOUSE_SCHEMA.names).cast(WAREHOUSE_SCHEMA)
        return table.replace_schema_metadata(None)

    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="compact-read") as pool:
        parts = list(pool.map(read, uris))
    return pa.concat_tables(parts) if parts else WAREHOUSE_SCHEMA.empty_table()


def compact_bucket(bucket: BucketPlan, warehouse: str, compact_rows: int) -> BucketPlan:
    """Read, de-duplicate, sort and rewrite one bucket, then verify what was written.

    The output names depend only on the inputs, so a rerun after a kill overwrites the
    killed run's files. Raises :class:`CompactionError` if the written files do not hold
    exactly the bucket's distinct (id, cell) rows.
    """
    token = layout.compaction_token(bucket.files)
    # What a killed earlier attempt left half-written under these names (local roots).
    storage.remove_debris(
        layout.partition_dir(warehouse, bucket.cell, bucket.year),
        min_age=0,
        name_prefix=f"part_{token}_",
    )
    rows = read_bucket(bucket.files)
    deduped = sort_rows(dedupe_latest(rows))
    written: list[WrittenFile] = []
    for sequence, offset in enumerate(range(0, deduped.num_rows, compact_rows)):
        uri = layout.compacted_file(warehouse, bucket.cell, bucket.year, token, sequence)
        written.append(write_geoparquet(deduped.slice(offset, compact_rows), uri, presorted=True))
    verify_bucket(bucket, rows, [w.uri for w in written])
    bucket.written = written
    bucket.outputs = [w.uri for w in written]
    bucket.files_out = len(written)
    bucket.rows = rows.num_rows
    bucket.rows_out = deduped.num_rows
    bucket.duplicates_dropped = rows.num_rows - deduped.num_rows
    bucket.bytes_out = sum(w.size for w in written)
    bucket.status = "written"
    return bucket


def verify_bucket(bucket: BucketPlan, rows_in: pa.Table, outputs: Sequence[str]) -> None:
    """The files at ``outputs`` (read back from storage) hold each distinct id of
    ``rows_in`` once, all in the bucket's cell; raise :class:`CompactionError` otherwise."""
    where = f"bucket ({bucket.cell}, {bucket.year})"
    cells_in = pc.unique(rows_in["grid_partition"]).to_pylist()
    if cells_in and cells_in != [bucket.cell]:
        raise CompactionError(f"{where}: input rows of other cells {cells_in[:5]}")
    back = [storage.read_parquet(uri, columns=["id", "grid_partition"]) for uri in outputs]
    out = pa.concat_tables(back) if back else pa.table({"id": [], "grid_partition": []})
    ids_in = pc.unique(rows_in["id"])
    if out.num_rows != len(ids_in):
        raise CompactionError(
            f"{where}: {out.num_rows:,} rows written for {len(ids_in):,} distinct ids in"
        )
    cells_out = pc.unique(out["grid_partition"]).to_pylist() if out.num_rows else []
    if cells_out and cells_out != [bucket.cell]:
        raise CompactionError(f"{where}: written rows of other cells {cells_out[:5]}")
    ids_out = out["id"].combine_chunks().cast(pa.string())
    sorted_in = ids_in.cast(pa.string()).take(pc.sort_indices(ids_in))
    sorted_out = ids_out.take(pc.sort_indices(ids_out))
    if not sorted_in.equals(sorted_out):
        raise CompactionError(f"{where}: the written ids differ from the ids read")


# --- 3. commit ----------------------------------------------------------------------------


def commit_compaction(
    settings: Settings,
    options: MaintenanceOptions,
    buckets: Sequence[BucketPlan],
    planned_snapshot_id: int | None,
) -> tuple[int | None, int | None]:
    """Swap every written bucket's inputs for its outputs in one OVERWRITE snapshot.

    Under the catalog lock (and upload), the table is reloaded and a bucket whose inputs
    are not all in the current snapshot any more is skipped (status ``skipped``; its
    written files stay unregistered). Returns the new snapshot's id (``None`` if nothing
    was committed) and the table's data-file count after.
    """
    with maintenance_session(settings, options, LOCK_OWNER) as session:
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            table = iceberg.load_table(iceberg.open_catalog(session.local, settings.warehouse))
            snapshot = table.current_snapshot() if table is not None else None
            live = _live_inputs(table, buckets, planned_snapshot_id)
            ready = []
            for bucket in buckets:
                if bucket.status in ("written", "compacted") and all(
                    path in live for path in bucket.files
                ):
                    ready.append(bucket)
                else:
                    bucket.status = "skipped"
                    log.warning(
                        "bucket (%s, %s): its files changed since the plan; skipped",
                        bucket.cell,
                        bucket.year,
                    )
            if table is None or not ready:
                return None, _total_data_files(snapshot.summary) if snapshot else None
            footers = {w.uri: w for bucket in ready for w in bucket.written}
            added = iceberg.data_files(table, list(footers), footers=footers)
            properties = {
                OPERATION_PROPERTY: COMPACT_OPERATION,
                "earthcatalog.compact.buckets": str(len(ready)),
                "earthcatalog.compact.files-in": str(sum(b.files_in for b in ready)),
                "earthcatalog.compact.files-out": str(len(added)),
                "earthcatalog.compact.rows-in": str(sum(b.rows for b in ready)),
                "earthcatalog.compact.rows-out": str(sum(b.rows_out for b in ready)),
                "earthcatalog.compact.duplicates-dropped": str(
                    sum(b.duplicates_dropped for b in ready)
                ),
            }
            try:
                with table.transaction() as tx:
                    update = tx.update_snapshot(snapshot_properties=properties)
                    with update.overwrite() as overwrite:
                        for bucket in ready:
                            for path in bucket.files:
                                overwrite.delete_data_file(live[path])
                        for data_file in added:
                            overwrite.append_data_file(data_file)
            except CommitFailedException:
                if attempt == COMMIT_ATTEMPTS:
                    raise
                log.warning("the table changed under this compaction (no lock?): checking again")
                continue
            for bucket in ready:
                bucket.status = "compacted"
            committed = table.current_snapshot()
            session.commit()
            return committed.snapshot_id, _total_data_files(committed.summary)
    raise AssertionError("unreachable")


def _live_inputs(
    table: Table | None, buckets: Sequence[BucketPlan], planned_snapshot_id: int | None
) -> dict[str, DataFile]:
    """The buckets' input files still in the table's current snapshot, by path.

    When the snapshot is the one planned on, the plan's entries are current; otherwise the
    buckets' cells are read again from the new snapshot.
    """
    snapshot = table.current_snapshot() if table is not None else None
    if table is None or snapshot is None:
        return {}
    if snapshot.snapshot_id == planned_snapshot_id:
        return {f.file_path: f for bucket in buckets for f in bucket.data_files}
    wanted = {path for bucket in buckets for path in bucket.files}
    files = live_data_files(table, {bucket.cell for bucket in buckets})
    return {f.file_path: f for f in files if f.file_path in wanted}
