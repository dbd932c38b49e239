"""What ``warehouse_parquets`` hands ``iceberg_table`` beyond its descriptor: each new
file's size and Parquet footer, in one staging file (:func:`layout.warehouse_footers`),
so registration reads no file back (~1 ms a file locally, a round trip on S3)."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.geoparquet import HeldFile

FOOTERS_SCHEMA = pa.schema(
    [("file", pa.string()), ("size", pa.int64()), ("footer", pa.large_binary())]
)


def write_footers(staging: str, written: Iterable[HeldFile]) -> str:
    """Record ``written`` (replacing an earlier record of the partition); returns the URI."""
    files = list(written)
    table = pa.table(
        {
            "file": [w.uri for w in files],
            "size": [w.size for w in files],
            "footer": [w.serialized for w in files],
        },
        schema=FOOTERS_SCHEMA,
    )
    uri = layout.warehouse_footers(staging)
    storage.write_parquet(table, uri)
    return uri


def read_footers(staging: str, files: Iterable[str]) -> dict[str, HeldFile]:
    """The recorded footers of ``files``, still serialized (those not recorded, or no
    record: left out, for registration to read from the files)."""
    uri = layout.warehouse_footers(staging)
    wanted = sorted(set(files))
    if not wanted or not storage.exists(uri):
        return {}
    table = storage.read_parquet(uri)
    table = table.filter(pc.is_in(table["file"], value_set=pa.array(wanted, pa.string())))
    return {
        row["file"]: HeldFile(row["file"], row["size"], row["footer"]) for row in table.to_pylist()
    }
