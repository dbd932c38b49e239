"""The staged pipeline as plain functions: the phases the Dagster assets (and the Dask
bulk path) run.

Phase 1 ``write_chunks`` (head): inventory → ``chunks/chunk_N.parquet`` + a plan file.
Phase 2 ``ingest_chunk`` (one task per chunk): fetch, parse, fan out, NDJSON per
(cell, year), rejects and retryable failures recorded, then a completion marker.
Phase 3 ``compact_buckets`` (one task per group of (cell, year) buckets,
:func:`bucket_groups`): NDJSON → deduplicated GeoParquet under deterministic names, then a
marker per bucket.
Phase 4 (head): registration and the hash index sync, in :mod:`.catalog` and
:mod:`.hash_sync`.

Every phase is idempotent: a task whose marker exists returns what it recorded, a task
killed half-way rewrites the same names on its rerun, so a rerun converges to the catalog
an uninterrupted run gives. Tasks return small descriptors only; bulk bytes go straight
to storage.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.buckets import dedupe_latest, year_labels
from earthcatalog_dagster.core.fanout import fan_out
from earthcatalog_dagster.core.fetch import FetchResult, fetch_ahead
from earthcatalog_dagster.core.geoparquet import HeldFile, write_geoparquet
from earthcatalog_dagster.core.hash_index import HashIndex, hash_ids
from earthcatalog_dagster.core.inventory import ids_of_keys, iter_inventory
from earthcatalog_dagster.core.items import ParsedItems, Reject, parse_decoded, parse_items
from earthcatalog_dagster.core.schema import WAREHOUSE_SCHEMA
from earthcatalog_dagster.pipeline.outcomes import outcome_table
from earthcatalog_dagster.pipeline.runtime import paused_gc

_STAGING_PARTS = (
    "chunks",
    "staging",
    "markers",
    "compacted",
    "pending_chunks",
    "rejects",
    "aliases",
)


# --- phase 1 --------------------------------------------------------------------------------


@dataclass
class ChunkPlan:
    """The chunks of one run's inventory, and what identifies that inventory."""

    source: str
    fingerprint: str
    rows: int
    chunk_size: int
    chunks: list[str] = field(default_factory=list)
    excluded: int = 0
    reused: bool = False

    def to_json(self) -> bytes:
        data = asdict(self)
        data.pop("reused")
        return json.dumps(data, indent=1).encode()


def inventory_fingerprint(
    uri: str, since: object = None, limit: int | None = None, chunk_size: int = 0
) -> str:
    """Identifies an inventory file's content and the run options that shape chunks."""
    parent, _, _ = uri.rstrip("/").rpartition("/")
    match = [o for o in storage.list_objects(parent) if o.uri.rstrip("/") == uri.rstrip("/")]
    if not match:
        raise FileNotFoundError(f"inventory not found: {uri}")
    info = match[0]
    text = f"{uri}|{info.size}|{info.e_tag}|{info.last_modified}|{since}|{limit}|{chunk_size}"
    return xxhash.xxh3_64_hexdigest(text.encode())


def clear_staging(staging_dir: str, parts: tuple[str, ...] = _STAGING_PARTS) -> int:
    """Delete the work files of a staging prefix (descriptors are kept); returns the count."""
    doomed = [o.uri for part in parts for o in storage.list_objects(layout.join(staging_dir, part))]
    storage.delete_many(doomed)
    return len(doomed)


def write_chunks(
    inventory: str,
    staging_dir: str,
    *,
    chunk_size: int = 10_000,
    since: datetime | date | str | None = None,
    limit: int | None = None,
    exclude: HashIndex | None = None,
) -> ChunkPlan:
    """Split the inventory into chunk files; reuse them when the same inventory was chunked.

    Rows whose id is in ``exclude`` (the hash index, in delta mode) are left out and
    counted in ``plan.excluded``.

    The plan file is written last, so a run killed while chunking rewrites the chunks.
    A different inventory (or options) clears the staging prefix first, so no NDJSON or
    marker of an earlier plan can leak into this one.
    """
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")
    storage.remove_debris(staging_dir, min_age=0)  # this run's own prefix: no other writer
    fingerprint = inventory_fingerprint(inventory, since, limit, chunk_size)
    plan_uri = layout.chunk_plan(staging_dir)
    if storage.exists(plan_uri):
        existing = ChunkPlan(**json.loads(storage.read_bytes(plan_uri)))
        if existing.fingerprint == fingerprint:
            existing.reused = True
            return existing
    clear_staging(staging_dir)
    return _write_new_chunks(inventory, staging_dir, fingerprint, chunk_size, since, limit, exclude)


