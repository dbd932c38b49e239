"""Daily delta production: the day's S3 Inventory minus the hash index, plus what is still
pending from earlier days, as ``delta/pending/delta_D.parquet``.

:func:`daily_delta` is what the ``delta_inventory`` asset, the 02:00 UTC schedule and
``earthcatalog-dagster daily-delta`` run (no Dagster here). For delta date D:

1. If ``pending/delta_D.parquet`` exists it is reused, without reading the inventory;
   rows whose id the hash index holds by now (ingested meanwhile by another date's run,
   e.g. as carried-over rows) are pruned from it, so a delta never re-ingests an item.
2. Otherwise the manifest must exist (else :class:`DeltaSourceNotFound`, naming the path
   it looked for and what produces it). Every ``.stac.json`` key of every data file
   (CSV.gz or Parquet) is streamed in batches; each id (the file name without
   ``.stac.json``) is hashed (xxh3_128, seed 42) and anti-joined against the index, all
   vectorized. "The index" here is every key already ingested: the hash index ∪ its
   aliases (:func:`~earthcatalog_dagster.core.hash_index.load_ingested_keys`), so an item
   whose id differs from its file name, once ingested, is never fetched again.
3. The rows of *older* pending deltas (``pending/delta_<earlier>.parquet``: days whose
   ingest did not run) that the index does not hold yet are added, so a skipped ingest
   loses nothing; rows are de-duplicated by (bucket, key). Dates whose ingest is under
   way (``in_flight``) are not carried.
4. The delta (``bucket``, ``key``, ``id_hash``) is written in one put: a rerun for the
   same date and inputs writes the same rows.

Memory: the index (16 bytes per id, ≈640 MB for 40 M) plus the delta's fresh rows; the
inventory itself is never held whole.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import HashIndex, hash_ids, load_ingested_keys
from earthcatalog_dagster.core.inventory import STAC_SUFFIX, ids_of_keys, iter_inventory

__all__ = ["DailyDelta", "DeltaSourceNotFound", "daily_delta", "older_pending_deltas"]

#: Inventory rows hashed and anti-joined per batch.
BATCH_ROWS = 1 << 18


#: The operators' delta format: one row per object still to ingest.
DELTA_SCHEMA = pa.schema(
    [("bucket", pa.string()), ("key", pa.string()), ("id_hash", pa.binary(16))]
)


class DeltaSourceNotFound(FileNotFoundError):
    """Neither the pending delta, its done marker (an ingested date), nor the S3 Inventory
    manifest the delta is built from exists."""

    def __init__(self, date: str, delta: str, manifest: str, done: str | None = None) -> None:
        self.date, self.delta, self.manifest, self.done = date, delta, manifest, done
        marker = f"nor the done marker {done} of an ingested date, " if done else ""
        super().__init__(
            f"delta file not found for {date}: neither the pending delta {delta}, {marker}"
            f"nor the S3 Inventory manifest it is built from, {manifest}, exists. The delta is "
            f"written by the daily delta job (schedule daily_delta_schedule at 02:00 UTC, "
            f"workflow daily_delta.yml, or `earthcatalog-dagster daily-delta`) from the "
            f"inventory AWS S3 Inventory delivers around 01:00 UTC under "
            f"<INVENTORY>/<date>T01-00Z/; check INVENTORY and that the delivery for {date} "
            f"happened."
        )


@dataclass(frozen=True)
class DailyDelta:
    """What :func:`daily_delta` wrote (or reused) for one date."""

    uri: str
    date: str
    rows: int
    reused: bool = False
    manifest: str | None = None
    source_rows: int = 0  # .stac.json rows of the inventory
    already_ingested: int = 0  # of those, ids the index holds
    carried: int = 0  # rows added from older pending deltas
    carried_from: tuple[str, ...] = ()
    left_in_flight: tuple[str, ...] = ()  # older pending deltas not carried: being ingested
    duplicates_dropped: int = 0  # rows of the same (bucket, key) seen twice
    pruned: int = 0  # rows of a reused delta dropped: the index holds them now
    index_size: int = 0
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "delta": self.uri,
            "date": self.date,
            "rows": self.rows,
            "reused": self.reused,
            "manifest": self.manifest,
            "source_rows": self.source_rows,
            "already_ingested": self.already_ingested,
            "carried": self.carried,
            "carried_from": list(self.carried_from),
            "left_in_flight": list(self.left_in_flight),
            "duplicates_dropped": self.duplicates_dropped,
            "pruned": self.pruned,
            "index_size": self.index_size,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def older_pending_deltas(delta_prefix: str, date: dt.date | str) -> list[str]:
    """``pending/delta_<d>.parquet`` URIs with d before ``date``, oldest first."""
    day = layout.date_key(date)
    found = []
    for obj in storage.list_objects(layout.deltas_pending_dir(delta_prefix), suffix=".parquet"):
        other = layout.parse_delta_date(obj.uri)
        if other is not None and other < day:
            found.append((other, obj.uri))
    return [uri for _, uri in sorted(found)]


def daily_delta(
    manifest: str,
    *,
    delta_prefix: str,
    date: dt.date | str,
    hash_index_uri: str | None = None,
    index: HashIndex | None = None,
    since: dt.datetime | dt.date | str | None = None,
    carry_over: bool = True,
    in_flight: Collection[str] = (),
    batch_rows: int = BATCH_ROWS,
) -> DailyDelta:
    """Write (or reuse) ``<delta_prefix>/pending/delta_<date>.parquet``; see the module doc.

    ``index`` (already loaded, probed with key-stem digests: pass
    ``load_ingested_keys(uri)``) or ``hash_index_uri`` (index ∪ aliases are loaded; a
    missing file is empty) is what the catalog holds. ``since`` keeps only inventory rows
    modified on/after it.
    ``carry_over=False`` leaves older pending deltas out; ``in_flight`` are dates whose
    ingest is under way (e.g. other runs of the same backfill): their pending deltas are
    not carried, since that run ingests them (if it fails, the next day's delta carries
    them). Overlap that still happens is resolved at registration (:mod:`.overlap`).
    """
    day = layout.date_key(date)
    out = layout.delta_pending(delta_prefix, day)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = seconds.get(name, 0.0) + now - clock
        clock = now

    if storage.exists(out):
        if index is None:
            index = load_ingested_keys(hash_index_uri) if hash_index_uri else HashIndex.empty()
        lap("load index")
        return _reuse(out, day, index, seconds, lap)
    if not storage.exists(manifest):
        raise DeltaSourceNotFound(day, out, manifest, done=layout.delta_ingested(delta_prefix, day))

    if index is None:
        index = load_ingested_keys(hash_index_uri) if hash_index_uri else HashIndex.empty()
    lap("load index")

    parts: list[pa.Table] = []
    source_rows = fresh_rows = 0
    for batch in iter_inventory(manifest, since=since, batch_rows=batch_rows):
        source_rows += batch.num_rows
        hashes = hash_ids(ids_of_keys(batch.column("key")))
        fresh = index.missing_mask(hashes)
        count = int(np.count_nonzero(fresh))
        if count:
            rows = pa.Table.from_arrays(
                [batch.column("bucket"), batch.column("key"), hashes], schema=DELTA_SCHEMA
            )
            parts.append(rows if count == len(fresh) else rows.filter(pa.array(fresh)))
            fresh_rows += count
    lap("inventory + anti-join")

    carried_from: list[str] = []
    left: list[str] = []
    carried = 0
    if carry_over:
        for uri in older_pending_deltas(delta_prefix, day):
            if layout.parse_delta_date(uri) in in_flight:
                left.append(uri)
                continue
            rows = _pending_rows(uri, index)
            carried_from.append(uri)
            if rows.num_rows:
                parts.append(rows)
                carried += rows.num_rows
        lap("older pending deltas")

    delta = pa.concat_tables(parts) if parts else DELTA_SCHEMA.empty_table()
    delta, duplicates = dedupe_by_key(delta)
    lap("dedupe")
    storage.write_parquet(delta.combine_chunks(), out)
    lap("write")
    return DailyDelta(
        uri=out,
        date=day,
        rows=delta.num_rows,
        manifest=manifest,
        source_rows=source_rows,
        already_ingested=source_rows - fresh_rows,
        carried=carried,
        carried_from=tuple(carried_from),
        left_in_flight=tuple(left),
        duplicates_dropped=duplicates,
        index_size=len(index),
        seconds=seconds,
    )


def _reuse(
    out: str, day: str, index: HashIndex, seconds: dict[str, float], lap: Callable[[str], None]
) -> DailyDelta:
    """The existing delta for ``day``, minus the rows the index holds by now."""
    delta = _as_delta(storage.read_parquet(out), out)
    pruned = 0
    if len(index) and delta.num_rows:
        fresh = index.missing_mask(delta.column("id_hash"))
        pruned = delta.num_rows - int(np.count_nonzero(fresh))
        if pruned:
            delta = delta.filter(pa.array(fresh))
            storage.write_parquet(delta.combine_chunks(), out)
    lap("reuse")
    return DailyDelta(
        uri=out,
        date=day,
        rows=delta.num_rows,
        reused=True,
        pruned=pruned,
        index_size=len(index),
        seconds=seconds,
    )


def _pending_rows(uri: str, index: HashIndex) -> pa.Table:
    """The rows of an older pending delta whose id the index does not hold."""
    rows = _as_delta(storage.read_parquet(uri), uri)
    if not rows.num_rows or not len(index):
        return rows
    return rows.filter(pa.array(index.missing_mask(rows.column("id_hash"))))


def _as_delta(table: pa.Table, uri: str) -> pa.Table:
    """A delta file's table in :data:`DELTA_SCHEMA` (hashing ids if it has no ``id_hash``)."""
    names = table.column_names
    if "bucket" not in names or "key" not in names:
        raise ValueError(f"delta {uri} needs columns bucket and key, has {names}")
    table = table.filter(pc.ends_with(table.column("key"), STAC_SUFFIX))
    if "id_hash" in names:
        hashes = table.column("id_hash").cast(DELTA_SCHEMA.field("id_hash").type)
    else:
        hashes = hash_ids(ids_of_keys(table.column("key")))
    return pa.Table.from_arrays(
        [table.column("bucket").cast(pa.string()), table.column("key").cast(pa.string()), hashes],
        schema=DELTA_SCHEMA,
    )


