"""No item is registered twice, even when two deltas overlap.

Deltas of different dates can hold the same item: a delta carries the un-indexed rows of
older pending deltas (see :mod:`.delta`), and a full S3 Inventory lists everything not
indexed yet. Two runs of overlapping deltas that run side by side (a UI backfill) both
write the shared items; the check that protects the table has to run where commits are
serialized: at registration, under the catalog lock.

:func:`registered_ids` is every id the table holds (the hash index, plus the ids of
files registered since the index was last synced, so a run killed before its hash sync
counts too). :func:`drop_registered_rows` rewrites each of a run's *unregistered* files
without the rows whose id is already registered (same name, same order, so a rerun
converges) and deletes a file left empty. Files the table already holds (a rerun after a
crash past registration) are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from pyiceberg.table import Table

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.geoparquet import write_geoparquet
from earthcatalog_dagster.core.hash_index import (
    HashIndex,
    hash_ids,
    load_hash_index_and_state,
)
from earthcatalog_dagster.pipeline.hash_sync import (
    SEQUENCE_KEY,
    TABLE_UUID_KEY,
    files_added_since,
    read_ids,
)

__all__ = ["OverlapResult", "drop_registered_rows", "registered_ids"]


@dataclass
class OverlapResult:
    """The files to register, and what was taken out of them."""

    files: list[str] = field(default_factory=list)
    rows_dropped: int = 0
    rewritten: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # emptied, or gone after an earlier try


def registered_ids(table: Table, index_uri: str) -> HashIndex:
    """Every id registered in ``table``: the index plus files registered since its sync."""
    index, state = load_hash_index_and_state(index_uri)
    same_table = state.get(TABLE_UUID_KEY) == str(table.metadata.table_uuid)
    since = int(state.get(SEQUENCE_KEY, 0)) if same_table else -1
    files = files_added_since(table, since)
    return index.merge(hash_ids(read_ids(files))) if files else index


def drop_registered_rows(
    files: Iterable[str],
    registered: HashIndex,
    table_files: set[str],
    *,
    known_ids: Mapping[str, pa.Array] | None = None,
    threads: int = 8,
) -> OverlapResult:
    """``files`` minus the rows whose id is in ``registered``; see the module doc.

    ``table_files`` are the paths the table holds already: those are kept untouched.
    ``known_ids`` maps files the caller has just written to their ids (no read-back).
    """
    known_ids = known_ids or {}
    wanted = list(dict.fromkeys(files))
    result = OverlapResult()
    if not len(registered):
        result.files = wanted
        return result

    def check(uri: str) -> tuple[str, str, int]:
        if uri in table_files:
            return uri, "keep", 0
        if uri not in known_ids and not storage.exists(uri):
            return uri, "gone", 0
        ids = known_ids.get(uri)
        if ids is None:
            ids = storage.read_parquet(uri, columns=["id"]).column("id").combine_chunks()
        taken = registered.contains(hash_ids(ids)) if len(ids) else np.zeros(0, dtype=bool)
        dropped = int(np.count_nonzero(taken))
        if not dropped:
            return uri, "keep", 0
        if dropped == len(ids):
            storage.delete(uri)
            return uri, "gone", dropped
        rows = storage.read_parquet(uri).filter(pa.array(~taken))
        write_geoparquet(rows, uri, presorted=True)
        return uri, "rewritten", dropped

    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(check, wanted))
    for uri, outcome, dropped in outcomes:
        result.rows_dropped += dropped
        if outcome == "gone":
            result.removed.append(uri)
            continue
        if outcome == "rewritten":
            result.rewritten.append(uri)
        result.files.append(uri)
    return result
