"""The S3 Inventory of a date: Parquet or gzip CSV data files, ``manifest.json`` and
``manifest.checksum``, laid out as the real inventory of the ITS_LIVE bucket.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import urllib.parse
import uuid
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from earthcatalog_dagster import layout
from earthcatalog_dagster.core.storage import write_bytes
from earthcatalog_dagster.synthetic.base import (
    _UTC,
    INVENTORY_BUCKET,
    INVENTORY_PREFIX,
    INVENTORY_VERSION,
    SOURCE_BUCKET,
    _as_date,
)

PARQUET_FILE_SCHEMA = (
    "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); "
    "optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); "
    "optional binary e_tag (UTF8);}"
)
CSV_FILE_SCHEMA = "Bucket, Key, Size, LastModifiedDate, ETag"
INVENTORY_PARQUET_SCHEMA = pa.schema(
    [
        pa.field("bucket", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("last_modified_date", pa.timestamp("ms", tz="UTC")),
        pa.field("e_tag", pa.string()),
    ]
)


def _uuid_like(*parts: object) -> str:
    return str(
        uuid.UUID(
            bytes=hashlib.md5("/".join(map(str, parts)).encode(), usedforsecurity=False).digest()
        )
    )


def _inventory_columns(refs: pa.Table) -> pa.Table:
    """``refs`` in the inventory's columns; a missing size/e_tag is made up deterministically."""
    n = refs.num_rows
    keys = refs.column("key").cast(pa.string())
    if "size" in refs.column_names:
        size = refs.column("size").cast(pa.int64())
    else:
        size = pa.array([3_000 + len(k) * 7 for k in keys.to_pylist()], pa.int64())
    if "e_tag" in refs.column_names:
        etag = refs.column("e_tag").cast(pa.string())
    else:
        etag = pa.array(
            [hashlib.md5(k.encode(), usedforsecurity=False).hexdigest() for k in keys.to_pylist()],
            pa.string(),
        )
    bucket = (
        refs.column("bucket").cast(pa.string())
        if "bucket" in refs.column_names
        else pa.array([SOURCE_BUCKET] * n, pa.string())
    )
    modified = refs.column("last_modified_date").cast(pa.timestamp("ms", tz="UTC"))
    return pa.Table.from_arrays(
        [bucket, keys, size, modified, etag], schema=INVENTORY_PARQUET_SCHEMA
    )


def _csv_bytes(table: pa.Table) -> bytes:
    """Headerless, every field quoted, keys URL-encoded, gzip (mtime 0: reproducible)."""
    keys = table.column("key")
    needs = pc.match_substring_regex(keys, r"[^A-Za-z0-9_.\-~/]")
    if pc.any(needs).as_py():  # rare: only those keys go through Python
        keys = pa.array(
            [
                urllib.parse.quote(k, safe="/") if n else k
                for k, n in zip(keys.to_pylist(), needs.to_pylist(), strict=True)
            ],
            pa.string(),
        )
    modified = pc.strftime(table.column("last_modified_date"), format="%Y-%m-%dT%H:%M:%SZ")
    out = pa.table(
        [table.column("bucket"), keys, table.column("size"), modified, table.column("e_tag")],
        names=["Bucket", "Key", "Size", "LastModifiedDate", "ETag"],
    )
    buf = io.BytesIO()
    pacsv.write_csv(out, buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return gzip.compress(buf.getvalue(), mtime=0)


def write_inventory(
    inventory_root: str,
    date: dt.date | str,
    refs: pa.Table,
    *,
    fmt: str = "parquet",
    files: int = 2,
) -> str:
    """Write the S3 Inventory of ``date`` listing ``refs``; return the manifest URI.

    Data files go to ``layout.inventory_data_dir(inventory_root)`` named
    ``<uuid>.parquet`` (snappy; columns bucket, key, size, last_modified_date
    timestamp[ms, UTC], e_tag) or ``<uuid>.csv.gz`` (gzip, headerless, every field quoted,
    ``Bucket, Key, Size, LastModifiedDate, ETag`` order, keys URL-encoded with
    ``urllib.parse.quote(key, safe="/")``, times like ``2024-06-01T03:14:15.000Z``). The
    manifest's ``files[].key`` are relative to the destination bucket
    (``its-live-data/daily/data/<name>``), so a reader finds a local copy at
    ``<manifest dir>/../data/<name>``. ``manifest.checksum`` holds the manifest's MD5 (hex).
    ``refs`` needs ``key`` and ``last_modified_date``; bucket, size and e_tag are used if
    present. Names derive from the date, so rewriting a date overwrites the same files.
    """
    kind = fmt.lower()
    if kind not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
    date = _as_date(date)
    table = _inventory_columns(refs).sort_by("key")
    n_files = max(1, min(files, table.num_rows))
    bounds = np.linspace(0, table.num_rows, n_files + 1).astype(int).tolist()
    data_dir = layout.inventory_data_dir(inventory_root)
    entries: list[dict[str, Any]] = []
    for i in range(n_files):
        part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        if kind == "parquet":
            buf = io.BytesIO()
            pq.write_table(part, buf, compression="snappy")
            data, name = buf.getvalue(), f"{_uuid_like(layout.date_key(date), i, kind)}.parquet"
        else:
            data, name = _csv_bytes(part), f"{_uuid_like(layout.date_key(date), i, kind)}.csv.gz"
        write_bytes(layout.join(data_dir, name), data)
        entries.append(
            {
                "key": f"{INVENTORY_PREFIX}/data/{name}",
                "size": len(data),
                "MD5checksum": hashlib.md5(data, usedforsecurity=False).hexdigest(),
            }
        )

    source_bucket = table.column("bucket")[0].as_py() if table.num_rows else SOURCE_BUCKET
    created = dt.datetime(date.year, date.month, date.day, tzinfo=_UTC)
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{INVENTORY_BUCKET}",
        "version": INVENTORY_VERSION,
        "creationTimestamp": str(int(created.timestamp() * 1000)),
        "fileFormat": "Parquet" if kind == "parquet" else "CSV",
        "fileSchema": PARQUET_FILE_SCHEMA if kind == "parquet" else CSV_FILE_SCHEMA,
        "files": entries,
    }
    body = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
    manifest_uri = layout.inventory_manifest(inventory_root, date)
    write_bytes(manifest_uri, body)
    checksum_uri = manifest_uri.rsplit("/", 1)[0] + "/manifest.checksum"
    write_bytes(checksum_uri, hashlib.md5(body, usedforsecurity=False).hexdigest().encode())
    return manifest_uri
