"""Search planning: which files (and which row groups of them) a search must read.

Three prunings, each inclusive (it may keep a file that holds no match, never drop one
that does); exactness comes from the row-level pass in :mod:`.execute`:

1. **Cells** — the H3 cells the query geometry overlaps, at the table's resolution
   (``earthcatalog.grid.resolution``), computed by the fan-out itself
   (:func:`~earthcatalog_dagster.core.partitioning.cells_for_geometry`: overlap semantics,
   boundary cells, antimeridian and poles). Every item is stored once per cell it
   overlaps, so an item meeting the query sits in a cell of the query's cover.
2. **Time** — STAC semantics: an item with ``start_datetime``/``end_datetime`` matches an
   interval that overlaps its own, else its ``datetime`` must fall in the interval. The
   partition is ``year(datetime)``, but a pair's range can reach into neighbouring years,
   so the scan's filter is ``datetime ∈ [a, b] OR (start ≤ b AND end ≥ a)``: PyIceberg
   prunes files on the column statistics of all three (``full`` metrics in the table).
   Plus the simple comparisons of a CQL2 filter and ``ids`` (statistics of ``id``).
   One snapshot (the current one or ``as_of``); each of its manifests is decoded once (kept
   in the process and in an on-disk cache) into a column-wise file index (:mod:`.files`)
   that applies the same inclusive tests as PyIceberg's scan, vectorized (PyIceberg's
   ``plan_files`` for tables with delete files).
3. **Row groups** — in the worker that reads a file (:func:`row_groups_to_read`): the file
   bbox of its GeoParquet ``geo`` metadata and the Parquet statistics of the
   ``bbox.xmin/ymin/xmax/ymax`` covering columns, per row group. (Iceberg keeps no
   statistics for these nested fields, so this pruning happens on the footers.)
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import shapely
from pyiceberg.expressions import (
    AlwaysTrue,
    And,
    BooleanExpression,
    GreaterThanOrEqual,
    In,
    LessThanOrEqual,
    Or,
)
from pyiceberg.table import Table

from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core.partitioning import cells_for_geometry
from earthcatalog_dagster.layout import NO_CELL
from earthcatalog_dagster.query.files import HasDeletes, file_index
from earthcatalog_dagster.query.filters import CompiledFilter, compile_filter, iceberg_pushdown
from earthcatalog_dagster.query.geometry import query_boxes
from earthcatalog_dagster.query.params import QueryError, SearchParams

#: A query area wider than this many square degrees scans every cell: its cover would list
#: most of the grid, and computing it costs more than it prunes.
WHOLE_GRID_AREA = 180.0 * 90.0
#: Longest edge of a query polygon handed to the cover (longer ones are split).
MAX_EDGE_DEGREES = 10.0


@dataclass(frozen=True)
class PlannedFile:
    """One data file the scan kept, with what the manifest says of it."""

    path: str
    size: int
    records: int
    cell: str | None
    year: int | None


@dataclass
class Plan:
    """A search's plan: the snapshot, the prunings and the files to read."""

    params: SearchParams
    snapshot_id: int | None
    snapshot_time: dt.datetime | None
    resolution: int
    cells: list[str] | None
    years: list[int] | None
    row_filter: str
    files: list[PlannedFile]
    files_in_table: int
    bytes_in_table: int
    rows_in_table: int
    compiled: CompiledFilter
    io: Any
    seconds: float = 0.0
    boxes: np.ndarray | None = field(default=None, repr=False)

    @property
    def bytes_planned(self) -> int:
        return sum(f.size for f in self.files)


