"""``ingest()``: the single-node path for daily deltas.

Inventory rows stream in bounded batches; ids already in the hash index are dropped
(vectorized anti-join); the rest are fetched concurrently, parsed and fanned out to H3
cells, and their rows spilled to a local temporary folder (:mod:`.staging`), the head
keeping only their bucket keys. Then every (cell, year) bucket is written as GeoParquet
under deterministic names, a group of buckets at a time (:data:`WRITE_GROUP_ROWS`), and
published through the one commit path (:mod:`.commit`). The staging root only receives
the record of rejected, missing and failed objects.
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import xxhash

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import WRITTEN_ROOTS, Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.buckets import BucketOrder, bucket_order, dedupe_latest
from earthcatalog_dagster.core.geoparquet import HeldFile, write_geoparquet
from earthcatalog_dagster.core.hash_index import HashIndex, hash_ids
from earthcatalog_dagster.core.inventory import ids_of_keys, iter_inventory
from earthcatalog_dagster.core.scratch import scratch_folder
from earthcatalog_dagster.options import DEFAULTS, IngestOptions
from earthcatalog_dagster.pipeline import commit as committer
from earthcatalog_dagster.pipeline import compute
from earthcatalog_dagster.pipeline.outcomes import (
    MISMATCH_EXAMPLES,
    OUTCOME_SCHEMA,
    check_missing,
    describe_mismatches,
)
from earthcatalog_dagster.pipeline.staging import (
    SPILL_PREFIX,
    StagedBatch,
    StagedRows,
    Stager,
    read_ahead,
    release_unused_memory,
    stage_batch,
)

log = logging.getLogger(__name__)

OWNER = "earthcatalog-dagster ingest()"
#: Rows gathered from the spill files and written at a time: whole buckets, in key order,
#: until a group holds at least this many (a larger bucket is a group of its own). What
#: the head holds of the rows while writing is a few copies of one group (~2.4 KB a row).
WRITE_GROUP_ROWS = 8_192


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
    rows_already_registered: int = 0
    id_mismatches: int = 0
    id_mismatch_examples: list[str] = field(default_factory=list)
    bboxes_recomputed: int = 0
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
    file: HeldFile
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
    options: IngestOptions | None = None,
    *,
    settings: Settings | None = None,
    warehouse: str | None = None,
    catalog: str | None = None,
    catalog_remote: str | None = None,
    hash_index: str | None = None,
    source_root: str | None = None,
    staging: str | None = None,
    **values: Any,
) -> IngestSummary:
    """Ingest the ``.stac.json`` objects of an inventory into the catalog, on one node.

    Args:
        inventory: an S3 Inventory ``manifest.json``, a CSV/CSV.gz/Parquet file of
            ``bucket, key``, or a delta Parquet.
        options: the run's settings (:class:`~earthcatalog_dagster.options.IngestOptions`);
            any of its fields may also be given as a keyword (``mode="delta"``,
            ``since="2026-04-27"``, ``h3_resolution=1``, ``use_lock=False``, ...), which
            overrides ``options``.
        settings: the roots; default: the environment, then the embedded default.
        warehouse, catalog, catalog_remote, hash_index, source_root, staging: single roots
            overriding ``settings``.

    Items whose key the hash index holds are skipped in delta mode, so rerunning an
    inventory adds nothing. Batches are fetched concurrently, parsed and fanned out
    (in ``workers`` processes once a run is large), written as GeoParquet per (cell,
    year), and committed through the one commit path (:mod:`.commit`): lock, drop rows
    the table holds already, one snapshot, upload, hash index. Raises before any work
    when the resolution is missing for a first build or differs from the table's, and
    after fetching when (nearly) every object is missing. Returns a summary whose counts
    reconcile.
    """
    opts = (options or DEFAULTS).with_values(**values)
    cfg = Settings.for_run(
        settings,
        warehouse=warehouse,
        hash_index=hash_index,
        catalog=catalog,
        catalog_remote=catalog_remote,
        staging=staging,
        source_root=source_root,
    )
    cfg.check_writable(*WRITTEN_ROOTS)
    table = committer.current_table(cfg)
    plan = committer.plan_table(table, opts)
    summary = IngestSummary(mode=plan.mode)
    token = run_token(inventory, opts.since, opts.limit)

    with _Timer(summary, "hash_index"):
        index = committer.ingested_keys(table, cfg) if plan.skips_indexed else HashIndex.empty()
    # The staged rows, one Arrow IPC file per batch, live until the files are written.
    with scratch_folder(SPILL_PREFIX) as spill_dir:
        staged, outcomes, mismatches, example_missing = _stage_inventory(
            inventory, cfg, opts, plan, index, summary, spill_dir
        )
        check_missing(
            fetched=summary.fetched,
            missing=summary.missing,
            max_fraction=opts.max_missing_fraction,
            source_root=cfg.source_root,
            example_key=example_missing,
        )
        release_unused_memory()  # what staging freed, before the write phase adds its own
        with _Timer(summary, "write"):
            written = _write_buckets(
                staged, cfg.warehouse, token, table, opts.compact_rows, summary
            )
    with _Timer(summary, "register"):
        result = committer.commit(
            cfg,
            opts,
            plan,
            [w.file.uri for w in written],
            owner=OWNER,
            footers={w.file.uri: w.file for w in written},
            known_ids={w.file.uri: w.ids for w in written},
            aliases=pa.concat_tables(mismatches)["key_id"] if mismatches else None,
        )
    summary.files_registered = result.files_registered
    summary.snapshot_id = result.snapshot_id
    summary.rows_already_registered = result.rows_dropped
    summary.hashes_before = result.hashes_before or 0
    summary.hashes_after = result.hashes_after or 0
    summary.outcomes_uri = _record_outcomes(outcomes, cfg.staging, token)
    log.info("ingest summary: %s", summary.as_dict())
    return summary


def _stage_inventory(
    inventory: str,
    cfg: Settings,
    opts: IngestOptions,
    plan: committer.TablePlan,
    index: HashIndex,
    summary: IngestSummary,
    spill_dir: str,
) -> tuple[StagedRows, list[pa.Table], list[pa.Table], str | None]:
    """Fetch, parse and fan out every new row of the inventory, batch by batch: the rows
    (spilled to ``spill_dir``), the outcomes of bad objects, the items whose id differs
    from their key, and where one missing object was looked for."""
    rows = StagedRows()
    outcomes: list[pa.Table] = []
    mismatches: list[pa.Table] = []
    example_missing: list[str] = []
    seen_keys: set[str] = set()  # keys only, bounded by one inventory; guards repeated rows
    stage = functools.partial(
        stage_batch,
        spill_dir=spill_dir,
        source_root=cfg.source_root,
        resolution=plan.resolution,
        fetch_concurrency=opts.fetch_concurrency,
    )

    def collect(staged: StagedBatch) -> None:
        _collect(staged, rows, outcomes, summary)
        if staged.mismatches.num_rows:
            mismatches.append(staged.mismatches)
            summary.id_mismatches += staged.mismatches.num_rows
            room = MISMATCH_EXAMPLES - len(summary.id_mismatch_examples)
            summary.id_mismatch_examples += describe_mismatches(staged.mismatches.slice(0, room))
        if staged.example_missing and not example_missing:
            example_missing.append(staged.example_missing)

    def new_rows(batch: pa.Table) -> pa.Table:
        batch = _drop_repeated_keys(batch, seen_keys, summary)
        if len(index):
            with _Timer(summary, "anti_join"):
                fresh = index.missing_mask(hash_ids(ids_of_keys(batch["key"])))
            summary.already_ingested += batch.num_rows - int(fresh.sum())
            batch = batch.filter(pa.array(fresh))
        return batch

    inventory_rows = iter_inventory(inventory, since=opts.since, limit=opts.limit)
    batches = (
        batch
        for batch in map(new_rows, _batches(inventory_rows, opts.batch_rows, summary))
        if batch.num_rows
    )
    ahead, large = read_ahead(batches)
    with Stager(stage, opts.workers, large=large) as stager:
        for batch in itertools.chain(ahead, batches):
            for staged in stager.submit(batch):
                collect(staged)
        for staged in stager.drain():
            collect(staged)
    return rows, outcomes, mismatches, example_missing[0] if example_missing else None


def run_token(inventory: str, since: object, limit: int | None) -> str:
    """A short stable name for a run over one inventory, used in its output file names."""
    return xxhash.xxh3_64_hexdigest(f"{inventory}|{since}|{limit}".encode())[:12]


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


def _collect(
    staged: StagedBatch,
    rows: StagedRows,
    outcomes: list[pa.Table],
    summary: IngestSummary,
) -> None:
    summary.fetched += staged.fetched
    summary.missing += staged.missing
    summary.failed += staged.failed
    summary.rejected += staged.rejected
    summary.items_written += staged.items
    summary.bboxes_recomputed += staged.bboxes_recomputed
    for stage, seconds in staged.seconds.items():
        summary.seconds[stage] = summary.seconds.get(stage, 0.0) + seconds
    rows.add(staged.spill, staged.keys)
    outcomes.append(staged.outcomes)


def _write_buckets(
    staged: StagedRows,
    warehouse: str,
    token: str,
    table: Any,
    compact_rows: int,
    summary: IngestSummary,
    group_rows: int | None = None,
) -> list[WrittenBucketFile]:
    """Write every (cell, year) bucket; returns each written file with its ids, in bucket
    key order.

    The order of every row comes from the bucket keys alone; the rows themselves are
    gathered from the spill files a group of whole buckets at a time (at least
    ``group_rows`` rows, default :data:`WRITE_GROUP_ROWS`). The writers work through one
    group while the next is gathered; a group is let go once written, so at most two
    are held.
    """
    registered = iceberg.files_of_runs(table, [token]) if table is not None else set()
    order = bucket_order(staged.key_table())

    def write_bucket(directory: str, parts: list[tuple[str, pa.Table]]) -> list[WrittenBucketFile]:
        # What a killed earlier attempt of this run left half-written in the bucket: removed
        # before this bucket's files are written, in the writer thread (a directory walk
        # per bucket was a tenth of the write phase when done up front, one at a time).
        storage.remove_debris(directory, min_age=0, name_prefix=f"part_{token}_")
        return [
            WrittenBucketFile(
                HeldFile.of(write_geoparquet(part, uri, presorted=True)),
                part["id"].combine_chunks(),
            )
            for uri, part in parts
        ]

    # The head writes alone: one writer per CPU locally, enough to overlap PUTs on S3.
    writers = compute.writer_threads(warehouse, "synchronous", tasks=1)
    written: list[WrittenBucketFile] = []
    inflight: deque[list[Future[list[WrittenBucketFile]]]] = deque()
    with ThreadPoolExecutor(max_workers=writers, thread_name_prefix="write") as pool:
        for first, last in _groups(order, group_rows or WRITE_GROUP_ROWS):
            offset = int(order.starts[first])
            rows = staged.gather(order.indices[offset : order.ends[last - 1]])
            futures = []
            for number in range(first, last):
                cell, year = order.keys[number]
                start, end = int(order.starts[number]), int(order.ends[number])
                bucket = dedupe_latest(rows.slice(start - offset, end - start))
                sequence = _first_free_sequence(warehouse, cell, year, token, registered)
                parts = []
                for part_start in range(0, bucket.num_rows, compact_rows):
                    uri = layout.warehouse_file(warehouse, cell, year, token, sequence)
                    parts.append((uri, bucket.slice(part_start, compact_rows)))
                    sequence += 1
                directory = layout.partition_dir(warehouse, cell, year)
                futures.append(pool.submit(write_bucket, directory, parts))
                summary.rows_written += bucket.num_rows
            del rows, bucket, parts  # the queued writes hold the group until written
            inflight.append(futures)
            while len(inflight) > 1:  # the previous group, written while this one gathered
                written += [w for future in inflight.popleft() for w in future.result()]
        while inflight:
            written += [w for future in inflight.popleft() for w in future.result()]
    summary.files_written = len(written)
    summary.bytes_written = sum(w.file.size for w in written)
    summary.cells = len({cell for cell, _ in order.keys})
    summary.years = sorted({year for _, year in order.keys})
    return written


def _groups(order: BucketOrder, rows: int) -> Sequence[tuple[int, int]]:
    """Consecutive runs ``[first, last)`` of the buckets of ``order``, each of whole buckets
    and at least ``rows`` rows (but the last)."""
    groups = []
    first = 0
    for number in range(len(order)):
        if order.ends[number] - order.starts[first] >= rows:
            groups.append((first, number + 1))
            first = number + 1
    if first < len(order):
        groups.append((first, len(order)))
    return groups


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