def reuse_chunks(staging_dir: str) -> ChunkPlan:
    """The plan already in staging (``--skip-inventory`` after a crash)."""
    plan_uri = layout.chunk_plan(staging_dir)
    if not storage.exists(plan_uri):
        raise FileNotFoundError(
            f"no chunks to reuse: {plan_uri} does not exist (run without --skip-inventory)"
        )
    plan = ChunkPlan(**json.loads(storage.read_bytes(plan_uri)))
    plan.reused = True
    return plan


def _write_new_chunks(
    inventory: str,
    staging_dir: str,
    fingerprint: str,
    chunk_size: int,
    since: Any,
    limit: Any,
    exclude: HashIndex | None,
) -> ChunkPlan:
    plan = ChunkPlan(source=inventory, fingerprint=fingerprint, rows=0, chunk_size=chunk_size)
    pending: list[pa.Table] = []
    pending_rows = 0

    def flush(rows: pa.Table) -> None:
        uri = layout.chunk_file(staging_dir, len(plan.chunks))
        storage.write_parquet(rows, uri)
        plan.chunks.append(uri)
        plan.rows += rows.num_rows

    for batch in iter_inventory(inventory, since=since, limit=limit, batch_rows=chunk_size):
        rows = pa.Table.from_batches([batch]).select(["bucket", "key"])
        if exclude is not None and len(exclude):
            fresh = exclude.missing_mask(hash_ids(ids_of_keys(rows["key"])))
            plan.excluded += rows.num_rows - int(fresh.sum())
            rows = rows.filter(pa.array(fresh))
        pending.append(rows)
        pending_rows += rows.num_rows
        while pending_rows >= chunk_size:
            merged = pa.concat_tables(pending)
            flush(merged.slice(0, chunk_size))
            pending = [merged.slice(chunk_size)]
            pending_rows = pending[0].num_rows
    if pending_rows:
        flush(pa.concat_tables(pending))
    storage.write_bytes(layout.chunk_plan(staging_dir), plan.to_json())
    return plan


def chunk_number(chunk_uri: str) -> int:
    return int(chunk_uri.rsplit("chunk_", 1)[1].split(".", 1)[0])


# --- phase 2 --------------------------------------------------------------------------------


@dataclass
class ChunkResult:
    """What one chunk produced; stored as its completion marker."""

    chunk: str
    rows: int = 0
    fetched: int = 0
    missing: int = 0
    failed: int = 0
    rejected: int = 0
    items: int = 0
    rows_out: int = 0
    buckets: list[tuple[str, str, int]] = field(default_factory=list)
    aliased: int = 0  # items whose id differs from their key's stem (layout.aliases_file)
    bbox_fixed: int = 0  # items kept with a recomputed bbox (see core.items)
    example_missing: str | None = None  # where one missing object was looked for
    skipped: bool = False

    def to_json(self) -> bytes:
        data = asdict(self)
        data.pop("skipped")
        return json.dumps(data).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ChunkResult:
        loaded = json.loads(data)
        loaded["buckets"] = [tuple(b) for b in loaded["buckets"]]
        return cls(**loaded, skipped=True)


#: Phase 2 fetches a chunk in slices of this many objects, the next one while the
#: current one is parsed (:func:`~earthcatalog_dagster.core.fetch.fetch_ahead`).
FETCH_SLICE_ROWS = 2_000


@dataclass
class _ChunkOutcomes:
    """What the slices of one chunk fetched and parsed, summed up."""

    fetched: int = 0
    items: int = 0
    fixed: int = 0
    rejects: list[Reject] = field(default_factory=list)
    missing: list[pa.Table] = field(default_factory=list)
    failed: list[pa.Table] = field(default_factory=list)
    mismatches: list[pa.Table] = field(default_factory=list)

    def add(self, fetched: FetchResult, parsed: ParsedItems) -> None:
        self.fetched += len(fetched.bodies)
        self.items += parsed.table.num_rows
        self.fixed += len(parsed.fixes)
        self.rejects += parsed.rejects
        self.missing.append(fetched.missing)
        self.failed.append(fetched.failed)
        self.mismatches.append(parsed.mismatches)

    def tables(self) -> tuple[pa.Table, pa.Table, pa.Table]:
        """The missing, failed and mismatched rows of every slice."""
        return (
            pa.concat_tables(self.missing),
            pa.concat_tables(self.failed),
            pa.concat_tables(self.mismatches),
        )