def resolve_snapshot(table: Table, as_of: int | str | dt.datetime | None) -> Any:
    """The snapshot to read: the current one, a snapshot id, or the one current at a time
    (a datetime, an RFC 3339 string or epoch milliseconds)."""
    if as_of is None:
        return table.current_snapshot()
    if isinstance(as_of, int) and not isinstance(as_of, bool):
        snapshot = table.snapshot_by_id(as_of)
        if snapshot is not None:
            return snapshot
        timestamp_ms = as_of
    else:
        if isinstance(as_of, str):
            text = as_of.strip()
            if text.lstrip("-").isdigit():
                return resolve_snapshot(table, int(text))
            try:
                as_of = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise QueryError(f"as_of is not a snapshot id nor a datetime: {text!r}") from None
        if not isinstance(as_of, dt.datetime):
            raise QueryError(f"as_of must be a snapshot id or a datetime, not {as_of!r}")
        if as_of.tzinfo is None:
            as_of = as_of.replace(tzinfo=dt.UTC)
        timestamp_ms = int(as_of.timestamp() * 1000)
    snapshot = table.snapshot_as_of_timestamp(timestamp_ms)
    if snapshot is None:
        raise QueryError(f"no snapshot of the table is as old as {as_of!r}")
    return snapshot


def cover(geometry: shapely.Geometry, resolution: int) -> list[str] | None:
    """The H3 cells the query overlaps (``None``: too large to be worth a cover)."""
    if shapely.area(shapely.envelope(geometry)) > WHOLE_GRID_AREA:
        return None
    # No edge may span 180° of longitude or more: the fan-out takes each step the short way
    # round, so the edge -180 → 180 of a world-wide box would be read as no step at all.
    dense = shapely.segmentize(geometry, MAX_EDGE_DEGREES)
    cells = cells_for_geometry(shapely.geometry.mapping(dense), resolution)
    return [c for c in cells if c != NO_CELL]


def time_filter(start: dt.datetime | None, end: dt.datetime | None) -> BooleanExpression:
    """``datetime ∈ [start, end] OR (start_datetime ≤ end AND end_datetime ≥ start)``."""
    point: BooleanExpression = AlwaysTrue()
    span: BooleanExpression = AlwaysTrue()
    if start is not None:
        point = And(point, GreaterThanOrEqual("datetime", start.isoformat()))
        span = And(span, GreaterThanOrEqual("end_datetime", start.isoformat()))
    if end is not None:
        point = And(point, LessThanOrEqual("datetime", end.isoformat()))
        span = And(span, LessThanOrEqual("start_datetime", end.isoformat()))
    return Or(point, span)


def plan_search(
    table: Table, params: SearchParams, *, as_of: int | str | dt.datetime | None = None
) -> Plan:
    """Plan ``params`` on ``table`` (see the module doc)."""
    started = time.perf_counter()
    snapshot = resolve_snapshot(table, as_of)
    resolution = iceberg.table_resolution(table)
    compiled = compile_filter(params.filter)
    cells = cover(params.geometry, resolution) if params.geometry is not None else None
    years = None
    if params.start is not None and params.end is not None:
        years = list(range(params.start.year, params.end.year + 1))

    row_filter: BooleanExpression = AlwaysTrue()
    if cells is not None:
        row_filter = And(row_filter, In("grid_partition", cells))
    if params.has_time:
        row_filter = And(row_filter, time_filter(params.start, params.end))
    if params.ids:
        row_filter = And(row_filter, In("id", params.ids))
    row_filter = And(row_filter, iceberg_pushdown(compiled))

    summary = snapshot.summary.additional_properties if snapshot and snapshot.summary else {}
    files: list[PlannedFile] = []
    if snapshot is not None and (cells is None or cells):
        try:
            index = file_index(table, snapshot)
            for i in index.select(
                cells=cells,
                start=params.start,
                end=params.end,
                ids=params.ids,
                comparisons=compiled.pushdown,
            ).tolist():
                year = index.years[i]
                files.append(
                    PlannedFile(
                        index.paths[i],
                        int(index.sizes[i]),
                        int(index.records[i]),
                        index.cells[i],
                        None if year != year else int(year),
                    )
                )
        except HasDeletes:  # not one of our tables: PyIceberg plans (and applies deletes)
            scan = table.scan(row_filter=row_filter, snapshot_id=snapshot.snapshot_id)
            for task in scan.plan_files():
                data = task.file
                cell, year = _partition(data.partition)
                files.append(
                    PlannedFile(
                        data.file_path, data.file_size_in_bytes, data.record_count, cell, year
                    )
                )
    files.sort(key=lambda f: f.path)
    return Plan(
        params=params,
        snapshot_id=snapshot.snapshot_id if snapshot else None,
        snapshot_time=(
            dt.datetime.fromtimestamp(snapshot.timestamp_ms / 1000, dt.UTC) if snapshot else None
        ),
        resolution=resolution,
        cells=cells,
        years=years,
        row_filter=str(row_filter),
        files=files,
        files_in_table=int(summary.get("total-data-files", 0)),
        bytes_in_table=int(summary.get("total-files-size", 0)),
        rows_in_table=int(summary.get("total-records", 0)),
        compiled=compiled,
        io=table.io,
        seconds=time.perf_counter() - started,
        boxes=query_boxes(params.geometry) if params.geometry is not None else None,
    )


