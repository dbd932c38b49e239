"""The data files of one snapshot as columns, for planning a search without PyIceberg's
per-query manifest pass.

PyIceberg's ``plan_files`` decodes every manifest entry of the snapshot and evaluates the
filter entry by entry in Python, on every query: for a table of a few thousand files that is
most of a small query's time. A snapshot never changes, so its entries are decoded once per
process into a :class:`FileIndex` — path, size, row count, partition (cell, year) and the
lower/upper bounds of the statistics columns as NumPy arrays — and each search then selects
its files with a few vectorized comparisons (:meth:`FileIndex.select`). The tests are the
ones Iceberg's inclusive metrics evaluator makes (a file is kept unless its bounds rule it
out; a missing bound rules nothing out), so the files kept are those ``plan_files`` keeps
for the same filter, or more.

Tables with delete files (none of ours: registrations append, maintenance overwrites whole
files) are refused here; the planner then falls back to PyIceberg's scan.
"""

from __future__ import annotations

import datetime as dt
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyiceberg.manifest import ManifestContent
from pyiceberg.table import Table

from earthcatalog_dagster.core.schema import PROPERTIES, Kind

#: Statistics columns kept in the index (those the table keeps ``full`` metrics for).
INDEXED = ("datetime", "start_datetime", "end_datetime", "percent_valid_pixels", "date_dt",
           "platform", "latitude", "longitude", "created", "updated", "id")
_KIND = {p.name: p.kind for p in PROPERTIES} | {"id": Kind.STRING}
_CACHE: OrderedDict[tuple[str, int], FileIndex] = OrderedDict()
_CACHE_SIZE = 8
_LOCK = threading.Lock()
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
    io = table.io
    manifests = snapshot.manifests(io)
    if any(m.content != ManifestContent.DATA for m in manifests):
        raise HasDeletes(snapshot.snapshot_id)
    schema = table.schema()
    field_ids = {name: schema.find_field(name).field_id for name in INDEXED}

    def entries(manifest: Any) -> list[Any]:
        return [e.data_file for e in manifest.fetch_manifest_entry(io, discard_deleted=True)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        files = [f for batch in pool.map(entries, manifests) for f in batch]
    cells, years = [], []
    for data_file in files:
        partition = data_file.partition
        try:
            cell, year = partition[0], partition[1]
        except (IndexError, TypeError):
            cell, year = None, None
        cells.append(cell)
        years.append(np.nan if year is None else 1970 + year)
    lower = {n: _decode([f.lower_bounds or {} for f in files], i, n, False)
             for n, i in field_ids.items()}
    upper = {n: _decode([f.upper_bounds or {} for f in files], i, n, True)
             for n, i in field_ids.items()}
    return FileIndex(
        paths=[f.file_path for f in files],
        sizes=np.array([f.file_size_in_bytes for f in files], dtype=np.int64),
        records=np.array([f.record_count for f in files], dtype=np.int64),
        cells=np.array(cells, dtype=object),
        years=np.array(years, dtype=float),
        lower=lower,
        upper=upper,
    )


_TOP = "\U0010ffff" * 8
_FORMATS = {Kind.TIMESTAMP: "<q", Kind.INTEGER: "<i", Kind.FLOAT: "<d"}


def _decode(bounds: list[dict[int, bytes]], field_id: int, name: str, upper: bool) -> np.ndarray:
    """One column's bounds: numbers as float64 (±inf when absent), strings as objects."""
    kind = _KIND[name]
    raw = [b.get(field_id) for b in bounds]
    if kind is Kind.STRING:  # absent bounds: sentinels below / above every string
        absent = _TOP if upper else ""
        return np.array(
            [r.decode("utf-8", "replace") if r else absent for r in raw], dtype=object
        )
    fmt = _FORMATS[kind]
    missing = np.inf if upper else -np.inf
    return np.array(
        [struct.unpack(fmt, r)[0] if r and len(r) == struct.calcsize(fmt) else missing
         for r in raw],
        dtype=float,
    )
