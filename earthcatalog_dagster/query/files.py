"""The data files of one snapshot as columns, for planning a search without PyIceberg's
per-query manifest pass.

PyIceberg's ``plan_files`` decodes every manifest entry of the snapshot and evaluates the
filter entry by entry in Python, on every query: for a table of a few thousand files that is
most of a small query's time. A snapshot never changes, so its entries are decoded once
into a :class:`FileIndex` — path, size, row count, partition (cell, year) and the
lower/upper bounds of the statistics columns as NumPy arrays — and each search then selects
its files with a few vectorized comparisons (:meth:`FileIndex.select`). The tests are the
ones Iceberg's inclusive metrics evaluator makes (a file is kept unless its bounds rule it
out; a missing bound rules nothing out), so the files kept are those ``plan_files`` keeps
for the same filter, or more.

The index is built per manifest, and a manifest file never changes once written: each
manifest's index is kept in the process (a new snapshot after an append decodes only its
new manifest) and on local disk as a small Arrow IPC file (:func:`cache_dir`), so that the
first query of a new process — every ``search`` command — loads it in a few milliseconds
instead of decoding the Avro entries again (~0.1 ms of Python per data file).

Tables with delete files (none of ours: registrations append, maintenance overwrites whole
files) are refused here; the planner then falls back to PyIceberg's scan.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pyiceberg.avro.decoder import new_decoder
from pyiceberg.avro.file import SYNC_SIZE, AvroFile
from pyiceberg.manifest import ManifestContent, ManifestEntryStatus
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.typedef import Record
from pyiceberg.types import StructType

from earthcatalog_dagster.core.schema import PROPERTIES, Kind

#: Statistics columns kept in the index (those the table keeps ``full`` metrics for).
INDEXED = (
    "datetime",
    "start_datetime",
    "end_datetime",
    "percent_valid_pixels",
    "date_dt",
    "platform",
    "latitude",
    "longitude",
    "created",
    "updated",
    "id",
)
_KIND = {p.name: p.kind for p in PROPERTIES} | {"id": Kind.STRING}
_CACHE: OrderedDict[tuple[str, int], FileIndex] = OrderedDict()
_CACHE_SIZE = 8
_MANIFESTS: OrderedDict[tuple[str, tuple[tuple[str, int], ...]], FileIndex] = OrderedDict()
_MANIFEST_CACHE_SIZE = 256
_LOCK = threading.Lock()
#: The variable naming the on-disk cache folder (``off``: no disk cache).
CACHE_VAR = "EARTHCATALOG_QUERY_CACHE"
#: Cached manifest indexes kept on disk (the oldest beyond this are removed).
DISK_CACHE_FILES = 2048
_DISK_FORMAT = 1  # part of every key: bump when the stored columns change
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class HasDeletes(Exception):
    """The snapshot has delete files: plan with PyIceberg instead."""


@dataclass
class FileIndex:
    """One snapshot's data files, column-wise (see the module doc)."""

    paths: list[str]
    sizes: np.ndarray
    records: np.ndarray
    cells: np.ndarray  # object (str or None)
    years: np.ndarray  # float (NaN: no year)
    lower: dict[str, np.ndarray]  # float64 (±inf: none) or str objects (sentinels: none)
    upper: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.paths)

    def select(
        self,
        *,
        cells: Sequence[str] | None,
        start: dt.datetime | None,
        end: dt.datetime | None,
        ids: Sequence[str] | None,
        comparisons: Sequence[tuple[str, str, Any]],
    ) -> np.ndarray:
        """Indexes of the files that may hold a match (inclusive, as Iceberg's evaluator)."""
        keep = np.ones(len(self), dtype=bool)
        if cells is not None:
            keep &= np.isin(self.cells, np.asarray(list(cells), dtype=object))
        if start is not None or end is not None:
            lo = _micros(start) if start is not None else -np.inf
            hi = _micros(end) if end is not None else np.inf
            point = (self.upper["datetime"] >= lo) & (self.lower["datetime"] <= hi)
            span = (self.upper["end_datetime"] >= lo) & (self.lower["start_datetime"] <= hi)
            keep &= point | span
        if ids:
            keep &= self._any_string_in("id", sorted(ids))
        for name, op, value in comparisons:
            if name not in self.lower:
                continue
            if isinstance(value, dt.datetime):
                number: Any = _micros(value)
            elif isinstance(value, str):
                if _KIND[name] is not Kind.STRING:
                    continue
                number = value
            else:
                if _KIND[name] is Kind.STRING:
                    continue
                number = float(value)
            low, high = self.lower[name], self.upper[name]
            if op == "=":
                keep &= (low <= number) & (high >= number)
            elif op == "<":
                keep &= low < number
            elif op == "<=":
                keep &= low <= number
            elif op == ">":
                keep &= high > number
            elif op == ">=":
                keep &= high >= number
        return np.flatnonzero(keep)

    def _any_string_in(self, name: str, values: list[str]) -> np.ndarray:
        ordered = np.asarray(values, dtype=object)
        first = np.searchsorted(ordered, self.lower[name], side="left")
        last = np.searchsorted(ordered, self.upper[name], side="right")
        return last > first


