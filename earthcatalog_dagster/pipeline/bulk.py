"""``bulk_ingest()``: the distributed 4-phase path for multi-million-item backfills.

Phase 1 (head) chunks the inventory into the staging prefix; Phase 2 runs one Dask task
per chunk (fetch, fan out, NDJSON per (cell, year), completion marker); Phase 3 one task
per (cell, year) (dedupe, GeoParquet of at most ``compact_rows`` rows per file); Phase 4
(head) registers, syncs the hash index and cleans the markers. Every phase is idempotent,
so a run killed at any moment (a spot instance reclaimed) is resumed by rerunning it.
Workers return small descriptors only; Parquet and NDJSON bytes never reach the head.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import xxhash

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import load_hash_index
from earthcatalog_dagster.core.remote_catalog import catalog_session, read_copy
from earthcatalog_dagster.pipeline import phases
from earthcatalog_dagster.pipeline.compute import (
    close_client,
    open_client,
    run_tasks,
    validate_scheduler,
)
from earthcatalog_dagster.pipeline.hash_sync import sync_hash_index

log = logging.getLogger(__name__)
RETRY_BASE = 1_000_000  # chunk numbers of retried pending keys start here


@dataclass
class BulkSummary:
    """What a bulk run did; ``source_rows`` reconciles with every row's outcome."""

    mode: str
    staging: str
    source_rows: int = 0
    already_ingested: int = 0
    chunks: int = 0
    chunks_skipped: int = 0
    items_written: int = 0
    rejected: int = 0
    missing: int = 0
    pending: int = 0
    rows_written: int = 0
    files_written: int = 0
    bytes_written: int = 0
    buckets: int = 0
    buckets_skipped: int = 0
    files_registered: int = 0
    snapshot_id: int | None = None
    hashes_before: int | None = None
    hashes_after: int | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def reconciles(self) -> bool:
        accounted = self.items_written + self.rejected + self.missing + self.pending
        return self.source_rows == accounted + self.already_ingested

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["reconciles"] = self.reconciles
        return data

    def render(self) -> str:
        return "\n".join(
            [
                f"Mode : {self.mode} (staging {self.staging})",
                f"Source rows : {self.source_rows:,}"
                f" = written {self.items_written:,} + rejected {self.rejected:,}"
                f" + missing {self.missing:,} + pending {self.pending:,}"
                f" + already ingested {self.already_ingested:,}"
                f" [{'reconciles' if self.reconciles else 'DOES NOT RECONCILE'}]",
                f"Chunks : {self.chunks:,} ({self.chunks_skipped:,} already done)",
                f"Buckets : {self.buckets:,} ({self.buckets_skipped:,} already done)",
                f"Rows written : {self.rows_written:,} in {self.files_written:,} files"
                f" ({self.bytes_written / 1e6:,.1f} MB)",
                f"Registered : {self.files_registered:,} files, snapshot {self.snapshot_id}",
                f"Hash index : {self.hashes_before} → {self.hashes_after}",
                "Seconds : " + ", ".join(f"{k} {v:.1f}" for k, v in self.seconds.items()),
            ]
        )