def ingest_chunk(
    chunk_uri: str,
    staging_dir: str,
    *,
    source_root: str | None,
    resolution: int,
    fetch_concurrency: int = 256,
) -> ChunkResult:
    """Phase 2 for one chunk: NDJSON per (cell, year), outcomes, completion marker.

    Items whose id differs from their key's stem are recorded in
    ``layout.aliases_file`` (``key_id``, ``item_id``): the registration merges them into
    the hash index's alias file (:func:`~.hash_sync.read_staged_aliases`), so later
    anti-joins skip those keys.
    """
    number = chunk_number(chunk_uri)
    marker = layout.chunk_marker(staging_dir, number)
    if storage.exists(marker):
        return ChunkResult.from_json(storage.read_bytes(marker))

    refs = storage.read_parquet(chunk_uri)
    lines: dict[tuple[str, str], list[bytes]] = defaultdict(list)
    got = _ChunkOutcomes()
    for fetched in fetch_ahead(
        refs, rows=FETCH_SLICE_ROWS, source_root=source_root, concurrency=fetch_concurrency
    ):
        with paused_gc():
            parsed = parse_items(fetched.bodies, fetched.keys)
            cells = fan_out(parsed.geometries, resolution)
            years = year_labels(parsed.table).to_pylist()
            for item, item_cells, year in zip(parsed.items, cells, years, strict=True):
                properties = item.get("properties") or {}
                for cell in item_cells:
                    row = {**item, "properties": {**properties, "grid_partition": cell}}
                    lines[(cell, year)].append(orjson.dumps(row))
        got.add(fetched, parsed)

    def write(entry: tuple[tuple[str, str], list[bytes]]) -> None:
        (cell, year), rows = entry
        uri = layout.ndjson_file(staging_dir, cell, year, number)
        storage.write_bytes(uri, b"\n".join(rows) + b"\n")

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(write, lines.items()))

    missing, failed, mismatched = got.tables()
    outcomes = outcome_table(got.rejects, missing, pa.table({"key": [], "error": []}))
    if outcomes.num_rows:
        storage.write_parquet(outcomes, layout.rejects_file(staging_dir, number))
    if failed.num_rows:
        storage.write_parquet(failed, layout.pending_chunk(staging_dir, number))
    else:
        storage.delete(layout.pending_chunk(staging_dir, number))
    if mismatched.num_rows:
        storage.write_parquet(mismatched, layout.aliases_file(staging_dir, number))
    else:
        storage.delete(layout.aliases_file(staging_dir, number))

    result = ChunkResult(
        chunk=chunk_uri,
        rows=refs.num_rows,
        fetched=got.fetched,
        missing=missing.num_rows,
        failed=failed.num_rows,
        rejected=len(got.rejects),
        items=got.items,
        rows_out=sum(len(v) for v in lines.values()),
        buckets=sorted((cell, year, len(rows)) for (cell, year), rows in lines.items()),
        aliased=mismatched.num_rows,
        bbox_fixed=got.fixed,
        example_missing=layout.source_object(
            missing["bucket"][0].as_py(), missing["key"][0].as_py(), source_root
        )
        if missing.num_rows
        else None,
    )
    storage.write_bytes(marker, result.to_json())
    return result


# --- phase 3 --------------------------------------------------------------------------------


@dataclass
class BucketResult:
    """The warehouse files one (cell, year) bucket was compacted into.

    ``file_cells``/``file_years`` say, per file, the cells and years of the rows written
    to it (both ``[cell]``/``[year]`` when all is well): the asset checks read them
    instead of reading the files back. ``ids`` and ``written`` (only with
    ``keep_ids=True``, never in the marker) hold each file's ``id`` column and its size and
    serialized footer, for the checks, the registration and the hash index sync of the
    same run.
    """

    cell: str
    year: str
    files: list[str] = field(default_factory=list)
    rows: int = 0
    bytes: int = 0
    duplicates_dropped: int = 0
    file_cells: list[list[str]] | None = None
    file_years: list[list[str]] | None = None
    skipped: bool = False
    ids: list[pa.Array] | None = field(default=None, repr=False, compare=False)
    written: list[HeldFile] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> bytes:
        data = {k: v for k, v in self.__dict__.items() if k not in ("skipped", "ids", "written")}
        return json.dumps(data).encode()

    def handed_over(self) -> list[tuple[HeldFile, pa.Array]]:
        """Each new file with its ids, as ``keep_ids`` kept them (none otherwise)."""
        if self.written is None or self.ids is None:
            return []
        return list(zip(self.written, self.ids, strict=True))

    @classmethod
    def from_json(cls, data: bytes) -> BucketResult:
        """A marker's result (markers of older versions lack ``file_cells``/``file_years``)."""
        return cls(**json.loads(data), skipped=True)