def dedupe_by_key(table: pa.Table) -> tuple[pa.Table, int]:
    """First row of each (bucket, key), order kept; and how many rows were dropped.

    Rows with the same key have the same ``id_hash``, so only rows whose hash occurs more
    than once can be duplicates: the (sub-second) hash check clears the usual case, and
    the string group-by runs over those few rows only.
    """
    n = table.num_rows
    if n < 2:
        return table, 0
    hashes = table.column("id_hash").combine_chunks()
    data = hashes.buffers()[1]
    words = np.frombuffer(data, dtype=np.uint64, count=2 * n, offset=hashes.offset * 16)
    words = words.reshape(n, 2)
    order = np.lexsort((words[:, 1], words[:, 0]))
    ordered = words[order]
    same = (ordered[1:] == ordered[:-1]).all(axis=1)
    if not same.any():
        return table, 0
    in_group = np.zeros(n, dtype=bool)
    in_group[1:] |= same
    in_group[:-1] |= same
    candidates = np.sort(order[in_group])
    sub = table.take(pa.array(candidates)).select(["bucket", "key"])
    sub = sub.append_column("row", pa.array(candidates))
    firsts = sub.group_by(["bucket", "key"], use_threads=False).aggregate([("row", "min")])
    keep = np.ones(n, dtype=bool)
    keep[candidates] = False
    keep[firsts.column("row_min").to_numpy()] = True
    dropped = n - int(np.count_nonzero(keep))
    return (table.filter(pa.array(keep)) if dropped else table), dropped