def _partition(record: Any) -> tuple[str | None, int | None]:
    try:
        cell, year = record[0], record[1]
    except (IndexError, TypeError):
        return None, None
    return cell, (1970 + year if year is not None else None)


# --- row groups -----------------------------------------------------------------------------

_AXES = ("xmin", "ymin", "xmax", "ymax")


def row_groups_to_read(metadata: pq.FileMetaData, boxes: np.ndarray | None) -> list[int]:
    """The row groups of a file that may hold a row meeting one of ``boxes``.

    The file's ``geo`` bbox (RFC 7946: west > east across ±180) rules out whole files;
    the per-row-group statistics of the bbox covering columns rule out row groups. A
    longitude test is made only where no row can cross the antimeridian or wind round a
    pole (file bbox with west ≤ east and narrower than 180°); latitude always.
    """
    groups = list(range(metadata.num_row_groups))
    if boxes is None or not groups:
        return groups
    file_bbox = _geo_bbox(metadata)
    plain_file = False
    if file_bbox is not None:
        west, south, east, north = file_bbox
        plain_file = -180.0 <= west <= east <= 180.0 and east - west <= 180.0
        if not any(_meets(west, south, east, north, q, lon=plain_file) for q in boxes):
            return []
    columns = _covering_columns(metadata)
    if columns is None:
        return groups
    kept = []
    for index in groups:
        group = metadata.row_group(index)
        stats = [group.column(columns[axis]).statistics for axis in _AXES]
        if any(s is None or not s.has_min_max for s in stats):
            kept.append(index)
            continue
        west, south, east, north = stats[0].min, stats[1].min, stats[2].max, stats[3].max
        if any(_meets(west, south, east, north, q, lon=plain_file) for q in boxes):
            kept.append(index)
    return kept


def _meets(west: float, south: float, east: float, north: float, q: Any, *, lon: bool) -> bool:
    q_west, q_south, q_east, q_north = q
    if north < q_south or south > q_north:
        return False
    return not lon or (east >= q_west and west <= q_east)


def _geo_bbox(metadata: pq.FileMetaData) -> list[float] | None:
    raw = (metadata.metadata or {}).get(b"geo")
    if not raw:
        return None
    try:
        bbox = json.loads(raw)["columns"]["geometry"].get("bbox")
    except (ValueError, KeyError, TypeError):
        return None
    return [float(v) for v in bbox] if isinstance(bbox, list) and len(bbox) == 4 else None


def _covering_columns(metadata: pq.FileMetaData) -> dict[str, int] | None:
    """Parquet leaf indexes of the covering columns (``bbox.xmin`` ...), or ``None``."""
    if metadata.num_row_groups == 0:
        return None
    group = metadata.row_group(0)
    wanted = {f"bbox.{axis}": axis for axis in _AXES}
    found = {}
    for index in range(group.num_columns):
        path = group.column(index).path_in_schema
        if path in wanted:
            found[wanted[path]] = index
    return found if len(found) == 4 else None