#: Phase 3 task size: at most this many buckets per task, and (where the staged row
#: counts are known) about this many rows. A daily bucket holds ~12 rows, and its own
#: task paid the parse's and the task's fixed costs (~10 ms) for each of them; a small
#: day fits one task, which ``auto`` runs in the step's own process (no pool to start).
GROUP_BUCKETS = 256
GROUP_ROWS = 5_000
#: Staged NDJSON read and parsed at once within a task: whole buckets up to this many
#: bytes (a larger bucket is read alone, this many files' worth at a time).
READ_BYTES = 64 * 2**20
READ_FILES = 256


def bucket_groups(
    buckets: Sequence[tuple[str, str]],
    rows: Sequence[int] | None = None,
    *,
    max_buckets: int = GROUP_BUCKETS,
    max_rows: int = GROUP_ROWS,
) -> list[list[tuple[str, str]]]:
    """The Phase 3 tasks: consecutive buckets, at most ``max_buckets`` and (``rows``, the
    staged rows of each bucket, when known) about ``max_rows`` rows per task."""
    groups: list[list[tuple[str, str]]] = []
    held = 0
    for i, bucket in enumerate(buckets):
        size = rows[i] if rows is not None else 0
        if not groups or len(groups[-1]) >= max_buckets or (held and held + size > max_rows):
            groups.append([])
            held = 0
        groups[-1].append((bucket[0], bucket[1]))
        held += size
    return groups


def compact_buckets(
    staging_dir: str,
    buckets: Sequence[tuple[str, str]],
    *,
    warehouse: str,
    token: str,
    registered: frozenset[str] | set[str] = frozenset(),
    compact_rows: int = 200_000,
    keep_ids: bool = False,
    writers: int = 1,
) -> list[BucketResult]:
    """Phase 3 for a group of buckets: each one's NDJSON → deduplicated, sorted GeoParquet
    files, then its marker; one result per bucket, in order.

    The staged rows of many buckets are parsed and sorted together (a bucket's own parse
    cost more than its rows), each bucket is then written on its own
    (:func:`write_bucket`), ``writers`` at a time: Parquet encoding releases the GIL.
    A bucket whose marker exists returns what it recorded.
    """
    results: dict[tuple[str, str], BucketResult] = {}
    todo = []
    for cell, year in buckets:
        marker = layout.bucket_marker(staging_dir, cell, year)
        if storage.exists(marker):
            results[(cell, year)] = BucketResult.from_json(storage.read_bytes(marker))
        else:
            todo.append((cell, year))
    write = functools.partial(
        write_bucket,
        staging_dir,
        warehouse=warehouse,
        token=token,
        registered=registered,
        compact_rows=compact_rows,
        keep_ids=keep_ids,
    )
    sources = _staged_sources(staging_dir, todo)
    with contextlib.ExitStack() as stack:
        mapper: Callable[..., Iterable[BucketResult]] = map
        if writers > 1:
            mapper = stack.enter_context(ThreadPoolExecutor(max_workers=writers)).map
        for batch in _read_batches(todo, sources):
            for result in mapper(lambda job: write(*job), _staged_rows(batch, sources)):
                results[(result.cell, result.year)] = result
    return [results[(cell, year)] for cell, year in buckets]


