"""Search execution: read the planned files in parallel and keep exactly the matching rows.

Per file (a thread each, up to :data:`READ_WORKERS`; pyarrow and shapely release the GIL):
read the footer, drop row groups the bbox statistics rule out (:func:`.plan.row_groups_to_read`),
read only the filter columns of the rest, filter with whole-column operations, and read the
other output columns only for files where some row matched:

1. ids, collections, the STAC time test (``start_datetime``/``end_datetime`` overlap, else
   ``datetime`` in the interval) and the vectorized CQL2 conjuncts (:mod:`.filters`);
2. the stored bbox against the query's boxes (a cheap superset), then the exact
   intersection with shapely on the WKB of the remaining rows (:mod:`.geometry`);
3. residual CQL2 conjuncts, by cql2's evaluator, on the few rows left.

Then, over all files: one row per item id (an item overlapping several cells is stored in
each), the sort (``sortby``, then ``id`` so that the order — and paging — is total) and the
limit, computed on the id and sort columns, then one gather of the whole rows. Small S3
objects are fetched whole in one GET; large ones are read by ranges.

Arrow's memory: the ``search`` and ``serve`` commands put Arrow on jemalloc at start-up
(:func:`use_search_memory_pool`; a Python caller may do the same, or set
``ARROW_DEFAULT_MEMORY_POOL=jemalloc``). With pyarrow's default mimalloc, the first search of a
process spent 0.3–0.5 s of system time faulting in fresh pages (its per-thread heaps keep
~220 MB more resident for a 100 MB peak), which made a cold query slower than DuckDB's.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.items import ITEM_SCHEMA, table_to_items
from earthcatalog_dagster.core.schema import TIMESTAMP
from earthcatalog_dagster.query import geometry as geo
from earthcatalog_dagster.query.plan import Plan, PlannedFile, row_groups_to_read

#: Threads reading files at once (I/O bound on S3; local reads are CPU bound but short).
READ_WORKERS = 16
#: S3 objects up to this size are fetched with one GET instead of footer + range reads.
WHOLE_OBJECT_BYTES = 8 << 20
ITEM_COLUMNS = tuple(ITEM_SCHEMA.names)


@dataclass
class ExecutionStats:
    """What execution read and kept (for :meth:`SearchResult.explain`)."""

    files_read: int = 0
    files_skipped: int = 0
    row_groups_total: int = 0
    row_groups_read: int = 0
    bytes_read: int = 0
    rows_scanned: int = 0
    rows_matched: int = 0
    duplicates_removed: int = 0
    seconds: float = 0.0
    columns: list[str] = field(default_factory=list)


def filter_columns(plan: Plan) -> list[str]:
    """The columns the vectorized filters read (``id`` always: it de-duplicates)."""
    params = plan.params
    wanted = {"id"} | plan.compiled.columns
    if params.geometry is not None:
        wanted |= {"geometry", "bbox"}
    if params.has_time:
        wanted |= {"datetime", "start_datetime", "end_datetime"}
    if params.collections:
        wanted.add("collection")
    return [name for name in ITEM_COLUMNS if name in wanted]


def needed_columns(plan: Plan, output: Sequence[str] | None) -> list[str]:
    """The columns a search returns: the output ones (``None``: all), the filters' ones,
    the sort keys, and every item column when a residual CQL2 conjunct needs the items."""
    wanted = set(ITEM_COLUMNS if output is None or plan.compiled.residual else output)
    wanted |= set(filter_columns(plan))
    wanted |= {name for name, _asc in plan.params.sortby}
    return [name for name in ITEM_COLUMNS if name in wanted]


_POOL_LOCK = threading.Lock()
_POOL_CHOSEN = False


def use_search_memory_pool() -> None:
    """Make jemalloc Arrow's default pool, once per process, unless
    ``ARROW_DEFAULT_MEMORY_POOL`` chose one, the default is no longer pyarrow's mimalloc
    (:func:`pyarrow.set_memory_pool` was called) or pyarrow has no jemalloc. Why: see the
    module doc. Buffers already allocated keep their own pool."""
    global _POOL_CHOSEN
    with _POOL_LOCK:
        if _POOL_CHOSEN:
            return
        _POOL_CHOSEN = True
        if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
            return
        if pa.default_memory_pool().backend_name != "mimalloc":
            return
        try:
            pool = pa.jemalloc_memory_pool()
        except (NotImplementedError, pa.ArrowException):
            return
        pa.set_memory_pool(pool)


def execute(plan: Plan, output: Sequence[str] | None = None) -> tuple[pa.Table, ExecutionStats]:
    """The matching rows (``output`` columns, ``None``: every item column), de-duplicated,
    sorted and limited, and what it took."""
    started = time.perf_counter()
    columns = needed_columns(plan, output)
    stats = ExecutionStats(columns=columns)
    schema = pa.schema([ITEM_SCHEMA.field(name) for name in columns])
    parts: list[pa.Table] = []
    if plan.files:
        workers = min(READ_WORKERS, len(plan.files))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for table, file_stats in pool.map(lambda f: _read_file(plan, f, columns), plan.files):
                stats.row_groups_total += file_stats[0]
                stats.row_groups_read += file_stats[1]
                stats.bytes_read += file_stats[2]
                stats.rows_scanned += file_stats[3]
                if file_stats[1]:
                    stats.files_read += 1
                else:
                    stats.files_skipped += 1
                if table is not None and table.num_rows:
                    parts.append(table)
    table = pa.concat_tables(parts) if parts else schema.empty_table()
    stats.rows_matched = table.num_rows
    rows = unique_ids_rows(table)
    stats.duplicates_removed = stats.rows_matched - len(rows)
    rows = rows.take(
        sort_indices(table.select(_sort_keys(plan.params.sortby)).take(rows), plan.params.sortby)
    )
    if plan.params.limit is not None:
        rows = rows.slice(0, plan.params.limit)
    table = table.take(rows)  # the one gather of the whole rows: unique, sorted, limited
    if output is not None:
        table = table.select([name for name in columns if name in set(output) | {"id"}])
    stats.seconds = time.perf_counter() - started
    return table, stats


def _open(file: PlannedFile) -> pq.ParquetFile:
    if storage.is_local(file.path):
        return pq.ParquetFile(storage.local_path(file.path) or file.path, memory_map=True)
    if file.size <= WHOLE_OBJECT_BYTES:
        return pq.ParquetFile(pa.BufferReader(storage.read_bytes(file.path)))
    return pq.ParquetFile(storage.open_input(file.path))


def _read_file(
    plan: Plan, file: PlannedFile, columns: list[str]
) -> tuple[pa.Table | None, tuple[int, int, int, int]]:
    """One file's matching rows and (row groups, read, bytes read, rows scanned).

    Two passes over the kept row groups: the filter columns first, and the other output
    columns only when some row matched (most files of a selective query have none).
    """
    parquet = _open(file)
    metadata = parquet.metadata
    groups = row_groups_to_read(metadata, plan.boxes)
    if not groups:
        return None, (metadata.num_row_groups, 0, 0, 0)
    present = set(parquet.schema_arrow.names)
    first = filter_columns(plan)
    table = _conform(
        parquet.read_row_groups(groups, columns=[c for c in first if c in present]), first
    )
    read = _bytes_of(metadata, groups, first)
    scanned = table.num_rows
    rows = matching_rows(plan, table)
    if not len(rows):
        return None, (metadata.num_row_groups, len(groups), read, scanned)
    rest = [c for c in columns if c not in first]
    if rest:
        more = _conform(
            parquet.read_row_groups(groups, columns=[c for c in rest if c in present]), rest
        )
        read += _bytes_of(metadata, groups, rest)
        for name in rest:
            table = table.append_column(more.schema.field(name), more[name])
    if len(rows) < table.num_rows:  # a file of the query's area often matches whole
        table = table.take(pa.array(rows))
    table = table.select(columns)
    if plan.compiled.residual:
        table = table.filter(plan.compiled.residual_mask(list(table_to_items(table))))
    return table, (metadata.num_row_groups, len(groups), read, scanned)


def _conform(table: pa.Table, columns: list[str]) -> pa.Table:
    """The table with exactly ``columns`` in the warehouse types (absent ones null)."""
    if table.column_names == columns and all(
        table.schema.field(name).type == ITEM_SCHEMA.field(name).type for name in columns
    ):
        return table  # our own files: already in the warehouse schema
    arrays = []
    for name in columns:
        field_ = ITEM_SCHEMA.field(name)
        if name in table.column_names:
            column = table[name]
            arrays.append(column if column.type == field_.type else column.cast(field_.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field_.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema([ITEM_SCHEMA.field(c) for c in columns]))


def _bytes_of(metadata: pq.FileMetaData, groups: list[int], columns: list[str]) -> int:
    """Compressed bytes of the column chunks of ``columns`` in ``groups`` (for explain)."""
    wanted = set(columns)
    leaves = [
        c
        for c in range(metadata.num_columns)
        if metadata.schema.column(c).path.split(".", 1)[0] in wanted
    ]
    return sum(
        metadata.row_group(g).column(c).total_compressed_size for g in groups for c in leaves
    )


def matching_rows(plan: Plan, table: pa.Table) -> np.ndarray:
    """Indexes of the rows of ``table`` that pass every filter but the residual CQL2
    conjuncts (see the module doc)."""
    params = plan.params
    if table.num_rows == 0:
        return np.zeros(0, dtype=np.int64)
    mask = plan.compiled.mask(table)
    if params.ids:
        mask = pc.and_(mask, pc.is_in(table["id"], value_set=pa.array(params.ids, pa.string())))
    if params.collections:
        in_collections = pc.is_in(
            table["collection"], value_set=pa.array(params.collections, pa.string())
        )
        mask = pc.and_(mask, pc.fill_null(in_collections, False))
    if params.has_time:
        mask = pc.and_(mask, time_mask(table, params.start, params.end))
    keep = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
    if params.geometry is not None and keep.any():
        rows = np.flatnonzero(keep)
        boxes = plan.boxes if plan.boxes is not None else geo.query_boxes(params.geometry)
        bbox = table["bbox"].combine_chunks().take(pa.array(rows))
        near = geo.bbox_candidates(bbox, boxes)
        rows, bbox = rows[near], bbox.filter(pa.array(near))
        wkb = table["geometry"].combine_chunks().take(pa.array(rows))
        exact = geo.intersects(wkb, bbox, params.geometry)
        return rows[exact]
    return np.flatnonzero(keep)


def time_mask(table: pa.Table, start: dt.datetime | None, end: dt.datetime | None) -> pa.Array:
    """STAC datetime semantics, vectorized: ranged items overlap ``[start, end]``; others
    have their ``datetime`` in it. Open ends are ``None``."""
    lo = pa.scalar(start, TIMESTAMP) if start is not None else None
    hi = pa.scalar(end, TIMESTAMP) if end is not None else None
    n = table.num_rows
    point = pa.array([True] * n, pa.bool_())
    span = pa.array([True] * n, pa.bool_())
    if lo is not None:
        point = pc.and_kleene(point, pc.greater_equal(table["datetime"], lo))
        span = pc.and_kleene(span, pc.greater_equal(table["end_datetime"], lo))
    if hi is not None:
        point = pc.and_kleene(point, pc.less_equal(table["datetime"], hi))
        span = pc.and_kleene(span, pc.less_equal(table["start_datetime"], hi))
    ranged = pc.and_(pc.is_valid(table["start_datetime"]), pc.is_valid(table["end_datetime"]))
    result = pc.if_else(ranged, span, point)
    result = pc.fill_null(result, False)
    return result.combine_chunks() if isinstance(result, pa.ChunkedArray) else result


def unique_ids_rows(table: pa.Table) -> pa.Array:
    """The row of each item id's first occurrence, in table order (a group-by on ``id``)."""
    if table.num_rows == 0:
        return pa.array([], pa.int64())
    indexed = pa.table({"id": table["id"], "_row": pa.array(np.arange(table.num_rows))})
    first = indexed.group_by("id", use_threads=False).aggregate([("_row", "min")])
    return first["_row_min"].take(pc.sort_indices(first["_row_min"])).combine_chunks()


def unique_ids(table: pa.Table) -> pa.Table:
    """One row per item id (the first), vectorized: a group-by on ``id``."""
    return table if table.num_rows == 0 else table.take(unique_ids_rows(table))


def _sort_keys(sortby: Sequence[tuple[str, bool]]) -> list[str]:
    """The columns the sort reads, each once (``id`` last when not a key already)."""
    return list(dict.fromkeys([*(name for name, _asc in sortby), "id"]))


def sort_indices(table: pa.Table, sortby: Sequence[tuple[str, bool]]) -> pa.Array:
    """The permutation putting ``table`` in ``sortby`` order, ``id`` last so the order is
    total (stable paging)."""
    keys = [(name, "ascending" if asc else "descending") for name, asc in sortby]
    if not any(name == "id" for name, _ in keys):
        keys.append(("id", "ascending"))
    return pc.sort_indices(table, sort_keys=keys)


def sort_rows(table: pa.Table, sortby: Sequence[tuple[str, bool]]) -> pa.Table:
    """Rows in ``sortby`` order, ``id`` last so the order is total (stable paging)."""
    return table if table.num_rows == 0 else table.take(sort_indices(table, sortby))
