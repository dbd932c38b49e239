"""``ingest()``: the single-node path for daily deltas.

Inventory rows stream in bounded batches; ids already in the hash index are dropped
(vectorized anti-join); the rest are fetched concurrently, parsed, fanned out to H3 cells
and held per (cell, year) bucket; then every bucket is written as GeoParquet under
deterministic names, registered in one Iceberg snapshot, and the hash index is synced.
No intermediate files: the staging root only receives the record of rejected, missing
and failed objects.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import pyarrow as pa
import xxhash

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.buckets import (
    BucketKey,
    dedupe_latest,
    explode_to_cells,
    split_buckets,
)
from earthcatalog_dagster.core.fetch import fetch_objects
from earthcatalog_dagster.core.geoparquet import WrittenFile, write_geoparquet
from earthcatalog_dagster.core.hash_index import hash_ids, load_hash_index
from earthcatalog_dagster.core.inventory import ids_of_keys, iter_inventory
from earthcatalog_dagster.core.items import parse_items
from earthcatalog_dagster.core.partitioning import DEFAULT_RESOLUTION
from earthcatalog_dagster.core.remote_catalog import catalog_session
from earthcatalog_dagster.core.schema import WAREHOUSE_SCHEMA
from earthcatalog_dagster.pipeline.hash_sync import sync_hash_index
from earthcatalog_dagster.pipeline.outcomes import OUTCOME_SCHEMA, outcome_table
from earthcatalog_dagster.pipeline.runtime import paused_gc

log = logging.getLogger(__name__)

Mode = Literal["auto", "full", "delta"]
DEFAULT_BATCH_ROWS = 2_000
DEFAULT_COMPACT_ROWS = 200_000
PARALLEL_AFTER_ROWS = 8_000


@dataclass
class IngestSummary:
    """What a run did. ``source_rows`` reconciles with the outcome of every row."""

    mode: str
    source_rows: int = 0
    already_ingested: int = 0
    duplicate_keys: int = 0
    fetched: int = 0
    missing: int = 0
    failed: int = 0
    rejected: int = 0
    items_written: int = 0
    rows_written: int = 0
    files_written: int = 0
    bytes_written: int = 0
    files_registered: int = 0
    snapshot_id: int | None = None
    hashes_before: int = 0
    hashes_after: int = 0
    cells: int = 0
    years: list[str] = field(default_factory=list)
    outcomes_uri: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        accounted = (
            self.already_ingested
            + self.duplicate_keys
            + self.missing
            + self.failed
            + self.rejected
            + self.items_written
        )
        return accounted == self.source_rows

    @property
    def items_per_second(self) -> float:
        total = sum(self.seconds.values())
        return self.source_rows / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["seconds"] = {k: round(v, 3) for k, v in self.seconds.items()}
        data["reconciles"] = self.reconciles
        return data


@dataclass(frozen=True)
class WrittenBucketFile:
    file: WrittenFile
    ids: pa.Array


class _Timer:
    def __init__(self, summary: IngestSummary, stage: str) -> None:
        self.summary, self.stage = summary, stage

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self.start
        self.summary.seconds[self.stage] = self.summary.seconds.get(self.stage, 0.0) + elapsed


def ingest(
    inventory: str,
    *,
    warehouse: str | None = None,
    catalog: str | None = None,
    catalog_remote: str | None = None,
    hash_index: str | None = None,
    source_root: str | None = None,
    staging: str | None = None,
    mode: Mode = "auto",
    since: datetime | date | str | None = None,
    limit: int | None = None,
    update_hash_index: bool = True,
    h3_resolution: int | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    compact_rows: int = DEFAULT_COMPACT_ROWS,
    fetch_concurrency: int = 256,
    workers: int | None = None,
    use_lock: bool = True,
    lock_timeout: float = 600.0,
    skip_upload: bool = False,
    settings: Settings | None = None,
) -> IngestSummary:
    """Ingest the ``.stac.json`` objects of an inventory into the catalog, on one node.

    ``inventory`` is an S3 Inventory ``manifest.json``, a CSV/CSV.gz/Parquet file of
    ``bucket, key``, or a delta Parquet. Unset roots come from the environment
    (``WAREHOUSE``, ``WAREHOUSE_HASH``, ``STAGING``, ``SOURCE_ROOT``, ``CATALOG``) and then
    from the embedded default. ``mode="auto"`` builds the table when there is none and
    appends otherwise; ``"full"`` drops and recreates it from the warehouse listing.
    ``workers`` processes (default: the CPUs, at most 4) parse and fan out the batches of
    runs larger than a few thousand rows. Items whose id is already in the hash index are
    skipped (delta mode), so rerunning an inventory adds nothing. The run holds the lock
    beside the catalog (``use_lock``; the operators' ``--no-lock``). With a remote catalog
    (``catalog_remote``, ``$CATALOG_REMOTE``) the lock is beside it, the catalog is
    downloaded first and uploaded (conditionally) once the files are registered, before
    the hash index follows it (``skip_upload``: the operators' ``--skip-upload``).
    Returns a summary whose counts reconcile.
    """
    base = settings or Settings.from_env()
    cfg = base.with_overrides(
        warehouse=warehouse,
        warehouse_hash=hash_index,
        staging=staging,
        catalog=catalog,
        catalog_remote=catalog_remote,
    )
    if source_root is not None:
        cfg = cfg.with_overrides(source_root=source_root)
    with catalog_session(
        cfg.catalog,
        cfg.catalog_remote,
        use_lock=use_lock,
        skip_upload=skip_upload,
        owner="earthcatalog-dagster ingest()",
        lock_timeout=lock_timeout,
    ) as session:
        return _ingest(
            inventory,
            cfg,
            mode,
            since,
            limit,
            update_hash_index,
            h3_resolution,
            batch_rows,
            compact_rows,
            fetch_concurrency,
            workers if workers is not None else min(4, os.cpu_count() or 1),
            session.commit,
        )


def _ingest(
    inventory: str,
    cfg: Settings,
    mode: Mode,
    since: datetime | date | str | None,
    limit: int | None,
    update_hash_index: bool,
    h3_resolution: int | None,
    batch_rows: int,
    compact_rows: int,
    fetch_concurrency: int,
    workers: int,
    commit: Callable[[], object] = lambda: None,
) -> IngestSummary:
    sql_catalog = iceberg.open_catalog(cfg.catalog, cfg.warehouse)
    table = iceberg.load_table(sql_catalog)
    resolved: str = ("full" if table is None else "delta") if mode == "auto" else mode
    if resolved not in ("full", "delta"):
        raise ValueError(f"mode must be 'auto', 'full' or 'delta', not {mode!r}")
    if resolved == "delta" and table is None:
        raise ValueError(
            f"mode='delta' needs an existing table {iceberg.TABLE_IDENTIFIER} in {cfg.catalog}; "
            "run a full build first (mode='full' or 'auto')"
        )
    resolution = _resolution(table if resolved == "delta" else None, h3_resolution)
    summary = IngestSummary(mode=resolved)
    token = run_token(inventory, since, limit)

    if resolved == "delta" and update_hash_index:
        with _Timer(summary, "hash_index"):
            sync_hash_index(table, cfg.warehouse_hash)  # heal a run killed before its sync
    with _Timer(summary, "hash_index"):
        index = load_hash_index(cfg.warehouse_hash)
    summary.hashes_before = summary.hashes_after = len(index)

    exploded: list[pa.Table] = []
    outcomes: list[pa.Table] = []
    seen_keys: set[str] = set()  # keys only, bounded by one inventory; guards repeated rows
    stage = functools.partial(
        stage_batch,
        source_root=cfg.source_root,
        resolution=resolution,
        fetch_concurrency=fetch_concurrency,
    )
    with _Stager(stage, workers) as stager:
        for batch in _batches(
            iter_inventory(inventory, since=since, limit=limit), batch_rows, summary
        ):
            batch = _drop_repeated_keys(batch, seen_keys, summary)
            if resolved == "delta":
                with _Timer(summary, "anti_join"):
                    ids = ids_of_keys(batch["key"])
                    fresh = index.missing_mask(hash_ids(ids))
                summary.already_ingested += batch.num_rows - int(fresh.sum())
                batch = batch.filter(pa.array(fresh))
            if batch.num_rows:
                for staged in stager.submit(batch):
                    _collect(staged, exploded, outcomes, summary)
        for staged in stager.drain():
            _collect(staged, exploded, outcomes, summary)

    with _Timer(summary, "write"):
        written = _write_buckets(exploded, cfg.warehouse, token, table, compact_rows, summary)
    with _Timer(summary, "register"):
        if resolved == "full":
            table, registration = iceberg.rebuild_from_warehouse(
                sql_catalog,
                cfg.warehouse,
                resolution=resolution,
                hash_index_path=cfg.warehouse_hash,
            )
        else:
            registration = iceberg.register_files(
                table, [w.file.uri for w in written], footers={w.file.uri: w.file for w in written}
            )
        summary.files_registered = registration.added
        summary.snapshot_id = registration.snapshot_id
        commit()  # publish the catalog before the hash index follows it
    if update_hash_index:
        with _Timer(summary, "hash_index"):
            known = {w.file.uri: w.ids for w in written}
            synced = sync_hash_index(
                table, cfg.warehouse_hash, known_ids=known, rebuild=resolved == "full"
            )
            summary.hashes_after = synced.after
    summary.outcomes_uri = _record_outcomes(outcomes, cfg.staging, token)
    log.info("ingest summary: %s", summary.as_dict())
    return summary


def run_token(inventory: str, since: object, limit: int | None) -> str:
    """A short stable name for a run over one inventory, used in its output file names."""
    return xxhash.xxh3_64_hexdigest(f"{inventory}|{since}|{limit}".encode())[:12]


def _resolution(table: Any, requested: int | None) -> int:
    if table is None:
        return requested if requested is not None else DEFAULT_RESOLUTION
    existing = iceberg.table_resolution(table)
    if requested is not None and requested != existing:
        raise ValueError(
            f"h3_resolution={requested} differs from the table's resolution {existing}; "
            "a different resolution needs a full rebuild (mode='full')"
        )
    return existing


def _batches(
    batches: Iterator[pa.RecordBatch], rows: int, summary: IngestSummary
) -> Iterator[pa.Table]:
    """Re-slice the inventory stream into batches of about ``rows`` rows, timing the reads."""
    while True:
        with _Timer(summary, "read"):
            batch = next(batches, None)
        if batch is None:
            return
        summary.source_rows += batch.num_rows
        for offset in range(0, batch.num_rows, rows):
            yield pa.Table.from_batches([batch.slice(offset, rows)])


def _drop_repeated_keys(batch: pa.Table, seen: set[str], summary: IngestSummary) -> pa.Table:
    """Drop keys listed twice. A set of keys is fine here: ``ingest()`` runs daily deltas
    (~60 k rows); the bulk path dedupes per chunk on disk instead."""
    keys = batch["key"].to_pylist()
    keep = []
    for key in keys:
        keep.append(key not in seen)
        seen.add(key)
    dropped = len(keys) - sum(keep)
    if dropped:
        summary.duplicate_keys += dropped
        batch = batch.filter(pa.array(keep))
    return batch


@dataclass
class StagedBatch:
    """One inventory batch fetched, parsed and fanned out: rows and outcomes."""

    exploded: pa.Table
    outcomes: pa.Table
    fetched: int
    missing: int
    failed: int
    rejected: int
    items: int
    seconds: dict[str, float]


def stage_batch(
    batch: pa.Table, *, source_root: str | None, resolution: int, fetch_concurrency: int
) -> StagedBatch:
    """Fetch, parse and fan out one batch (in a worker thread or process)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    fetched = fetch_objects(batch, source_root=source_root, concurrency=fetch_concurrency)
    seconds["fetch"] = time.perf_counter() - started
    with paused_gc():
        started = time.perf_counter()
        parsed = parse_items(fetched.bodies, fetched.keys)
        seconds["parse"] = time.perf_counter() - started
        started = time.perf_counter()
        exploded = explode_to_cells(parsed, resolution)
        seconds["fan_out"] = time.perf_counter() - started
    return StagedBatch(
        exploded=exploded,
        outcomes=outcome_table(parsed.rejects, fetched.missing, fetched.failed),
        fetched=len(fetched.bodies),
        missing=fetched.missing.num_rows,
        failed=fetched.failed.num_rows,
        rejected=len(parsed.rejects),
        items=parsed.table.num_rows,
        seconds=seconds,
    )


def _collect(
    staged: StagedBatch,
    exploded: list[pa.Table],
    outcomes: list[pa.Table],
    summary: IngestSummary,
) -> None:
    summary.fetched += staged.fetched
    summary.missing += staged.missing
    summary.failed += staged.failed
    summary.rejected += staged.rejected
    summary.items_written += staged.items
    for stage, seconds in staged.seconds.items():
        summary.seconds[stage] = summary.seconds.get(stage, 0.0) + seconds
    exploded.append(staged.exploded)
    outcomes.append(staged.outcomes)


class _Stager:
    """Runs :func:`stage_batch` ahead of the inventory reader, results in order.

    Small runs use two threads (fetching one batch while parsing another). Once a run has
    shown ``PARALLEL_AFTER_ROWS`` rows it moves to a process pool of ``workers``: parsing
    and H3 fan-out are Python and hold the GIL, so only processes use a second core. The
    pool's start-up (imports, ~2 s) is why small runs do not take it.
    """

    def __init__(self, stage: Callable[[pa.Table], StagedBatch], workers: int) -> None:
        self.stage, self.workers = stage, workers
        self.threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stage")
        self.processes: ProcessPoolExecutor | None = None
        self.inflight: deque[Future] = deque()
        self.rows = 0

    def __enter__(self) -> _Stager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)
        if self.processes is not None:
            self.processes.shutdown(wait=True, cancel_futures=True)

    def submit(self, batch: pa.Table) -> list[StagedBatch]:
        self.rows += batch.num_rows
        if self.processes is None and self.workers > 1 and self.rows > PARALLEL_AFTER_ROWS:
            context = multiprocessing.get_context("spawn")
            self.processes = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        pool = self.processes or self.threads
        self.inflight.append(pool.submit(self.stage, batch))
        ready = []
        limit = 2 * self.workers if self.processes else 2
        while len(self.inflight) > limit or (self.inflight and self.inflight[0].done()):
            ready.append(self.inflight.popleft().result())
        return ready

    def drain(self) -> list[StagedBatch]:
        ready = [future.result() for future in self.inflight]
        self.inflight.clear()
        return ready


def _write_buckets(
    exploded: list[pa.Table],
    warehouse: str,
    token: str,
    table: Any,
    compact_rows: int,
    summary: IngestSummary,
) -> list[WrittenBucketFile]:
    """Write every (cell, year) bucket; returns each written file with its ids."""
    registered = iceberg.registered_files(table) if table is not None else set()
    rows = pa.concat_tables(exploded).cast(WAREHOUSE_SCHEMA) if exploded else None
    jobs: list[tuple[str, pa.Table]] = []
    keys: list[BucketKey] = []
    for (cell, year), bucket in split_buckets(rows) if rows is not None else ():
        bucket = dedupe_latest(bucket)
        keys.append((cell, year))
        sequence = _first_free_sequence(warehouse, cell, year, token, registered)
        for offset in range(0, bucket.num_rows, compact_rows):
            uri = layout.warehouse_file(warehouse, cell, year, token, sequence)
            jobs.append((uri, bucket.slice(offset, compact_rows)))
            sequence += 1
        summary.rows_written += bucket.num_rows
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="write") as pool:
        written = list(pool.map(lambda job: write_geoparquet(job[1], job[0], presorted=True), jobs))
    summary.files_written = len(jobs)
    summary.bytes_written = sum(w.size for w in written)
    summary.cells = len({cell for cell, _ in keys})
    summary.years = sorted({year for _, year in keys})
    return [
        WrittenBucketFile(w, part["id"].combine_chunks())
        for w, (_, part) in zip(written, jobs, strict=True)
    ]


def _first_free_sequence(
    warehouse: str, cell: str, year: str, token: str, registered: set[str]
) -> int:
    """The first sequence number of this run's files in a bucket not yet in the table.

    Files at that number or above that exist without being registered are leftovers of a
    killed run and are overwritten.
    """
    sequence = 0
    while layout.warehouse_file(warehouse, cell, year, token, sequence) in registered:
        sequence += 1
    return sequence


def _record_outcomes(outcomes: list[pa.Table], staging: str, token: str) -> str | None:
    table = pa.concat_tables(outcomes) if outcomes else OUTCOME_SCHEMA.empty_table()
    if table.num_rows == 0:
        return None
    uri = layout.join(staging, f"ingest_{token}", "outcomes.parquet")
    storage.write_parquet(table, uri)
    return uri