def write_bucket(
    staging_dir: str,
    cell: str,
    year: str,
    splits: list[pa.Table],
    duplicates_dropped: int,
    *,
    warehouse: str,
    token: str,
    registered: frozenset[str] | set[str] = frozenset(),
    compact_rows: int = 200_000,
    keep_ids: bool = False,
) -> BucketResult:
    """Write one bucket's deduplicated rows (``splits``: each in warehouse order) as files
    of at most ``compact_rows`` rows, then its marker.

    File numbers start at the first one not registered in the table, so a rerun
    overwrites what a killed run left and never replaces a registered file.
    ``keep_ids``: return each new file's ids and footer (``BucketResult.ids``,
    ``BucketResult.written``).
    """
    result = BucketResult(
        cell,
        year,
        duplicates_dropped=duplicates_dropped,
        file_cells=[],
        file_years=[],
        ids=[] if keep_ids else None,
        written=[] if keep_ids else None,
    )
    sequence = 0
    while layout.warehouse_file(warehouse, cell, year, token, sequence) in registered:
        sequence += 1
    # What a killed earlier attempt of this bucket left half-written (its own names only).
    storage.remove_debris(
        layout.partition_dir(warehouse, cell, year), min_age=0, name_prefix=f"part_{token}_"
    )
    for rows in splits:
        for offset in range(0, rows.num_rows, compact_rows):
            uri = layout.warehouse_file(warehouse, cell, year, token, sequence)
            part = rows.slice(offset, compact_rows)
            written = write_geoparquet(part, uri, presorted=True)
            result.bytes += written.size
            result.files.append(uri)
            result.rows += part.num_rows
            # What this file holds, from the rows just written (the checks' evidence).
            result.file_cells.append(sorted(pc.unique(part["grid_partition"]).to_pylist()))
            result.file_years.append(sorted(pc.unique(year_labels(part)).to_pylist()))
            if result.ids is not None and result.written is not None:
                result.ids.append(part["id"].combine_chunks())
                result.written.append(HeldFile.of(written))
            sequence += 1
    storage.write_bytes(layout.bucket_marker(staging_dir, cell, year), result.to_json())
    return result


def compact_task(buckets: Sequence[tuple[str, str]], **kwargs: Any) -> list[BucketResult]:
    """:func:`compact_buckets` of one group of ``(cell, year)``: the Phase 3 task
    (picklable, for worker processes; ``kwargs`` are :func:`compact_buckets`'s,
    ``staging_dir`` included)."""
    return compact_buckets(kwargs.pop("staging_dir"), [tuple(b) for b in buckets], **kwargs)


def _staged_sources(
    staging_dir: str, buckets: list[tuple[str, str]]
) -> dict[tuple[str, str], list[storage.ObjectInfo]]:
    """Each bucket's staged NDJSON files (one listing per bucket, concurrent on S3)."""

    def listing(bucket: tuple[str, str]) -> list[storage.ObjectInfo]:
        prefix = layout.join(layout.ndjson_dir(staging_dir), *bucket)
        return storage.list_objects(prefix, suffix=".ndjson")

    if storage.is_local(staging_dir) or len(buckets) <= 1:
        return {bucket: listing(bucket) for bucket in buckets}
    with ThreadPoolExecutor(max_workers=16) as pool:
        return dict(zip(buckets, pool.map(listing, buckets), strict=True))


def _read_batches(
    buckets: list[tuple[str, str]], sources: dict[tuple[str, str], list[storage.ObjectInfo]]
) -> Iterator[list[tuple[str, str]]]:
    """Consecutive buckets whose NDJSON together stays under :data:`READ_BYTES` (a larger
    bucket alone)."""
    batch: list[tuple[str, str]] = []
    held = 0
    for bucket in buckets:
        size = sum(o.size for o in sources[bucket])
        if batch and held + size > READ_BYTES:
            yield batch
            batch, held = [], 0
        batch.append(bucket)
        held += size
    if batch:
        yield batch


