"""The answer of a search: rows read once, on first use, and offered in every shape.

A :class:`SearchResult` holds the plan; the files are read on the first call that needs
rows (``count()`` alone reads only the filter columns). ``items()`` gives the STAC items
exactly as ingested (:func:`~earthcatalog_dagster.core.items.table_to_items`, the lossless
round trip), ``to_arrow()`` the stac-geoparquet rows with their GeoParquet metadata,
``to_geopandas()`` a GeoDataFrame, ``pages(size)`` the items in pages, and ``explain()``
what was planned and read.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from earthcatalog_dagster.core.geoparquet import geo_metadata, stac_metadata
from earthcatalog_dagster.core.items import table_to_items
from earthcatalog_dagster.core.schema import PROPERTY_NAMES
from earthcatalog_dagster.query.execute import ExecutionStats, execute
from earthcatalog_dagster.query.params import Fields
from earthcatalog_dagster.query.plan import Plan

#: Always returned, whatever ``fields`` says: an item without them is not a Feature.
ALWAYS = ("type", "id")


@dataclass(frozen=True)
class Explain:
    """What a search planned, pruned and read (``str()`` renders it for people)."""

    snapshot_id: int | None
    snapshot_time: str | None
    resolution: int
    cells: list[str] | None
    years: list[int] | None
    row_filter: str
    files_in_table: int
    bytes_in_table: int
    files_planned: int
    bytes_planned: int
    files_read: int
    files_skipped_by_statistics: int
    row_groups_planned: int
    row_groups_read: int
    bytes_read: int
    rows_scanned: int
    rows_matched: int
    duplicates_removed: int
    items: int
    planning_seconds: float
    reading_seconds: float
    vectorized_filter_conjuncts: int
    residual_filter_conjuncts: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __str__(self) -> str:
        cells = (
            "all (no spatial constraint or a very large area)"
            if self.cells is None
            else (
                f"{len(self.cells)}: {', '.join(self.cells[:12])}"
                + (" ..." if len(self.cells) > 12 else "")
            )
        )
        years = (
            "all (open interval or none)"
            if self.years is None
            else (
                f"{self.years[0]}–{self.years[-1]}" if len(self.years) > 1 else str(self.years[0])
            )
        )
        lines = [
            f"snapshot          {self.snapshot_id} ({self.snapshot_time})",
            f"H3 resolution     {self.resolution}",
            f"cells             {cells}",
            f"years             {years} (items whose start/end range overlaps the interval"
            " are found through their statistics too)",
            f"scan filter       {self.row_filter}",
            f"files in table    {self.files_in_table} ({_size(self.bytes_in_table)})",
            f"files planned     {self.files_planned} ({_size(self.bytes_planned)})",
            f"files skipped     {self.files_skipped_by_statistics} by bbox statistics "
            f"(row groups read {self.row_groups_read} of {self.row_groups_planned})",
            f"bytes read        {_size(self.bytes_read)} (column chunks)",
            f"rows scanned      {self.rows_scanned}, matched {self.rows_matched}, "
            f"duplicates removed {self.duplicates_removed}, items {self.items}",
            f"CQL2 conjuncts    {self.vectorized_filter_conjuncts} vectorized, "
            f"{self.residual_filter_conjuncts} by cql2's evaluator",
            f"time              planning {self.planning_seconds:.3f} s, "
            f"reading {self.reading_seconds:.3f} s",
        ]
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class SearchResult:
    """The items a search matched, from one snapshot, each once (see the module doc)."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._table: pa.Table | None = None
        self._stats: ExecutionStats | None = None
        self._count: int | None = None

    # --- reading ---------------------------------------------------------------------------

    def _rows(self) -> pa.Table:
        if self._table is None:
            self._table, self._stats = execute(self.plan)
            self._count = self._table.num_rows
        return self._table

    def read(self) -> SearchResult:
        """Read the matching rows now (every later call uses them); returns ``self``."""
        self._rows()
        return self

    def count(self) -> int:
        """How many items matched (after ``limit``); reads only the filter columns."""
        if self._count is None:
            table, stats = execute(self.plan, output=())
            self._count = table.num_rows
            self._stats = self._stats or stats
        return self._count

    def __len__(self) -> int:
        return self.count()

    # --- shapes ----------------------------------------------------------------------------

    def to_arrow(self) -> pa.Table:
        """The rows as stac-geoparquet columns (no ``grid_partition``), with the GeoParquet
        ``geo`` and ``stac-geoparquet`` schema metadata; ``fields`` selects columns."""
        table = self._rows()
        columns = arrow_columns(table.column_names, self.plan.params.fields)
        table = table.select(columns)
        metadata = {}
        if "geometry" in columns and "bbox" in columns:
            metadata[b"geo"] = json.dumps(geo_metadata(table)).encode()
        if "collection" in columns:
            metadata[b"stac-geoparquet"] = json.dumps(stac_metadata(table)).encode()
        return table.replace_schema_metadata(metadata or None)

    def to_geopandas(self) -> Any:
        """A ``geopandas.GeoDataFrame`` (CRS OGC:CRS84) of :meth:`to_arrow`."""
        import geopandas
        import shapely

        table = self.to_arrow()
        if "geometry" not in table.column_names:
            return table.to_pandas()
        frame = table.drop_columns(["geometry"]).to_pandas()
        geometry = shapely.from_wkb(table["geometry"].to_numpy(zero_copy_only=False))
        return geopandas.GeoDataFrame(frame, geometry=geometry, crs="OGC:CRS84")

    def items(self) -> Iterator[dict[str, Any]]:
        """The STAC items, exactly as ingested (then reduced by ``fields``), in order."""
        fields = self.plan.params.fields
        for item in table_to_items(self._rows()):
            yield apply_fields(item, fields) if fields else item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.items()

    def pages(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The items in lists of ``size`` (the last may be shorter)."""
        if size < 1:
            raise ValueError(f"page size must be positive, got {size}")
        table = self._rows()
        fields = self.plan.params.fields
        for offset in range(0, table.num_rows, size):
            page = list(table_to_items(table.slice(offset, size)))
            yield [apply_fields(i, fields) for i in page] if fields else page

    def page(self, offset: int, size: int) -> list[dict[str, Any]]:
        """The items ``offset .. offset + size`` (what a STAC API page serves)."""
        table = self._rows().slice(offset, size)
        fields = self.plan.params.fields
        items = list(table_to_items(table))
        return [apply_fields(i, fields) for i in items] if fields else items

    def explain(self) -> Explain:
        """What was planned and read: cells, years, files and bytes planned, files skipped
        by statistics, the snapshot (reads the filter columns if nothing was read yet)."""
        if self._stats is None:
            self.count()
        stats = self._stats or ExecutionStats()
        plan = self.plan
        return Explain(
            snapshot_id=plan.snapshot_id,
            snapshot_time=plan.snapshot_time.isoformat() if plan.snapshot_time else None,
            resolution=plan.resolution,
            cells=plan.cells,
            years=plan.years,
            row_filter=plan.row_filter,
            files_in_table=plan.files_in_table,
            bytes_in_table=plan.bytes_in_table,
            files_planned=len(plan.files),
            bytes_planned=plan.bytes_planned,
            files_read=stats.files_read,
            files_skipped_by_statistics=stats.files_skipped,
            row_groups_planned=stats.row_groups_total,
            row_groups_read=stats.row_groups_read,
            bytes_read=stats.bytes_read,
            rows_scanned=stats.rows_scanned,
            rows_matched=stats.rows_matched,
            duplicates_removed=stats.duplicates_removed,
            items=self._count if self._count is not None else 0,
            planning_seconds=plan.seconds,
            reading_seconds=stats.seconds,
            vectorized_filter_conjuncts=len(plan.compiled.vectorized),
            residual_filter_conjuncts=len(plan.compiled.residual),
        )

    def __repr__(self) -> str:
        done = f"{self._count} items" if self._count is not None else "not read yet"
        return f"SearchResult({len(self.plan.files)} files planned, {done})"


# --- fields ------------------------------------------------------------------------------------


def arrow_columns(available: list[str], fields: Fields) -> list[str]:
    """The columns ``fields`` keeps (``properties.x`` is column ``x``; ``properties``: all
    property columns); ``id`` always."""
    if not fields:
        return list(available)

    def columns_of(path: str) -> set[str]:
        if path == "properties":
            return set(PROPERTY_NAMES) | {"stac_extra"}
        head = path.removeprefix("properties.").split(".", 1)[0]
        return {head}

    keep = set(available)
    if fields.include:
        keep = {"id", "type"}
        for path in fields.include:
            keep |= columns_of(path)
    for path in fields.exclude - fields.include:
        keep -= columns_of(path) - {"id"}
    return [c for c in available if c in keep]


def apply_fields(item: dict[str, Any], fields: Fields) -> dict[str, Any]:
    """The Fields extension on one item: keep the ``include`` paths (and ``type``, ``id``),
    then drop the ``exclude`` paths not also included."""
    if fields.include:
        out: dict[str, Any] = {k: item[k] for k in ALWAYS if k in item}
        for path in sorted(fields.include):
            _copy_path(item, out, path.split("."))
    else:
        out = copy.deepcopy(item)
    for path in fields.exclude - fields.include:
        if path not in ALWAYS:
            _drop_path(out, path.split("."))
    return out


def _copy_path(source: dict[str, Any], target: dict[str, Any], parts: list[str]) -> None:
    head = parts[0]
    if head not in source:
        return
    if len(parts) == 1 or not isinstance(source[head], dict):
        target[head] = copy.deepcopy(source[head])
        return
    child = target.setdefault(head, {})
    if isinstance(child, dict):
        _copy_path(source[head], child, parts[1:])


def _drop_path(target: dict[str, Any], parts: list[str]) -> None:
    head = parts[0]
    if head not in target:
        return
    if len(parts) == 1:
        del target[head]
    elif isinstance(target[head], dict):
        _drop_path(target[head], parts[1:])
