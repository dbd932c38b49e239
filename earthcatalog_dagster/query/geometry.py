"""Exact spatial tests of warehouse rows against a query geometry (shapely on the WKB).

Geometries are compared in (lon, lat), edges straight, the way GeoJSON and the fan-out
(:mod:`~earthcatalog_dagster.core.partitioning`) read them. Most footprints are ordinary
polygons and are tested as stored, all at once (``shapely.intersects`` over the decoded
column). A footprint stored across the antimeridian (a jump 179.2 → -179.4, or written
past ±180) or winding round a pole is first turned into the area it stands for — cut at
±180 and folded home, or the cap between the ring and the pole — with the very helpers the
fan-out uses, so a search reads a footprint exactly as the partitioning placed it. Those
rows are recognised from their bbox column (vectorized) and repaired one by one: they
are rare, and the repair is shapely work per ring.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from earthcatalog_dagster.core.partitioning import (  # the fan-out's own ring handling
    _cap_geometry,
    _open_ring,
    _positions,
    _split_polygon,
    _unwrap,
)


def bbox_candidates(bbox: pa.Array, boxes: np.ndarray) -> np.ndarray:
    """Rows whose stored bbox meets one of ``boxes`` (``(n, 4)`` west, south, east, north
    with west ≤ east): a cheap superset of the exact answer. Null bboxes never match."""
    if isinstance(bbox, pa.ChunkedArray):
        bbox = bbox.combine_chunks()
    n = len(bbox)
    if n == 0:
        return np.zeros(0, dtype=bool)
    xmin, ymin, xmax, ymax = (
        pc.struct_field(bbox, axis).to_numpy(zero_copy_only=False)
        for axis in ("xmin", "ymin", "xmax", "ymax")
    )
    present = ~np.asarray(bbox.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    odd = _needs_repair(xmin, xmax)
    out = np.zeros(n, dtype=bool)
    for west, south, east, north in boxes:
        lat = (ymax >= south) & (ymin <= north)
        plain = (xmax >= west) & (xmin <= east)
        out |= lat & (plain | odd)  # repaired rows: longitude decided exactly later
    return out & present


def _needs_repair(xmin: np.ndarray, xmax: np.ndarray) -> np.ndarray:
    """Rows whose footprint may cross ±180 or wind round a pole (see the module doc)."""
    with np.errstate(invalid="ignore"):
        return (xmin > xmax) | (xmax - xmin > 180.0) | (xmin < -180.0) | (xmax > 180.0)


def intersects(wkb: pa.Array, bbox: pa.Array, query: shapely.Geometry) -> np.ndarray:
    """Exactly which rows' geometries intersect ``query`` (null geometry: never)."""
    if isinstance(wkb, pa.ChunkedArray):
        wkb = wkb.combine_chunks()
    if isinstance(bbox, pa.ChunkedArray):
        bbox = bbox.combine_chunks()
    if len(wkb) == 0:
        return np.zeros(0, dtype=bool)
    geometries = shapely.from_wkb(wkb.to_numpy(zero_copy_only=False))
    xmin = bbox.field("xmin").to_numpy(zero_copy_only=False)
    xmax = bbox.field("xmax").to_numpy(zero_copy_only=False)
    odd = np.flatnonzero(_needs_repair(xmin, xmax))
    for row in odd.tolist():
        if geometries[row] is not None:
            geometries[row] = planar_area(geometries[row])
    shapely.prepare(query)
    result = shapely.intersects(query, geometries)
    return np.asarray(result, dtype=bool) & ~shapely.is_missing(geometries)


def planar_area(geometry: shapely.Geometry) -> shapely.Geometry:
    """The lon/lat area a stored footprint stands for, inside [-180, 180] × [-90, 90]."""
    pieces = []
    for part in shapely.get_parts(geometry):
        if isinstance(part, shapely.Polygon):
            pieces.append(_polygon_area(part))
        else:  # points and lines: positions brought home
            pieces.append(
                shapely.transform(
                    part, lambda xy: np.column_stack([(xy[:, 0] + 180.0) % 360.0 - 180.0, xy[:, 1]])
                )
            )
    return shapely.union_all([p for p in pieces if p is not None and not p.is_empty])


def _polygon_area(polygon: shapely.Polygon) -> shapely.Geometry:
    exterior = _open_ring(_positions(polygon.exterior.coords))
    if len(exterior) < 3:
        return shapely.MultiPoint(exterior)
    holes = [
        ring
        for ring in (_open_ring(_positions(r.coords)) for r in polygon.interiors)
        if len(ring) >= 3
    ]
    unwrapped, winding = _unwrap(exterior)
    if winding:
        lats = [lat for _lon, lat in exterior]
        pole = 90.0 if sum(lats) >= 0.0 else -90.0
        return _cap_geometry(unwrapped, lats, winding, pole)
    return _split_polygon(exterior, unwrapped, holes)


def query_boxes(query: shapely.Geometry) -> np.ndarray:
    """The bounds of each part of the query geometry, ``(n, 4)``: the pruning boxes."""
    parts = shapely.get_parts(query)
    return np.asarray(shapely.bounds(parts), dtype=float).reshape(-1, 4)
