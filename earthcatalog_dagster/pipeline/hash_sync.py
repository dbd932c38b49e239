"""Keep the hash index in step with the Iceberg table.

The index file records, in its Parquet metadata, which table (UUID) and which data
sequence number it reflects. Syncing reads the ``id`` column of only the files registered
after that point and merges their hashes in. Because the index follows the table, a run
killed between registration and the index update heals on the next sync: nothing is
registered without eventually being indexed, and nothing indexed without being registered.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
from pyiceberg.table import Table

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import (
    HashIndex,
    hash_ids,
    load_hash_index,
    read_index_state,
    write_hash_index,
)

TABLE_UUID_KEY = "earthcatalog.table_uuid"
SEQUENCE_KEY = "earthcatalog.sequence_number"


@dataclass(frozen=True)
class HashSync:
    """Hash counts before and after a sync, and how many files were read for it."""

    before: int
    after: int
    files_read: int

    @property
    def added(self) -> int:
        return self.after - self.before


def files_added_since(table: Table, sequence_number: int) -> list[str]:
    """Live data files of the table whose data sequence number is above ``sequence_number``."""
    if table.current_snapshot() is None:
        return []
    entries = table.inspect.entries().select(["sequence_number", "data_file"])
    sequence = entries["sequence_number"].to_pylist()
    paths = [df["file_path"] for df in entries["data_file"].to_pylist()]
    return [
        p for p, s in zip(paths, sequence, strict=True) if s is not None and s > sequence_number
    ]


def read_ids(uris: Iterable[str], threads: int = 8) -> pa.Array:
    """The ``id`` column of many warehouse files, read concurrently."""
    uris = list(uris)
    if not uris:
        return pa.array([], type=pa.string())
    with ThreadPoolExecutor(max_workers=threads) as pool:
        tables = list(pool.map(lambda uri: storage.read_parquet(uri, columns=["id"]), uris))
    return pa.concat_tables(tables)["id"].combine_chunks()


def sync_hash_index(table: Table, index_uri: str) -> HashSync:
    """Merge into the index the ids of every file registered since it was last synced."""
    index, state = load_hash_index(index_uri), read_index_state(index_uri)
    same_table = state.get(TABLE_UUID_KEY) == str(table.metadata.table_uuid)
    since = int(state.get(SEQUENCE_KEY, 0)) if same_table else -1
    files = files_added_since(table, since)
    merged: HashIndex = index.merge(hash_ids(read_ids(files))) if files else index
    current = table.metadata.last_sequence_number
    if files or not same_table or since != current:
        write_hash_index(
            merged,
            index_uri,
            state={TABLE_UUID_KEY: str(table.metadata.table_uuid), SEQUENCE_KEY: str(current)},
        )
    return HashSync(before=len(index), after=len(merged), files_read=len(files))
