"""STAC Collections of the catalog, with extents computed cheaply from the table's metadata.

Per snapshot (and cached by the server for it): the data files of the snapshot with their
partition (H3 cell) and column statistics (``datetime``, ``start_datetime``,
``end_datetime`` bounds) from the manifests, and the collections each file holds from its
``stac-geoparquet`` footer metadata (footers are read in parallel; no row is read). Then
per collection:

* spatial extent: the bounds of the union of its files' H3 cells. Every item is stored in
  every cell it overlaps, so the cells cover every footprint: the extent is never too
  small (it may be up to a cell wider than the footprints). Cells across the antimeridian
  widen it to the whole longitude range;
* temporal extent: the earliest ``start_datetime``/``datetime`` lower bound and the latest
  ``end_datetime``/``datetime`` upper bound;
* the item count: the unique ids of the hash index when the catalog holds one collection
  (``earthcatalog:items``), and the stored rows (an item is one row per cell it overlaps,
  ``earthcatalog:rows``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import h3
import pyarrow.parquet as pq
from pyiceberg.table import Table

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.layout import NO_CELL

FOOTER_WORKERS = 16
ITSLIVE_DESCRIPTION = (
    "ITS_LIVE (NASA MEaSUREs Inter-mission Time Series of Land Ice Velocity and Elevation) "
    "glacier velocity image pairs, one STAC item per granule."
)


@dataclass
class CollectionSummary:
    """One collection's extent and counts (see the module doc)."""

    id: str
    bbox: list[float]
    start: dt.datetime | None
    end: dt.datetime | None
    rows: int
    files: int
    items: int | None = None

    def to_stac(self, base_url: str) -> dict[str, Any]:
        """The STAC Collection document, with its API links."""
        end = self.end
        if end is not None and end.microsecond:  # whole seconds, rounded outwards
            end = end.replace(microsecond=0) + dt.timedelta(seconds=1)
        collection: dict[str, Any] = {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": self.id,
            "title": self.id,
            "description": ITSLIVE_DESCRIPTION if "itslive" in self.id else self.id,
            "license": "proprietary" if "itslive" not in self.id else "CC-BY-4.0",
            "extent": {
                "spatial": {"bbox": [self.bbox]},
                "temporal": {"interval": [[_stamp(self.start), _stamp(end)]]},
            },
            "earthcatalog:rows": self.rows,
            "earthcatalog:files": self.files,
            "links": [
                {
                    "rel": "self",
                    "type": "application/json",
                    "href": f"{base_url}/collections/{self.id}",
                },
                {"rel": "parent", "type": "application/json", "href": f"{base_url}/"},
                {"rel": "root", "type": "application/json", "href": f"{base_url}/"},
                {
                    "rel": "items",
                    "type": "application/geo+json",
                    "href": f"{base_url}/collections/{self.id}/items",
                },
            ],
        }
        if self.items is not None:
            collection["earthcatalog:items"] = self.items
        return collection


def summarize_collections(
    table: Table, snapshot_id: int | None, hash_index: str | None = None
) -> dict[str, CollectionSummary]:
    """The collections of one snapshot of ``table`` (see the module doc)."""
    if snapshot_id is None:
        return {}
    files = table.inspect.files(snapshot_id=snapshot_id).to_pylist()
    with ThreadPoolExecutor(max_workers=FOOTER_WORKERS) as pool:
        names = list(pool.map(_collections_of, (f["file_path"] for f in files)))
    by_collection: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for file, collections in zip(files, names, strict=True):
        for name in collections:
            by_collection[name].append(file)
    summaries = {name: _summary(name, members) for name, members in by_collection.items()}
    if len(summaries) == 1 and hash_index and storage.exists(hash_index):
        from earthcatalog_dagster.core.hash_index import load_hash_index

        next(iter(summaries.values())).items = len(load_hash_index(hash_index))
    return summaries


def _collections_of(path: str) -> list[str]:
    with storage.open_input(path) as stream:
        metadata = pq.read_metadata(stream).metadata or {}
    raw = metadata.get(b"stac-geoparquet")
    try:
        return sorted(json.loads(raw)["collections"]) if raw else []
    except (ValueError, KeyError, TypeError):
        return []


def _summary(name: str, files: list[dict[str, Any]]) -> CollectionSummary:
    cells = {f["partition"]["grid_partition"] for f in files} - {NO_CELL, None}
    starts, ends = [], []
    for f in files:
        metrics = f.get("readable_metrics") or {}
        for column in ("start_datetime", "datetime"):
            low = (metrics.get(column) or {}).get("lower_bound")
            if low is not None:
                starts.append(low)
        for column in ("end_datetime", "datetime"):
            high = (metrics.get(column) or {}).get("upper_bound")
            if high is not None:
                ends.append(high)
    return CollectionSummary(
        id=name,
        bbox=cells_bbox(cells),
        start=_utc(min(starts)) if starts else None,
        end=_utc(max(ends)) if ends else None,
        rows=sum(int(f["record_count"]) for f in files),
        files=len(files),
    )


def _stamp(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def cells_bbox(cells: set[str]) -> list[float]:
    """``[west, south, east, north]`` of the union of H3 cells (whole world if none)."""
    if not cells:
        return [-180.0, -90.0, 180.0, 90.0]
    west = south = 1e9
    east = north = -1e9
    wraps = False
    for cell in cells:
        boundary = h3.cell_to_boundary(cell)
        lats = [lat for lat, _lon in boundary]
        lons = [lon for _lat, lon in boundary]
        if max(lons) - min(lons) > 180.0:
            wraps = True
        if cell == h3.latlng_to_cell(90.0, 0.0, h3.get_resolution(cell)):
            north = 90.0
        if cell == h3.latlng_to_cell(-90.0, 0.0, h3.get_resolution(cell)):
            south = -90.0
        west, east = min(west, *lons), max(east, *lons)
        south, north = min(south, *lats), max(north, *lats)
    if wraps:
        west, east = -180.0, 180.0
    return [west, max(south, -90.0), east, min(north, 90.0)]