def _micros(value: dt.datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return float((value - _EPOCH) // dt.timedelta(microseconds=1))


def file_index(table: Table, snapshot: Any) -> FileIndex:
    """The (cached) index of ``snapshot``'s data files; raises :class:`HasDeletes`."""
    key = (str(table.metadata.table_uuid), snapshot.snapshot_id)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    index = _build(table, snapshot)
    with _LOCK:
        _CACHE[key] = index
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return index


def _build(table: Table, snapshot: Any) -> FileIndex:
    """The snapshot's index: the concatenation of its manifests' (each cached on its own)."""
    io = table.io
    manifests = snapshot.manifests(io)
    if any(m.content != ManifestContent.DATA for m in manifests):
        raise HasDeletes(snapshot.snapshot_id)
    schema = table.schema()
    field_ids = {name: schema.find_field(name).field_id for name in INDEXED}
    if len(manifests) <= 1:  # no thread for the common case of one (or no) manifest
        parts = [manifest_index(io, m, field_ids) for m in manifests]
    else:  # remote manifests: fetch them concurrently (decoding holds the GIL)
        with ThreadPoolExecutor(max_workers=min(8, len(manifests))) as pool:
            parts = list(pool.map(lambda m: manifest_index(io, m, field_ids), manifests))
    return _concat(parts, list(field_ids))


def manifest_index(io: Any, manifest: Any, field_ids: dict[str, int]) -> FileIndex:
    """The live data files of one manifest (cached per manifest path and columns).

    A manifest file is immutable and consecutive snapshots share most of theirs (an append
    adds one), so a process serving a growing table decodes each manifest once, and a new
    snapshot costs only its new manifests.
    """
    key = (manifest.manifest_path, tuple(sorted(field_ids.items())))
    with _LOCK:
        if key in _MANIFESTS:
            _MANIFESTS.move_to_end(key)
            return _MANIFESTS[key]
    folder = cache_dir()
    stored = folder / f"{_disk_key(manifest, field_ids)}.arrow" if folder else None
    index = _load(stored, list(field_ids)) if stored else None
    if index is None:
        index = _decode_manifest(io, manifest.manifest_path, field_ids)
        if stored:
            _store(stored, index)
    with _LOCK:
        _MANIFESTS[key] = index
        while len(_MANIFESTS) > _MANIFEST_CACHE_SIZE:
            _MANIFESTS.popitem(last=False)
    return index


def cache_dir() -> Path | None:
    """The folder of the on-disk manifest indexes: ``$EARTHCATALOG_QUERY_CACHE`` (``off``,
    ``0`` or empty: none), else ``$XDG_CACHE_HOME/earthcatalog-dagster/manifests``."""
    value = os.environ.get(CACHE_VAR)
    if value is not None:
        value = value.strip()
        return None if value.lower() in ("", "0", "off", "none") else Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "earthcatalog-dagster" / "manifests"


def _disk_key(manifest: Any, field_ids: dict[str, int]) -> str:
    """The manifest's cache name: its path and length (a path is never rewritten; the
    length guards a catalog rebuilt at the same paths), the columns and the format."""
    text = json.dumps(
        [_DISK_FORMAT, manifest.manifest_path, manifest.manifest_length, sorted(field_ids.items())]
    )
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _store(path: Path, index: FileIndex) -> None:
    """Write ``index`` to ``path`` atomically; a cache that cannot be written is skipped."""
    columns: dict[str, Any] = {
        "path": pa.array(index.paths, pa.string()),
        "size": index.sizes,
        "records": index.records,
        "cell": pa.array(index.cells.tolist(), pa.string()),
        "year": index.years,
    }
    for name in index.lower:
        for side, values in (("lower", index.lower[name]), ("upper", index.upper[name])):
            columns[f"{side}.{name}"] = (
                pa.array(values.tolist(), pa.string()) if values.dtype == object else values
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with pa.OSFile(str(temporary), "wb") as sink:
            table = pa.table(columns)
            with pa.ipc.new_file(sink, table.schema) as writer:
                writer.write_table(table)
        os.replace(temporary, path)
        _trim(path.parent)
    except OSError:
        return


def _trim(folder: Path) -> None:
    """Keep the :data:`DISK_CACHE_FILES` newest indexes of ``folder``."""
    with contextlib.suppress(OSError):  # another process may be trimming too
        entries = list(os.scandir(folder))
        if len(entries) <= DISK_CACHE_FILES:
            return
        entries.sort(key=lambda e: e.stat().st_mtime)
        for entry in entries[: len(entries) - DISK_CACHE_FILES]:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _load(path: Path, names: list[str]) -> FileIndex | None:
    """The index stored at ``path``, or ``None`` (absent, unreadable or another layout)."""
    try:
        table = pa.ipc.open_file(pa.BufferReader(path.read_bytes())).read_all()
        wanted = {"path", "size", "records", "cell", "year"}
        wanted |= {f"{side}.{n}" for n in names for side in ("lower", "upper")}
        if not wanted <= set(table.column_names):
            return None

        def array(name: str) -> np.ndarray:
            column = table[name]
            if pa.types.is_string(column.type):
                return np.array(column.to_pylist(), dtype=object)
            return column.to_numpy()

        return FileIndex(
            paths=table["path"].to_pylist(),
            sizes=array("size").astype(np.int64),
            records=array("records").astype(np.int64),
            cells=array("cell"),
            years=array("year").astype(float),
            lower={n: array(f"lower.{n}") for n in names},
            upper={n: array(f"upper.{n}") for n in names},
        )
    except (OSError, pa.ArrowException):
        return None


def _manifest_records(io: Any, path: str) -> tuple[Schema, list[Record]]:
    """The manifest's entries as plain records in the file's own schema, and that schema.

    PyIceberg's ``fetch_manifest_entry`` builds a ``ManifestEntry`` and a ``DataFile`` per
    entry (typed setters, enums, sequence-number inheritance): more than half of the decode
    time, none of it needed here. The blocks are walked here as ``AvroFile`` walks them
    (count, bytes, sync marker), with the codec looked up once.
    """
    with AvroFile[Record](io.new_input(path)) as avro:
        decoder, reader, header = avro.decoder, avro.reader, avro.header
        codec = header.compression_codec()
        records: list[Record] = []
        while True:
            try:
                count = decoder.read_int()
            except EOFError:
                break
            block = decoder.read_bytes()
            if decoder.read(SYNC_SIZE) != header.sync:
                raise ValueError(f"{path}: bad Avro sync marker")
            block_decoder = new_decoder(codec.decompress(block) if codec else block)
            records.extend(reader.read(block_decoder) for _ in range(count))
        return avro.schema, records


def _position(struct: StructType, field_id: int) -> int:
    for position, field_ in enumerate(struct.fields):
        if field_.field_id == field_id:
            return position
    raise KeyError(field_id)


def _decode_manifest(io: Any, path: str, field_ids: dict[str, int]) -> FileIndex:
    schema, records = _manifest_records(io, path)
    entry = schema.as_struct()
    status_at, file_at = _position(entry, 0), _position(entry, 2)
    data_type = entry.fields[file_at].field_type
    assert isinstance(data_type, StructType)
    at = {fid: _position(data_type, fid) for fid in (100, 102, 103, 104, 125, 128)}
    content_at = _position(data_type, 134) if data_type.field(134) is not None else None
    files = [r[file_at] for r in records if r[status_at] != ManifestEntryStatus.DELETED.value]
    if content_at is not None and any(f[content_at] for f in files):
        raise HasDeletes(path)
    cells: list[str | None] = []
    years: list[float] = []
    for data_file in files:
        partition = data_file[at[102]]
        try:
            cell, year = partition[0], partition[1]
        except (IndexError, TypeError):
            cell, year = None, None
        cells.append(cell)
        years.append(np.nan if year is None else 1970 + year)
    lowers = [f[at[125]] or {} for f in files]
    uppers = [f[at[128]] or {} for f in files]
    return FileIndex(
        paths=[f[at[100]] for f in files],
        sizes=np.array([f[at[104]] for f in files], dtype=np.int64),
        records=np.array([f[at[103]] for f in files], dtype=np.int64),
        cells=np.array(cells, dtype=object),
        years=np.array(years, dtype=float),
        lower={n: _decode(lowers, i, n, False) for n, i in field_ids.items()},
        upper={n: _decode(uppers, i, n, True) for n, i in field_ids.items()},
    )


def _concat(parts: list[FileIndex], names: list[str]) -> FileIndex:
    if len(parts) == 1:
        return parts[0]
    if not parts:
        empty = np.zeros(0, dtype=float)
        return FileIndex(
            [],
            np.zeros(0, np.int64),
            np.zeros(0, np.int64),
            np.zeros(0, object),
            empty,
            {n: empty for n in names},
            {n: empty for n in names},
        )
    return FileIndex(
        paths=[p for part in parts for p in part.paths],
        sizes=np.concatenate([p.sizes for p in parts]),
        records=np.concatenate([p.records for p in parts]),
        cells=np.concatenate([p.cells for p in parts]),
        years=np.concatenate([p.years for p in parts]),
        lower={n: np.concatenate([p.lower[n] for p in parts]) for n in names},
        upper={n: np.concatenate([p.upper[n] for p in parts]) for n in names},
    )


_TOP = "\U0010ffff" * 8
_FORMATS = {Kind.TIMESTAMP: "<i8", Kind.INTEGER: "<i4", Kind.FLOAT: "<f8"}


def _decode(bounds: list[dict[int, bytes]], field_id: int, name: str, upper: bool) -> np.ndarray:
    """One column's bounds: numbers as float64 (±inf when absent), strings as objects.

    Numbers are decoded in one ``frombuffer`` over the joined bytes (absent or odd-sized
    bounds padded, then replaced by the infinity that rules nothing out)."""
    kind = _KIND[name]
    raw = [b.get(field_id) for b in bounds]
    if kind is Kind.STRING:  # absent bounds: sentinels below / above every string
        absent = _TOP if upper else ""
        return np.array([r.decode("utf-8", "replace") if r else absent for r in raw], dtype=object)
    dtype = np.dtype(_FORMATS[kind])
    size = dtype.itemsize
    present = np.fromiter((r is not None and len(r) == size for r in raw), bool, len(raw))
    pad = bytes(size)
    joined = b"".join(r if ok else pad for r, ok in zip(raw, present.tolist(), strict=True))
    values = np.frombuffer(joined, dtype=dtype).astype(float)
    values[~present] = np.inf if upper else -np.inf
    return values