class _Progress:
    """A progress bar on a terminal, plain log lines otherwise."""

    def __init__(self, enabled: bool | None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    @contextmanager
    def phase(self, name: str, total: int) -> Iterator[Callable[[Any], None]]:
        started = time.perf_counter()
        if self.enabled:
            from tqdm import tqdm

            with tqdm(total=total, desc=name, unit="task", file=sys.stderr) as bar:
                yield lambda _result: bar.update(1)
        else:
            done = [0]
            step = max(1, total // 10)

            def tick(_result: Any) -> None:
                done[0] += 1
                if done[0] % step == 0 or done[0] == total:
                    log.info("%s: %d/%d", name, done[0], total)

            log.info("%s: %d tasks", name, total)
            yield tick
        log.info("%s done in %.1f s", name, time.perf_counter() - started)


def bulk_ingest(
    inventory: str,
    *,
    mode: Literal["full", "delta", "auto"] = "auto",
    create_client: Callable[[], Any] | None = None,
    scheduler: str = "local",
    workers: int = 4,
    threads_per_worker: int = 1,
    chunk_size: int = 10_000,
    compact_rows: int = 200_000,
    fetch_concurrency: int = 256,
    warehouse: str | None = None,
    catalog: str | None = None,
    catalog_remote: str | None = None,
    hash_index: str | None = None,
    staging: str | None = None,
    source_root: str | None = None,
    since: datetime | date | str | None = None,
    limit: int | None = None,
    h3_resolution: int | None = None,
    update_hash_index: bool = True,
    skip_inventory: bool = False,
    skip_ingest: bool = False,
    retry_pending: bool = False,
    use_lock: bool = True,
    skip_upload: bool = False,
    progress: bool | None = None,
    settings: Settings | None = None,
) -> BulkSummary:
    """Ingest an inventory through the 4-phase staged pipeline on Dask.

    ``staging`` is this run's own prefix (default ``<STAGING>/bulk_<hash of inventory>``);
    rerunning with the same arguments resumes a killed run. ``mode="full"`` drops and
    recreates the table from the warehouse listing; ``"delta"`` adds the new files to the
    existing table (ids already in the hash index are skipped at chunking); ``"auto"`` is
    full when there is no table yet. ``create_client`` (e.g. ``lambda: coiled.Client(...)``)
    is called right before Phase 2. ``skip_inventory`` reuses the chunks in staging,
    ``skip_ingest`` goes straight to Phase 3, ``retry_pending`` retries recorded failures.
    ``use_lock=False`` (``--no-lock``) skips the catalog lock; ``skip_upload`` keeps a
    remote catalog (``CATALOG_REMOTE``) from being uploaded.
    """
    validate_scheduler(scheduler, create_client)
    base = settings or Settings.from_env()
    cfg = base.with_overrides(
        warehouse=warehouse, warehouse_hash=hash_index, catalog=catalog, staging=staging
    )
    if source_root is not None:
        cfg = cfg.with_overrides(source_root=source_root)
    if catalog_remote is not None:
        cfg = cfg.with_overrides(catalog_remote=catalog_remote)
    staging_dir = staging or layout.join(cfg.staging, f"bulk_{_digest(inventory)}")
    if not skip_inventory and not skip_ingest and not storage.exists(inventory):
        raise FileNotFoundError(f"inventory not found: {inventory}")
    if skip_inventory and not storage.exists(layout.chunk_plan(staging_dir)):
        raise FileNotFoundError(
            f"--skip-inventory: no chunks to reuse in {staging_dir} "
            f"({layout.chunk_plan(staging_dir)} does not exist); run without it first"
        )
    # Phases 1–3 only read the table: a fresh copy of the remote catalog, no lock needed.
    readable = read_copy(cfg.catalog_remote) if cfg.catalog_remote else cfg.catalog
    sql_catalog = iceberg.open_catalog(readable, cfg.warehouse)
    table = iceberg.load_table(sql_catalog)
    resolved = ("full" if table is None else "delta") if mode == "auto" else mode
    if resolved == "delta" and table is None:
        raise ValueError(
            f"delta mode needs the table {iceberg.TABLE_IDENTIFIER} in {cfg.catalog}; "
            "run a full build first (without --delta, with --h3-resolution)"
        )
    resolution = _resolution(table, h3_resolution, resolved)
    summary = BulkSummary(mode=resolved, staging=staging_dir)
    done = _completed_run(staging_dir, inventory, since, limit, chunk_size)
    if done is not None and not retry_pending:
        log.info("%s: this run already completed; nothing to do", staging_dir)
        return done
    bars = _Progress(progress)
    run = _SharedWorkers(scheduler, workers, threads_per_worker, create_client)

    # Phase 1: chunks (kept on restart).
    started = time.perf_counter()
    if skip_inventory or skip_ingest:
        plan = phases.reuse_chunks(staging_dir)
    else:
        index = load_hash_index(cfg.warehouse_hash) if resolved == "delta" else None
        plan = phases.write_chunks(
            inventory,
            staging_dir,
            chunk_size=chunk_size,
            since=since,
            limit=limit,
            exclude=index,
        )
    summary.source_rows = plan.rows + plan.excluded
    summary.already_ingested = plan.excluded
    chunks = list(plan.chunks)
    if retry_pending:
        chunks += _retry_chunks(staging_dir)
    chunks += [c for c in _retry_chunk_files(staging_dir) if c not in chunks]
    summary.chunks = len(chunks)
    summary.seconds["phase 1 (chunks)"] = time.perf_counter() - started

    # Phase 2: one task per chunk.
    started = time.perf_counter()
    task = functools.partial(
        phases.ingest_chunk,
        staging_dir=staging_dir,
        source_root=cfg.source_root,
        resolution=resolution,
        fetch_concurrency=fetch_concurrency,
    )
    if skip_ingest:
        results = [_marker_or_empty(staging_dir, c) for c in chunks]
    else:
        with bars.phase("phase 2: chunks → NDJSON", len(chunks)) as tick:
            results = run(task, chunks, on_result=tick)
    retried = {c for c in chunks if phases.chunk_number(c) >= RETRY_BASE}
    for result in results:
        summary.chunks_skipped += result.skipped
        # A retried chunk's rows were counted once already as pending in their first chunk.
        summary.items_written += result.items
        summary.rejected += result.rejected
        summary.missing += result.missing
        summary.pending += result.failed
        if result.chunk in retried:
            summary.pending -= result.rows
    summary.seconds["phase 2 (ndjson)"] = time.perf_counter() - started

    # Phase 3: one task per (cell, year).
    started = time.perf_counter()
    buckets = sorted({(cell, year) for r in results for cell, year, _ in r.buckets})
    if skip_ingest:
        buckets = sorted(set(buckets) | set(_staged_buckets(staging_dir)))
    # Retried items join buckets whose files an earlier attempt registered: those files
    # must not be overwritten by the retried rows alone, whatever the mode.
    registered = (
        frozenset(iceberg.registered_files(table))
        if table is not None and (resolved == "delta" or retried)
        else frozenset()
    )
    compact = functools.partial(
        _compact,
        staging_dir=staging_dir,
        warehouse=cfg.warehouse,
        token=f"bulk-{_digest(staging_dir)[:8]}",
        registered=registered,
        compact_rows=compact_rows,
    )
    with bars.phase("phase 3: buckets → GeoParquet", len(buckets)) as tick:
        compacted = run(compact, buckets, on_result=tick)
    summary.buckets = len(compacted)
    summary.buckets_skipped = sum(b.skipped for b in compacted)
    summary.rows_written = sum(b.rows for b in compacted)
    summary.files_written = sum(len(b.files) for b in compacted)
    summary.bytes_written = sum(b.bytes for b in compacted)
    files = [f for b in compacted for f in b.files]
    run.close()  # the cluster is not needed on the head's Phase 4
    summary.seconds["phase 3 (parquet)"] = time.perf_counter() - started

    # Phase 4: register, hash index, clean markers — holding the catalog (lock, download,
    # conditional upload; the upload happens before the hash sync, so the index never
    # runs ahead of the published catalog).
    started = time.perf_counter()
    with catalog_session(
        cfg.catalog,
        cfg.catalog_remote,
        use_lock=use_lock,
        skip_upload=skip_upload,
        owner="earthcatalog-dagster bulk_ingest()",
    ) as session:
        sql_catalog = iceberg.open_catalog(cfg.catalog, cfg.warehouse)
        if resolved == "full":
            table, registration = iceberg.rebuild_from_warehouse(
                sql_catalog,
                cfg.warehouse,
                resolution=resolution,
                hash_index_path=cfg.warehouse_hash,
            )
        else:
            table = iceberg.load_table(sql_catalog)
            registration = iceberg.register_files(table, files)
        summary.files_registered = registration.added
        summary.snapshot_id = registration.snapshot_id
        session.commit()
        if update_hash_index:
            synced = sync_hash_index(table, cfg.warehouse_hash, rebuild=resolved == "full")
            summary.hashes_before, summary.hashes_after = synced.before, synced.after
    summary.seconds["phase 4 (register)"] = time.perf_counter() - started
    # Completion first, then cleaning: a rerun after this point is a no-op, and the NDJSON
    # of a finished run can never be compacted a second time.
    _record_completion(staging_dir, summary)
    phases.clear_markers(staging_dir)
    log.debug("bulk ingest summary:\n%s", summary.render())
    return summary


class _SharedWorkers:
    """Runs Phases 2 and 3 on one Dask client, opened on first use (``create_client`` is
    called once per run, right before the first distributed task) and closed after
    Phase 3 or on the first failure; ``synchronous`` runs in this process."""

    def __init__(
        self,
        scheduler: str,
        workers: int,
        threads_per_worker: int,
        create_client: Callable[[], Any] | None,
    ) -> None:
        self.scheduler, self.workers, self.threads = scheduler, workers, threads_per_worker
        self.create_client = create_client
        self.client: Any = None
        self.cluster: Any = None

    def __call__(self, fn: Callable[[Any], Any], items: Sequence[Any], on_result: Any = None):
        if not items or (self.scheduler == "synchronous" and self.create_client is None):
            return run_tasks(fn, items, scheduler="synchronous", on_result=on_result)
        try:
            if self.client is None:
                self.client, self.cluster = open_client(
                    self.scheduler, self.workers, self.threads, self.create_client
                )
            return run_tasks(fn, items, client=self.client, on_result=on_result)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.client is not None:
            client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
            close_client(client, cluster)


def _digest(text: str) -> str:
    return xxhash.xxh3_64_hexdigest(text.encode())[:12]


def _resolution(table: Any, requested: int | None, mode: str) -> int:
    if table is not None and (mode == "delta" or requested is None):
        existing = iceberg.table_resolution(table)
        if requested is not None and requested != existing:
            raise ValueError(
                f"--h3-resolution {requested} differs from the table's {existing}; "
                "changing it needs a full build"
            )
        return existing
    if requested is None:
        raise ValueError("a first full build needs --h3-resolution (e.g. 1)")
    return requested


def _compact(bucket: Sequence[str], **kwargs: Any) -> phases.BucketResult:
    cell, year = bucket
    return phases.compact_bucket(kwargs.pop("staging_dir"), cell, year, **kwargs)


def _marker_or_empty(staging_dir: str, chunk: str) -> phases.ChunkResult:
    marker = layout.chunk_marker(staging_dir, phases.chunk_number(chunk))
    if storage.exists(marker):
        return phases.ChunkResult.from_json(storage.read_bytes(marker))
    log.warning("--skip-ingest: %s has no completion marker; its NDJSON may be partial", chunk)
    return phases.ChunkResult(chunk=chunk, skipped=True)


def _staged_buckets(staging_dir: str) -> list[tuple[str, str]]:
    found = set()
    for info in storage.list_objects(layout.ndjson_dir(staging_dir), suffix=".ndjson"):
        parsed = layout.parse_ndjson_file(info.uri)
        if parsed:
            found.add(parsed)
    return sorted(found)


def _retry_chunks(staging_dir: str) -> list[str]:
    """Turn recorded failures into new chunks (a retry chunk per pending file)."""
    chunks = []
    for info in storage.list_objects(layout.join(staging_dir, "pending_chunks"), suffix=".parquet"):
        number = phases.chunk_number(info.uri)
        retry = layout.chunk_file(staging_dir, number + RETRY_BASE * (1 + number // RETRY_BASE))
        failed = storage.read_parquet(info.uri, columns=["bucket", "key"])
        storage.write_parquet(failed, retry)
        storage.delete(layout.chunk_marker(staging_dir, phases.chunk_number(retry)))
        storage.delete(info.uri)
        chunks.append(retry)
    return chunks


def _retry_chunk_files(staging_dir: str) -> list[str]:
    """Retry chunks of earlier runs: finished ones are skipped by their markers, and
    their outcomes replace the failures they retried in the summary."""
    return [
        info.uri
        for info in storage.list_objects(layout.join(staging_dir, "chunks"), suffix=".parquet")
        if phases.chunk_number(info.uri) >= RETRY_BASE
    ]


def _completed_run(
    staging_dir: str, inventory: str, since: Any, limit: int | None, chunk_size: int
) -> BulkSummary | None:
    """The summary of an earlier run that completed with the same inventory, if any."""
    sentinel = layout.run_complete(staging_dir)
    if not storage.exists(sentinel):
        return None
    record = json.loads(storage.read_bytes(sentinel))
    plan = json.loads(storage.read_bytes(layout.chunk_plan(staging_dir)))
    if storage.exists(inventory):
        current = phases.inventory_fingerprint(inventory, since, limit, chunk_size)
        if current != plan["fingerprint"]:
            return None
    record.pop("reconciles", None)
    return BulkSummary(**record)


def _record_completion(staging_dir: str, summary: BulkSummary) -> None:
    data = asdict(summary)
    storage.write_bytes(layout.run_complete(staging_dir), json.dumps(data, indent=1).encode())