def _staged_rows(
    buckets: list[tuple[str, str]], sources: dict[tuple[str, str], list[storage.ObjectInfo]]
) -> list[tuple[str, str, list[pa.Table], int]]:
    """Per bucket: its staged rows deduplicated (latest ``updated`` per id) and split by
    year label, each split in warehouse order, and the duplicates dropped."""
    uris = [o.uri for bucket in buckets for o in sources[bucket]]
    owners = [n for n, bucket in enumerate(buckets) for _ in sources[bucket]]
    parts: list[pa.Table] = []
    with paused_gc():
        for start in range(0, len(uris), READ_FILES):
            group = uris[start : start + READ_FILES]
            parts.append(
                _ndjson_rows(group, _read_ndjson(group), owners[start : start + READ_FILES])
            )
    if not parts:
        return [(cell, year, [], 0) for cell, year in buckets]
    staged = pa.concat_tables(parts)
    numbers = staged["bucket"].to_numpy()
    cells = np.array([cell for cell, _ in buckets], dtype=object)[numbers]
    table = (
        staged.drop_columns(["bucket"])
        .append_column("grid_partition", pa.array(cells, type=pa.string()))
        .cast(WAREHOUSE_SCHEMA)
        .append_column("bucket", staged["bucket"])
    )
    # Deduplicate each bucket on its own (an id may sit in two years of one cell), then
    # one sort of the whole batch into (bucket, warehouse order).
    bounds = np.searchsorted(numbers, np.arange(len(buckets) + 1))
    kept, dropped = [], []
    for start, end in itertools.pairwise(bounds.tolist()):
        rows = table.slice(start, end - start)
        deduped = dedupe_latest(rows)
        kept.append(deduped)
        dropped.append(rows.num_rows - deduped.num_rows)
    ordered = pa.concat_tables(kept)
    years = year_labels(ordered)
    order = pc.sort_indices(
        pa.table(
            {
                "bucket": ordered["bucket"],
                "year": years,
                "platform": ordered["platform"],
                "datetime": ordered["datetime"],
                "id": ordered["id"],
            }
        ),
        sort_keys=[(k, "ascending") for k in ("bucket", "year", "platform", "datetime", "id")],
    )
    ordered = ordered.take(order)
    years = years.take(order)
    numbers = ordered["bucket"].to_numpy()
    change = np.ones(ordered.num_rows, dtype=bool)
    change[1:] = (numbers[1:] != numbers[:-1]) | ~pc.equal(years[1:], years[:-1]).to_numpy(
        zero_copy_only=False
    )
    starts = np.flatnonzero(change).tolist()
    ends = [*starts[1:], ordered.num_rows]
    warehouse_rows = ordered.drop_columns(["bucket"])
    splits: list[list[pa.Table]] = [[] for _ in buckets]
    for start, end in zip(starts, ends, strict=True):
        splits[int(numbers[start])].append(warehouse_rows.slice(start, end - start))
    return [(cell, year, splits[n], dropped[n]) for n, (cell, year) in enumerate(buckets)]


def _read_ndjson(uris: list[str]) -> list[bytes]:
    """The bodies of staged NDJSON files, in order; one that vanished is an error."""
    if len(uris) == 1:
        try:
            return [storage.read_bytes(uris[0])]
        except storage.ObjectNotFound as exc:
            raise FileNotFoundError(f"NDJSON vanished while compacting: {uris[0]}") from exc
    bodies = []
    for got in storage.get_many(uris):
        if got.data is None:
            raise FileNotFoundError(f"NDJSON vanished while compacting: {got.uri} ({got.error})")
        bodies.append(got.data)
    return bodies


def _ndjson_rows(uris: list[str], bodies: list[bytes], owners: list[int]) -> pa.Table:
    """The items of staged NDJSON files as warehouse rows without their cell, and a
    ``bucket`` column: the owner number of the file each came from."""
    items = []
    counts = []
    for data in bodies:
        before = len(items)
        for line in data.splitlines():
            if line:
                item = orjson.loads(line)
                item.get("properties", {}).pop("grid_partition", None)
                items.append(item)
        counts.append(len(items) - before)
    parsed = parse_decoded(items, [str(i.get("id")) for i in items])
    if parsed.rejects:  # validated in phase 2 already: this is corruption, not bad data
        where = uris[0] if len(uris) == 1 else f"{len(uris)} files from {uris[0]}"
        raise ValueError(f"{where}: staged items failed validation: {parsed.rejects[:3]}")
    numbers = np.repeat(np.asarray(owners, dtype=np.int32), counts)
    return parsed.table.append_column("bucket", pa.array(numbers, type=pa.int32()))


def forget_phase_2(staging_dir: str) -> int:
    """Drop what Phase 2 recorded (NDJSON, markers, failures, rejects, aliases), so a rerun
    fetches every chunk again: after a run that found its source unreadable, the markers
    would otherwise make the rerun trust that run's "missing" results."""
    return clear_staging(
        staging_dir, ("staging", "markers", "pending_chunks", "rejects", "aliases")
    )


def clear_markers(staging_dir: str) -> int:
    """After a successful registration: drop the NDJSON and the bucket markers.

    Chunk markers stay (they are small), so a rerun skips every chunk instead of staging
    it again, and finds no NDJSON to compact: nothing is written twice. Items retried
    later (``--retry-pending``) are then the only NDJSON a bucket holds.
    """
    return clear_staging(staging_dir, ("staging", "compacted"))
