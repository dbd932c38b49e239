"""``bulk_ingest()``: the distributed 4-phase path for multi-million-item backfills.

Phase 1 (head) chunks the inventory into the staging prefix; Phase 2 runs one Dask task
per chunk (fetch, fan out, NDJSON per (cell, year), completion marker); Phase 3 one task
per group of (cell, year) buckets (dedupe, GeoParquet of at most ``compact_rows`` rows per
file, a marker per bucket); Phase 4 (head) registers, syncs the hash index and cleans the
markers. Every phase is idempotent, so a run killed at any moment (a spot instance
reclaimed) is resumed by rerunning it. Workers return small descriptors only — and, for
runs of up to :data:`HAND_OVER_ROWS` rows, each new file's ids and footer, so Phase 4
reads nothing back; Parquet and NDJSON bytes never reach the head.
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
from typing import Any

import xxhash
from pyiceberg.table import Table

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import WRITTEN_ROOTS, Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.options import DEFAULTS, IngestOptions
from earthcatalog_dagster.pipeline import commit as committer
from earthcatalog_dagster.pipeline import phases
from earthcatalog_dagster.pipeline.compute import (
    close_client,
    open_client,
    release_pool,
    run_tasks,
    validate_scheduler,
    writer_threads,
)
from earthcatalog_dagster.pipeline.hash_sync import read_staged_aliases
from earthcatalog_dagster.pipeline.outcomes import (
    MISMATCH_EXAMPLES,
    SourceUnreadable,
    check_missing,
    describe_mismatches,
)

log = logging.getLogger(__name__)
RETRY_BASE = 1_000_000  # chunk numbers of retried pending keys start here
OWNER = "earthcatalog-dagster bulk_ingest()"
#: Schedulers that run on this machine without Dask (:mod:`.compute`).
IN_MACHINE = ("synchronous", "processes", "auto")
#: Phase 3 hands each new file's ids and footer to Phase 4 (nothing read back) while a
#: run stages at most this many rows (their ids: ~100 MB in the head); a larger backfill
#: reads them back from the files instead.
HAND_OVER_ROWS = 2_000_000


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
    rows_already_registered: int = 0
    id_mismatches: int = 0
    id_mismatch_examples: list[str] = field(default_factory=list)
    bboxes_recomputed: int = 0
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
                f"Registered : {self.files_registered:,} files, snapshot {self.snapshot_id}"
                f" ({self.rows_already_registered:,} rows already in the table dropped)",
                f"Hash index : {self.hashes_before} → {self.hashes_after}",
                f"Id ≠ key name : {self.id_mismatches:,} {self.id_mismatch_examples[:3]}",
                f"Bbox recomputed : {self.bboxes_recomputed:,}",
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
    options: IngestOptions | None = None,
    *,
    create_client: Callable[[], Any] | None = None,
    settings: Settings | None = None,
    warehouse: str | None = None,
    catalog: str | None = None,
    catalog_remote: str | None = None,
    hash_index: str | None = None,
    staging: str | None = None,
    source_root: str | None = None,
    skip_inventory: bool = False,
    skip_ingest: bool = False,
    retry_pending: bool = False,
    progress: bool | None = None,
    **values: Any,
) -> BulkSummary:
    """Ingest an inventory through the 4-phase staged pipeline on Dask.

    Args:
        inventory: a delta Parquet, an S3 Inventory ``manifest.json`` or a CSV/Parquet of
            ``bucket, key``.
        options: the run's settings (:class:`~earthcatalog_dagster.options.IngestOptions`);
            any of its fields may also be given as a keyword (``mode="delta"``,
            ``scheduler="synchronous"``, ``chunk_size=2_500``, ``h3_resolution=1``, ...).
        create_client: called once, right before Phase 2, for a Dask client (e.g.
            ``lambda: coiled.Cluster(n_workers=100).get_client()``).
        settings: the roots; default: the environment, then the embedded default.
        warehouse, catalog, catalog_remote, hash_index, source_root: single roots
            overriding ``settings``.
        staging: this run's own prefix (default ``<STAGING>/bulk_<hash of inventory>``);
            rerunning with the same arguments resumes a killed run.
        skip_inventory: reuse the chunks in staging (the operators' ``--skip-inventory``).
        skip_ingest: go straight to Phase 3 with the NDJSON in staging.
        retry_pending: fetch again the keys recorded as failed by earlier attempts.
        progress: progress bars (default: when stderr is a terminal).

    Delta mode skips ids the hash index holds at chunking; both modes add files to the
    table through the one commit path (:mod:`.commit`), which drops rows whose id the
    table holds already, so a full build over an existing table does not double it.
    """
    opts = (options or DEFAULTS).with_values(**values)
    validate_scheduler(opts.scheduler, create_client)
    cfg = Settings.for_run(
        settings,
        warehouse=warehouse,
        hash_index=hash_index,
        catalog=catalog,
        catalog_remote=catalog_remote,
        source_root=source_root,
    )
    cfg.check_writable(*WRITTEN_ROOTS)
    staging_dir = staging or layout.join(cfg.staging, f"bulk_{_digest(inventory)}")
    if not skip_inventory and not skip_ingest and not storage.exists(inventory):
        raise FileNotFoundError(f"inventory not found: {inventory}")
    if skip_inventory and not storage.exists(layout.chunk_plan(staging_dir)):
        raise FileNotFoundError(
            f"--skip-inventory: no chunks to reuse in {staging_dir} "
            f"({layout.chunk_plan(staging_dir)} does not exist); run without it first"
        )
    table = committer.current_table(cfg)  # phases 1–3 only read it
    plan = committer.plan_table(table, opts)
    done = _completed_run(staging_dir, inventory, opts.since, opts.limit, opts.chunk_size)
    if done is not None and not retry_pending:
        log.info("%s: this run already completed; nothing to do", staging_dir)
        return done
    run = _BulkRun(
        inventory=inventory,
        cfg=cfg,
        opts=opts,
        plan=plan,
        table=table,
        staging_dir=staging_dir,
        summary=BulkSummary(mode=plan.mode, staging=staging_dir),
        workers=_SharedWorkers(
            opts.scheduler, opts.workers, opts.threads_per_worker, create_client
        ),
        bars=_Progress(progress),
    )
    try:
        chunks = _phase_1_chunks(run, reuse=skip_inventory or skip_ingest, retry=retry_pending)
        results = _phase_2_ndjson(run, chunks, skip=skip_ingest)
        compacted = _phase_3_parquet(run, results, include_staged=skip_ingest)
    finally:
        run.workers.close()  # the cluster is not needed on the head's Phase 4
    _phase_4_commit(run, compacted)
    # Completion first, then cleaning: a rerun after this point is a no-op, and the NDJSON
    # of a finished run can never be compacted a second time.
    _record_completion(staging_dir, run.summary)
    phases.clear_markers(staging_dir)
    log.debug("bulk ingest summary:\n%s", run.summary.render())
    return run.summary


@dataclass
class _BulkRun:
    """One bulk run's inputs and its summary, handed from phase to phase."""

    inventory: str
    cfg: Settings
    opts: IngestOptions
    plan: committer.TablePlan
    table: Table | None
    staging_dir: str
    summary: BulkSummary
    workers: _SharedWorkers
    bars: _Progress


def _phase_1_chunks(run: _BulkRun, *, reuse: bool, retry: bool) -> list[str]:
    """The inventory as chunk files in staging (kept on restart), plus retry chunks."""
    started = time.perf_counter()
    if reuse:
        chunk_plan = phases.reuse_chunks(run.staging_dir)
    else:
        index = committer.ingested_keys(run.table, run.cfg) if run.plan.skips_indexed else None
        chunk_plan = phases.write_chunks(
            run.inventory,
            run.staging_dir,
            chunk_size=run.opts.chunk_size,
            since=run.opts.since,
            limit=run.opts.limit,
            exclude=index,
        )
    run.summary.source_rows = chunk_plan.rows + chunk_plan.excluded
    run.summary.already_ingested = chunk_plan.excluded
    chunks = list(chunk_plan.chunks)
    if retry:
        chunks += _retry_chunks(run.staging_dir)
    chunks += [c for c in _retry_chunk_files(run.staging_dir) if c not in chunks]
    run.summary.chunks = len(chunks)
    run.summary.seconds["phase 1 (chunks)"] = time.perf_counter() - started
    return chunks


def _phase_2_ndjson(run: _BulkRun, chunks: list[str], *, skip: bool) -> list[phases.ChunkResult]:
    """One task per chunk: fetch, fan out, NDJSON per (cell, year), completion marker."""
    started = time.perf_counter()
    summary = run.summary
    if skip:
        results = [_marker_or_empty(run.staging_dir, c) for c in chunks]
    else:
        task = functools.partial(
            phases.ingest_chunk,
            staging_dir=run.staging_dir,
            source_root=run.cfg.source_root,
            resolution=run.plan.resolution,
            fetch_concurrency=run.opts.fetch_concurrency,
        )
        with run.bars.phase("phase 2: chunks → NDJSON", len(chunks)) as tick:
            results = run.workers(task, chunks, on_result=tick)
    for result in results:
        summary.chunks_skipped += result.skipped
        summary.items_written += result.items
        summary.rejected += result.rejected
        summary.missing += result.missing
        summary.pending += result.failed
        summary.id_mismatches += result.aliased
        summary.bboxes_recomputed += result.bbox_fixed
        # A retried chunk's rows were counted once already as pending in their first chunk.
        if phases.chunk_number(result.chunk) >= RETRY_BASE:
            summary.pending -= result.rows
    try:
        check_missing(
            fetched=sum(r.fetched for r in results),
            missing=sum(r.missing for r in results),
            max_fraction=run.opts.max_missing_fraction,
            source_root=run.cfg.source_root,
            example_key=next((r.example_missing for r in results if r.example_missing), None),
        )
    except SourceUnreadable:
        phases.forget_phase_2(run.staging_dir)
        raise
    summary.seconds["phase 2 (ndjson)"] = time.perf_counter() - started
    return results


def _phase_3_parquet(
    run: _BulkRun, results: list[phases.ChunkResult], *, include_staged: bool
) -> list[phases.BucketResult]:
    """Tasks of a few dozen (cell, year) buckets each: NDJSON → deduplicated GeoParquet;
    returns the files."""
    started = time.perf_counter()
    staged_rows: dict[tuple[str, str], int] = {}
    for result in results:
        for cell, year, rows in result.buckets:
            staged_rows[(cell, year)] = staged_rows.get((cell, year), 0) + rows
    if include_staged:
        for bucket in _staged_buckets(run.staging_dir):
            staged_rows.setdefault(bucket, 0)
    buckets = sorted(staged_rows)
    groups = phases.bucket_groups(buckets, [staged_rows[b] for b in buckets])
    # A bucket's file numbers start above those the table holds, so retried items (or a
    # rerun) never overwrite a registered file.
    token = f"bulk-{_digest(run.staging_dir)[:8]}"
    registered = (
        frozenset(iceberg.files_of_runs(run.table, [token]))
        if run.table is not None
        else frozenset()
    )
    compact = functools.partial(
        phases.compact_task,
        staging_dir=run.staging_dir,
        warehouse=run.cfg.warehouse,
        token=token,
        registered=registered,
        compact_rows=run.opts.compact_rows,
        keep_ids=sum(staged_rows.values()) <= HAND_OVER_ROWS,
        writers=writer_threads(run.cfg.warehouse, run.workers.scheduler, len(groups)),
    )
    with run.bars.phase("phase 3: buckets → GeoParquet", len(groups)) as tick:
        compacted = [b for group in run.workers(compact, groups, on_result=tick) for b in group]
    summary = run.summary
    summary.buckets = len(compacted)
    summary.buckets_skipped = sum(b.skipped for b in compacted)
    summary.rows_written = sum(b.rows for b in compacted)
    summary.files_written = sum(len(b.files) for b in compacted)
    summary.bytes_written = sum(b.bytes for b in compacted)
    summary.seconds["phase 3 (parquet)"] = time.perf_counter() - started
    return compacted


def _phase_4_commit(run: _BulkRun, compacted: list[phases.BucketResult]) -> None:
    """Register and sync the hash index through the one commit path (the ids and footers
    Phase 3 handed over are not read back)."""
    started = time.perf_counter()
    aliases = read_staged_aliases(run.staging_dir)
    summary = run.summary
    summary.id_mismatch_examples = describe_mismatches(aliases.slice(0, MISMATCH_EXAMPLES))
    handed = [pair for bucket in compacted for pair in bucket.handed_over()]
    result = committer.commit(
        run.cfg,
        run.opts,
        run.plan,
        [f for b in compacted for f in b.files],
        owner=OWNER,
        footers={written.uri: written for written, _ in handed},
        known_ids={written.uri: ids for written, ids in handed},
        aliases=aliases["key_id"],
    )
    summary.files_registered = result.files_registered
    summary.snapshot_id = result.snapshot_id
    summary.rows_already_registered = result.rows_dropped
    summary.hashes_before, summary.hashes_after = result.hashes_before, result.hashes_after
    summary.seconds["phase 4 (register)"] = time.perf_counter() - started


class _SharedWorkers:
    """Runs Phases 2 and 3 on one Dask client, opened on first use (``create_client`` is
    called once per run, right before the first distributed task) and closed after
    Phase 3 or on the first failure; ``synchronous`` runs in this process, ``processes``
    and ``auto`` on this machine's process pool (:func:`.compute.run_in_pool`, kept from
    Phase 2 to Phase 3 and stopped before Phase 4)."""

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
        self.pooled = False

    def __call__(self, fn: Callable[[Any], Any], items: Sequence[Any], on_result: Any = None):
        if not items or (self.scheduler in IN_MACHINE and self.create_client is None):
            if self.scheduler != "synchronous":
                self.pooled = True
            return run_tasks(
                fn, items, scheduler=self.scheduler, workers=self.workers, on_result=on_result
            )
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
        if self.pooled:
            self.pooled = False
            release_pool()
        if self.client is not None:
            client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
            close_client(client, cluster)


def _digest(text: str) -> str:
    return xxhash.xxh3_64_hexdigest(text.encode())[:12]


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
