"""The brute-force oracle of the search tests, and the catalog they search.

The oracle reads every source item and decides each query with shapely directly on the
footprint as GeoJSON describes it (the test helpers' own planar reading of antimeridian
and polar rings, independent of the code under test), and the STAC datetime rules in
plain Python.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import shapely
from shapely.geometry import shape

from earthcatalog_dagster import ingest
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core.items import parse_items, table_to_items
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2
from earthcatalog_dagster_tests.helpers import planar_region, ring_of, write_day

# --- the oracle ---------------------------------------------------------------------------


def area_of(geometry: dict[str, Any] | None) -> shapely.Geometry | None:
    if geometry is None:
        return None
    if geometry["type"] == "Polygon":
        return planar_region(ring_of(geometry))
    if geometry["type"] == "MultiPolygon":
        return shapely.union_all(
            [planar_region([tuple(p) for p in poly[0]]) for poly in geometry["coordinates"]]
        )
    return shape(geometry)


def parse_time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def in_time(item: dict[str, Any], start: dt.datetime | None, end: dt.datetime | None) -> bool:
    """STAC datetime semantics, in plain Python."""
    p = item["properties"]
    lo, hi = parse_time(p.get("start_datetime")), parse_time(p.get("end_datetime"))
    if lo is not None and hi is not None:
        return (end is None or lo <= end) and (start is None or hi >= start)
    t = parse_time(p.get("datetime"))
    return t is not None and (start is None or t >= start) and (end is None or t <= end)


class Catalog:
    """The ingested catalog, its settings, its snapshots and the expected items."""

    def __init__(self, settings: Settings, items: list[dict[str, Any]], first: int, last: int):
        self.settings = settings
        self.source = {i["id"]: i for i in items}
        # What the lossless round trip guarantees for each source item (numbers written
        # as strings come back as numbers; everything else as written).
        parsed = parse_items([orjson.dumps(i) for i in items], [i["id"] for i in items])
        self.expected = {i["id"]: i for i in table_to_items(parsed.table)}
        self.areas = {i["id"]: area_of(i["geometry"]) for i in items}
        self.first_snapshot, self.last_snapshot = first, last

    def ids(self, *, geometry=None, start=None, end=None, where=None) -> set[str]:
        out = set()
        for key, item in self.expected.items():
            if geometry is not None:
                area = self.areas[key]
                if area is None or not area.intersects(geometry):
                    continue
            if (start is not None or end is not None) and not in_time(item, start, end):
                continue
            if where is not None and not where(item["properties"]):
                continue
            out.add(key)
        return out


def build_catalog(settings: Settings) -> Catalog:
    day1, manifest1 = write_day(settings, DAY_1, 240, seed=11)
    first = ingest(manifest1, settings=settings, h3_resolution=1)
    day2, manifest2 = write_day(settings, DAY_2, 160, seed=12)
    last = ingest(manifest2, settings=settings)
    return Catalog(settings, day1.items + day2.items, first.snapshot_id, last.snapshot_id)
