"""Keep the hash index in step with the Iceberg table.

The index file records, in its Parquet metadata, which table (UUID) and which data
sequence number it reflects. Syncing merges in the ids of only the files registered after
that point. Because the index follows the table, a run killed between registration and the
index update heals on the next sync: nothing is registered without eventually being
indexed, and nothing is indexed before it is registered.

Aliases (key stems whose item id differs, see :mod:`~earthcatalog_dagster.core.hash_index`)
follow the same rule: Phase 2 stages them per chunk (:func:`read_staged_aliases` reads them
back) and the commit merges them (:func:`merge_staged_aliases`) after registering, so a key
is never skipped by an anti-join before its item is in the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
from pyiceberg.table import Table

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import (
    HashIndex,
    MergeStats,
    hash_ids,
    load_hash_index_and_state,
    merge_aliases,
    write_hash_index,
)
from earthcatalog_dagster.core.items import MISMATCH_SCHEMA

TABLE_UUID_KEY = "earthcatalog.table_uuid"
SEQUENCE_KEY = "earthcatalog.sequence_number"


@dataclass(frozen=True)
class HashSync:
    """Hash counts before and after a sync, and how many files were read for it."""

    before: int
    after: int
    files_read: int
    #: The index as written (so a caller checking it need not load it again).
    index: HashIndex | None = field(default=None, repr=False, compare=False)

    @property
    def added(self) -> int:
        return self.after - self.before


def files_added_since(table: Table, sequence_number: int) -> list[str]:
    """Live data files of the table added with a data sequence number above the given one.

    Only manifests written after that sequence number are opened, so the cost follows the
    size of the change, not of the table.
    """
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    io = table.io
    paths: list[str] = []
    for manifest in snapshot.manifests(io):
        if manifest.sequence_number is not None and manifest.sequence_number <= sequence_number:
            continue
        for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
            if entry.sequence_number is None or entry.sequence_number > sequence_number:
                paths.append(entry.data_file.file_path)
    return paths


def read_ids(uris: Iterable[str], threads: int = 8) -> pa.Array:
    """The ``id`` column of many warehouse files, read concurrently."""
    uris = list(uris)
    if not uris:
        return pa.array([], type=pa.string())
    with ThreadPoolExecutor(max_workers=threads) as pool:
        tables = list(pool.map(lambda uri: storage.read_parquet(uri, columns=["id"]), uris))
    return pa.concat_tables(tables)["id"].combine_chunks()


def sync_hash_index(
    table: Table,
    index_uri: str,
    *,
    known_ids: Mapping[str, pa.Array] | None = None,
    rebuild: bool = False,
) -> HashSync:
    """Merge into the index the ids of every file registered since it was last synced.

    ``known_ids`` maps files the caller has just written to their ids, which saves reading
    them back; any other file is read. ``rebuild`` (after a full build) starts from an
    empty index, so the index holds exactly the table's ids.
    """
    known_ids = known_ids or {}
    index, state = load_hash_index_and_state(index_uri)
    if rebuild:
        index, state = HashIndex.empty(), {}
    same_table = state.get(TABLE_UUID_KEY) == str(table.metadata.table_uuid)
    since = int(state.get(SEQUENCE_KEY, 0)) if same_table else -1
    files = files_added_since(table, since)
    unknown = [uri for uri in files if uri not in known_ids]
    ids = [read_ids(unknown), *(known_ids[uri] for uri in files if uri in known_ids)]
    merged = index.merge(hash_ids(pa.concat_arrays(ids))) if files else index
    current = table.metadata.last_sequence_number
    if files or not same_table or since != current:
        write_hash_index(
            merged,
            index_uri,
            state={TABLE_UUID_KEY: str(table.metadata.table_uuid), SEQUENCE_KEY: str(current)},
        )
    return HashSync(before=len(index), after=len(merged), files_read=len(unknown), index=merged)


def read_staged_aliases(staging_dir: str) -> pa.Table:
    """Every ``(key_id, item_id)`` Phase 2 staged under ``staging_dir`` (all chunks).

    One row per kept item whose id differs from its key's stem (``layout.aliases_file``);
    an empty table in :data:`~earthcatalog_dagster.core.items.MISMATCH_SCHEMA` when none.
    """
    uris = [o.uri for o in storage.list_objects(layout.aliases_dir(staging_dir), suffix=".parquet")]
    if not uris:
        return MISMATCH_SCHEMA.empty_table()
    with ThreadPoolExecutor(max_workers=8) as pool:
        tables = list(pool.map(storage.read_parquet, sorted(uris)))
    return pa.concat_tables([t.select(MISMATCH_SCHEMA.names).cast(MISMATCH_SCHEMA) for t in tables])


def merge_staged_aliases(staging_dir: str, index_uri: str) -> MergeStats:
    """Merge the aliases staged under ``staging_dir`` into the alias file of ``index_uri``.

    Call after the run's files are registered (and the index synced), under the catalog
    lock. Idempotent: a rerun adds nothing and writes nothing.
    """
    return merge_aliases(index_uri, read_staged_aliases(staging_dir).column("key_id"))
