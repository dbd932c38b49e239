"""Read inventories — S3 Inventory manifests, plain bucket/key files, deltas — as a stream
of bounded Arrow record batches of ``.stac.json`` rows.

Accepted inputs (``uri`` is a local path or ``s3://``):

(a) an AWS S3 Inventory ``manifest.json`` (``fileFormat`` ``CSV`` or ``Parquet``; ``ORC``
    is refused with a clear error). Data files are located as follows:

    - manifest on S3: ``s3://<destinationBucket>/<files[i].key>`` (the ARN
      ``arn:aws:s3:::name`` is reduced to ``name``);
    - manifest on a local disk (a copied or synthetic inventory): the keys are relative to
      a bucket we do not have, so the part of the key after its last ``data/`` segment is
      looked up under ``<manifest dir>/../data/`` — the inventory root beside the dated
      manifest folders (``<root>/<YYYY-MM-DDTHH-MMZ>/manifest.json`` + ``<root>/data/``).
      A key without a ``data/`` segment is looked up by its file name there.

    CSV data files are gzip, headerless, columns in ``fileSchema`` order, object keys
    URL-encoded. Keys are decoded with *form* semantics (``urllib.parse.unquote_plus``):
    ``+`` is a space and ``%XX`` an escaped byte (UTF-8). S3 Inventory encodes a literal
    ``+`` as ``%2B``, so a bare ``+`` can only be a space. Decoding is vectorized: ``+`` and
    ``%2F`` are replaced with Arrow compute over the whole column; only keys that still hold
    a ``%`` (rare) go through Python. Parquet data files carry snake_case columns
    (``bucket``, ``key``, ``last_modified_date``) and plain keys.

(b) a single CSV (header row), CSV.gz or Parquet file with columns ``bucket`` and ``key``
    (optionally ``last_modified_date``); keys are taken literally (no URL decoding).

(c) our delta Parquet (``bucket``, ``key``, ``id_hash``): the same as (b).

The format of a single file is sniffed from its first bytes (``PAR1`` Parquet, gzip magic
CSV.gz, ``ORC`` refused, otherwise CSV); a ``.json`` name means a manifest.

Semantics:

- only keys ending ``.stac.json`` are yielded (filtered on the raw key, which is the same
  suffix before and after URL decoding: letters and dots are never encoded);
- ``since=`` keeps rows with ``last_modified_date >= since`` (a naive datetime or a date
  is UTC; a date means its midnight). Rows whose date is null are *dropped* when ``since``
  is given and kept otherwise; an input that has no date column at all cannot honour
  ``since`` and raises ``ValueError`` rather than silently yielding nothing;
- ``limit=`` stops after exactly that many (post-filter) rows;
- batches have exactly :data:`INVENTORY_SCHEMA` and at most ``batch_rows`` rows.

Memory is bounded: one data file is open at a time and read in blocks (pyarrow's
streaming CSV reader over a gzip stream, ``ParquetFile.iter_batches``); filtered rows are
re-sliced to ``batch_rows``. Nothing iterates rows in Python except the rare ``%`` keys.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from earthcatalog_dagster.core import storage

__all__ = [
    "INVENTORY_SCHEMA",
    "STAC_SUFFIX",
    "Manifest",
    "iter_inventory",
    "read_inventory_table",
    "read_manifest",
]

INVENTORY_SCHEMA = pa.schema(
    [
        ("bucket", pa.string()),
        ("key", pa.string()),
        ("last_modified_date", pa.timestamp("us", tz="UTC")),
    ]
)
STAC_SUFFIX = ".stac.json"
_TS = pa.timestamp("us", tz="UTC")
_CSV_BLOCK = 4 << 20
_GZIP_MAGIC = b"\x1f\x8b"

# CSV fileSchema names (S3 Inventory) and header names (plain files) → our columns.
_CSV_NAMES = {
    "bucket": "bucket",
    "key": "key",
    "lastmodifieddate": "last_modified_date",
    "last_modified_date": "last_modified_date",
}


# --- manifest -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Manifest:
    """The parts of an S3 Inventory ``manifest.json`` we use, with resolved data URIs."""

    uri: str
    source_bucket: str
    destination_bucket: str
    file_format: str  # "CSV" | "Parquet"
    file_schema: str
    data_files: tuple[str, ...]

    @property
    def csv_columns(self) -> list[str]:
        """``fileSchema`` of a CSV inventory as a list of column names."""
        return [name.strip() for name in self.file_schema.split(",") if name.strip()]


def _bad(uri: str, what: str) -> ValueError:
    return ValueError(f"malformed inventory manifest {uri}: {what}")


def read_manifest(uri: str) -> Manifest:
    """Load and validate a ``manifest.json``; resolve its data files (see module doc).

    Raises :class:`storage.ObjectNotFound` if it is missing and ``ValueError`` naming the
    file and the problem if it is not a usable manifest.
    """
    raw = storage.read_bytes(uri)
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _bad(uri, f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _bad(uri, "the top level is not a JSON object")
    for field in ("sourceBucket", "destinationBucket", "fileFormat", "files"):
        if field not in doc:
            raise _bad(uri, f"missing field {field!r}")
    fmt = str(doc["fileFormat"]).strip()
    if fmt.upper() == "ORC":
        raise _bad(uri, "fileFormat ORC is not supported (use CSV or Parquet inventories)")
    if fmt.upper() not in ("CSV", "PARQUET"):
        raise _bad(uri, f"unknown fileFormat {fmt!r} (expected CSV or Parquet)")
    fmt = "CSV" if fmt.upper() == "CSV" else "Parquet"
    schema = doc.get("fileSchema") or ""
    if fmt == "CSV" and not isinstance(schema, str):
        raise _bad(uri, "fileSchema is not a string")
    if fmt == "CSV" and not schema:
        raise _bad(uri, "missing field 'fileSchema' (needed to read CSV data files)")
    files = doc["files"]
    if not isinstance(files, list):
        raise _bad(uri, "'files' is not a list")
    keys: list[str] = []
    for i, entry in enumerate(files):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"]:
            raise _bad(uri, f"files[{i}] has no 'key'")
        keys.append(entry["key"])
    dest = str(doc["destinationBucket"])
    dest_bucket = dest.rsplit(":::", 1)[-1] if dest.startswith("arn:") else dest
    if not dest_bucket:
        raise _bad(uri, f"destinationBucket {dest!r} names no bucket")
    manifest = Manifest(
        uri=uri,
        source_bucket=str(doc["sourceBucket"]),
        destination_bucket=dest_bucket,
        file_format=fmt,
        file_schema=schema if isinstance(schema, str) else "",
        data_files=tuple(_data_file_uri(uri, dest_bucket, key) for key in keys),
    )
    if fmt == "CSV":
        lowered = [_CSV_NAMES.get(c.lower()) for c in manifest.csv_columns]
        if "key" not in lowered:
            raise _bad(uri, f"fileSchema {schema!r} has no Key column")
    return manifest


def _data_file_uri(manifest_uri: str, dest_bucket: str, key: str) -> str:
    if not storage.is_local(manifest_uri):
        return f"s3://{dest_bucket}/{key.lstrip('/')}"
    parts = key.strip("/").split("/")
    tail = parts[-1:]
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "data":
            tail = parts[i + 1 :]
            break
    root = posixpath.dirname(posixpath.dirname(storage.local_path(manifest_uri) or ""))
    return posixpath.join(root, "data", *tail)


# --- public API ---------------------------------------------------------------------------


def iter_inventory(
    uri: str,
    *,
    since: dt.datetime | dt.date | str | None = None,
    limit: int | None = None,
    batch_rows: int = 65_536,
) -> Iterator[pa.RecordBatch]:
    """Stream the ``.stac.json`` rows of an inventory as batches of :data:`INVENTORY_SCHEMA`.

    ``uri`` is a manifest, a CSV/CSV.gz/Parquet file of ``bucket, key``, or a delta (see the
    module docstring for the formats, the URL decoding and the ``since``/null rules).
    At most ``batch_rows`` rows per batch; ``limit`` caps the total exactly.

    The manifest (or the single file's header) is read right away, so a missing or
    malformed input fails at the call; data files are opened one at a time as the
    iterator is consumed.
    """
    if batch_rows <= 0:
        raise ValueError("batch_rows must be positive")
    if limit is not None and limit < 0:
        raise ValueError("limit must be >= 0")
    since_ts = _since_scalar(since)
    sources = _sources(uri, batch_rows)
    if limit == 0:
        return iter(())
    return _rebatch(_filtered(sources, since_ts, limit), batch_rows)


def read_inventory_table(
    uri: str,
    *,
    since: dt.datetime | dt.date | str | None = None,
    limit: int | None = None,
) -> pa.Table:
    """The whole (filtered) inventory as one table of :data:`INVENTORY_SCHEMA`."""
    return pa.Table.from_batches(
        list(iter_inventory(uri, since=since, limit=limit)), schema=INVENTORY_SCHEMA
    )


# --- sources: one per data file, opened lazily and one at a time ----------------------------


@dataclass(frozen=True)
class _Source:
    uri: str
    batches: Callable[[], Iterator[pa.RecordBatch]]  # raw batches with our column names
    has_date: bool
    manifest: str | None = None


def _sources(uri: str, batch_rows: int) -> list[_Source]:
    """One lazily opened source per data file; reads the manifest or sniffs the file now."""
    if uri.rstrip("/").lower().endswith(".json"):
        manifest = read_manifest(uri)
        out: list[_Source] = []
        for data_uri in manifest.data_files:
            if manifest.file_format == "CSV":
                names = manifest.csv_columns
                has_date = any(_CSV_NAMES.get(n.lower()) == "last_modified_date" for n in names)
                read = _bind(_csv_batches, data_uri, names, None, True, manifest.source_bucket)
            else:
                has_date = True  # checked per file: Parquet inventories always carry it
                read = _bind(_parquet_batches, data_uri, batch_rows)
            out.append(_Source(data_uri, read, has_date, manifest=uri))
        return out
    head = _head(uri)
    if head.startswith(b"PAR1"):
        has_date = "last_modified_date" in _parquet_schema(uri).names
        return [_Source(uri, _bind(_parquet_batches, uri, batch_rows), has_date)]
    if head.startswith(b"ORC"):
        raise ValueError(f"ORC inventories are not supported: {uri}")
    gz = head.startswith(_GZIP_MAGIC)
    names = _csv_header(uri, gz)
    has_date = "last_modified_date" in {_CSV_NAMES.get(n.strip().lower()) for n in names}
    return [_Source(uri, _bind(_csv_batches, uri, names, gz, False, None, True), has_date)]


def _bind(
    fn: Callable[..., Iterator[pa.RecordBatch]], *args: object
) -> Callable[[], Iterator[pa.RecordBatch]]:
    return lambda: fn(*args)


def _head(uri: str) -> bytes:
    with storage.open_input(uri, buffer_size=1 << 16) as f:
        return f.read(4)


def _native_input(uri: str) -> pa.NativeFile:
    path = storage.local_path(uri)
    if path is not None:
        try:
            return pa.OSFile(path, "rb")
        except FileNotFoundError:
            raise storage.ObjectNotFound(uri) from None
    return pa.PythonFile(storage.open_input(uri), mode="r")


def _parquet_schema(uri: str) -> pa.Schema:
    with _native_input(uri) as f:
        return pq.ParquetFile(f).schema_arrow


def _parquet_batches(uri: str, batch_rows: int) -> Iterator[pa.RecordBatch]:
    with _native_input(uri) as f:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        for needed in ("bucket", "key"):
            if needed not in names:
                raise ValueError(f"inventory file {uri} has no {needed!r} column (has {names})")
        cols = [c for c in ("bucket", "key", "last_modified_date") if c in names]
        yield from pf.iter_batches(batch_size=batch_rows, columns=cols)


def _csv_header(uri: str, gz: bool) -> list[str]:
    with _native_input(uri) as raw:
        stream = pa.CompressedInputStream(raw, "gzip") if gz else raw
        line = stream.read(64 << 10).split(b"\n", 1)[0].decode("utf-8-sig").strip("\r")
    names = [n.strip().strip('"').strip() for n in line.split(",")]
    if not {"bucket", "key"} <= {n.lower() for n in names}:
        raise ValueError(f"inventory file {uri} needs a header with bucket and key, got {names}")
    return names


def _csv_batches(
    uri: str,
    names: list[str],
    gz: bool | None,
    url_encoded: bool,
    default_bucket: str | None,
    header: bool = False,
) -> Iterator[pa.RecordBatch]:
    """Stream a CSV (gzip or not, with or without header) as our columns, keys decoded."""
    rename = {n: _CSV_NAMES[n.strip().lower()] for n in names if n.strip().lower() in _CSV_NAMES}
    include = list(rename)
    read_opts = pcsv.ReadOptions(
        column_names=names, skip_rows=1 if header else 0, block_size=_CSV_BLOCK
    )
    convert = pcsv.ConvertOptions(
        include_columns=include,
        column_types={n: pa.string() for n in include},
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
    )
    with _native_input(uri) as raw:
        if gz is None:  # sniff: S3 Inventory CSV is gzip, a copied one may not be
            gz = raw.read(2) == _GZIP_MAGIC
            raw.seek(0)
        stream = pa.CompressedInputStream(raw, "gzip") if gz else raw
        try:
            reader = pcsv.open_csv(stream, read_options=read_opts, convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            raise ValueError(f"cannot read inventory CSV {uri}: {exc}") from None
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                return
            except pa.ArrowInvalid as exc:
                raise ValueError(f"cannot read inventory CSV {uri}: {exc}") from None
            cols = {rename[n]: batch.column(n) for n in include}
            if "bucket" not in cols:
                cols["bucket"] = pa.array([default_bucket] * batch.num_rows, pa.string())
            if "last_modified_date" in cols:
                cols["last_modified_date"] = _parse_dates(cols["last_modified_date"], uri)
            if url_encoded:
                # decode only what survives the suffix filter: cheaper, and the suffix is
                # the same encoded or not
                keep = pc.fill_null(pc.ends_with(cols["key"], STAC_SUFFIX), False)
                cols = {k: pc.filter(v, keep) for k, v in cols.items()}
                cols["key"] = _url_decode(cols["key"])
            yield pa.RecordBatch.from_pydict(cols)


def _parse_dates(values: pa.Array, uri: str) -> pa.Array:
    """ISO 8601 strings → timestamp[us, UTC]; strings without a zone are taken as UTC."""
    try:
        return pc.cast(values, _TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    try:
        return pc.cast(pc.cast(values, pa.timestamp("us")), _TS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ValueError(f"unparseable last_modified_date in {uri}: {exc}") from None


def _url_decode(keys: pa.Array) -> pa.Array:
    """Form-decode keys (``+`` → space, ``%XX`` → byte), vectorized but for rare ``%`` keys."""
    if len(keys) == 0:
        return keys
    out = pc.replace_substring(keys, "+", " ")
    out = pc.replace_substring_regex(out, "%2[Ff]", "/")
    has_pct = pc.fill_null(pc.match_substring(out, "%"), False)
    if not pc.any(has_pct).as_py():
        return out
    idx = pc.indices_nonzero(has_pct)
    decoded = pa.array([unquote(s) for s in pc.take(out, idx).to_pylist()], pa.string())
    return pc.replace_with_mask(out, has_pct, decoded)


# --- filtering and re-batching ------------------------------------------------------------


def _since_scalar(since: dt.datetime | dt.date | str | None) -> pa.Scalar | None:
    if since is None:
        return None
    if isinstance(since, str):
        text = since.strip()
        try:
            since = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"since={text!r} is not an ISO date or datetime") from None
        if len(text) == 10:  # a bare date: its midnight
            since = since.date()
    if isinstance(since, dt.datetime):
        value = since if since.tzinfo else since.replace(tzinfo=dt.UTC)
    elif isinstance(since, dt.date):
        value = dt.datetime(since.year, since.month, since.day, tzinfo=dt.UTC)
    else:
        raise TypeError(f"since must be a datetime, date or ISO string, not {type(since)}")
    return pa.scalar(value.astimezone(dt.UTC), _TS)


def _normalize(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Exactly INVENTORY_SCHEMA: cast types, add a null date column if absent."""
    n = batch.num_rows
    names = batch.schema.names
    bucket = pc.cast(batch.column("bucket"), pa.string())
    key = pc.cast(batch.column("key"), pa.string())
    if "last_modified_date" in names:
        date = batch.column("last_modified_date")
        if pa.types.is_string(date.type) or pa.types.is_large_string(date.type):
            date = _parse_dates(date, "an inventory file")
        elif pa.types.is_timestamp(date.type) and date.type.tz is None:
            date = pc.cast(date, pa.timestamp("us"))  # naive Parquet timestamps are UTC
        date = pc.cast(date, _TS)
    else:
        date = pa.nulls(n, _TS)
    return pa.RecordBatch.from_arrays([bucket, key, date], schema=INVENTORY_SCHEMA)


def _filtered(
    sources: Iterable[_Source], since: pa.Scalar | None, limit: int | None
) -> Iterator[pa.RecordBatch]:
    remaining = limit
    for src in sources:
        if since is not None and not src.has_date:
            raise ValueError(
                f"since= needs a last_modified_date column, and inventory file {src.uri} has none"
            )
        try:
            for raw in src.batches():
                if since is not None and "last_modified_date" not in raw.schema.names:
                    raise ValueError(
                        f"since= needs a last_modified_date column, "
                        f"and inventory file {src.uri} has none"
                    )
                batch = _normalize(raw)
                keep = pc.fill_null(pc.ends_with(batch.column("key"), STAC_SUFFIX), False)
                if since is not None:
                    on_or_after = pc.greater_equal(batch.column("last_modified_date"), since)
                    keep = pc.and_(keep, pc.fill_null(on_or_after, False))
                batch = batch.filter(keep)
                if batch.num_rows == 0:
                    continue
                if remaining is not None:
                    if batch.num_rows >= remaining:
                        yield batch.slice(0, remaining)
                        return
                    remaining -= batch.num_rows
                yield batch
        except storage.ObjectNotFound:
            where = f"listed in manifest {src.manifest}" if src.manifest else "inventory file"
            raise storage.ObjectNotFound(src.uri, f"inventory data file {where}") from None


def _rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Coalesce small filtered batches into batches of ``rows`` rows (the last may be less)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        if count >= rows:
            table = pa.Table.from_batches(pending, schema=INVENTORY_SCHEMA).combine_chunks()
            full = (count // rows) * rows
            yield from table.slice(0, full).to_batches(max_chunksize=rows)
            rest = table.slice(full)
            pending = rest.to_batches() if rest.num_rows else []
            count = rest.num_rows
    if count:
        table = pa.Table.from_batches(pending, schema=INVENTORY_SCHEMA).combine_chunks()
        yield from table.to_batches(max_chunksize=rows)


def ids_of_keys(keys: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Item ids of object keys — the file name without ``.stac.json`` — vectorized."""
    names = pc.replace_substring_regex(keys, pattern=r"^.*/", replacement="")
    ids = pc.replace_substring_regex(names, pattern=r"\.stac\.json$", replacement="")
    return ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
