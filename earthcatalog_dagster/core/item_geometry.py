"""Geometry checks of a batch of rows, vectorized, and the repair of wrong bboxes.

Every non-null geometry is checked once per batch, vectorized over all its coordinates
(shapely on the WKB column), and the item is a
:class:`~earthcatalog_dagster.core.items.Reject` naming the first offending position when

* a coordinate is not finite (NaN, ±inf: JSON bodies cannot hold them, decoded dicts can);
* a latitude lies outside [-90, 90];
* a longitude lies outside [-180, 180] after antimeridian normalisation. The normalisation
  is the fan-out's (:mod:`~earthcatalog_dagster.core.partitioning`): a footprint may cross
  ±180 either with a jump (179.2 → -179.4) or written continuously past it
  (179.2 → 180.6), which the fan-out unwraps. So a longitude beyond ±180 is accepted only as
  such a continuation: within ±360, in a geometry that also has a position inside ±180. A
  geometry entirely beyond ±180 (e.g. projected metres, or 181..182) is rejected.

A ``bbox`` that does not contain the geometry is **recomputed**, not rejected: the geometry
is the item's truth and the bbox a summary of it, so the item is kept, its stored bbox (the
GeoParquet covering that readers prune with) is the recomputed one, and the fix is recorded
in :attr:`~earthcatalog_dagster.core.items.ParsedItems.fixes` (key, the source bbox and the
new one) for the run's report. The item as returned in
:attr:`~earthcatalog_dagster.core.items.ParsedItems.items` (what the staged NDJSON holds)
carries the recomputed bbox too, so such an item reads back with it: the one deliberate
exception to "reads back exactly". Containment follows RFC 7946 (``xmin > xmax`` crosses the
antimeridian; a position may match the bbox shifted by ±360) with 1e-9° of slack for float
noise, and is checked on the positions (edges are straight in lon/lat, so for a bbox that
does not cross the antimeridian that is the geometry). The recomputed bbox is the tightest
in those terms: RFC 7946 style across the antimeridian, and ``[-180, lat, 180, ±90]`` for a
ring that winds round a pole (a cap). The check costs ~5 µs per item (one shapely decode of
the batch's WKB column and NumPy over all positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import shapely

from earthcatalog_dagster.core.item_rules import _BBOX_AXES
from earthcatalog_dagster.core.partitioning import ring_winding
from earthcatalog_dagster.core.schema import BBOX_TYPE

# Degrees a position may lie outside its bbox before the bbox counts as wrong: float noise
# of the ±360 shift only (0.1 mm), far below the 4 decimals ITS_LIVE writes.
_BBOX_SLACK = 1e-9

#: Every position of a batch's geometries as ``(x, y, row)``, as ``shapely.get_coordinates``
#: of the WKB column gives them.
_Positions = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Fix:
    """An item kept after a repair (a recomputed bbox), and what was repaired."""

    key: str
    reason: str


def _check_geometries(
    table: pa.Table,
    keys: list[str],
    items: list[dict[str, Any]],
    bbox_given: list[bool],
    bad: dict[int, str],
    positions: _Positions | None = None,
) -> tuple[pa.Table, list[Fix]]:
    """Reject impossible coordinates (into ``bad``) and recompute wrong bboxes.

    Returns the table with the recomputed bboxes and the fixes; the fixed items in
    ``items`` are replaced by copies carrying the new bbox. See the module doc.
    ``positions``: the coordinates of the geometry column when the caller has them already
    (the fast path), else the column is decoded here.
    """
    column = table["geometry"]
    if column.null_count == len(column):
        return table, []
    if positions is None:
        geometries = _decode_geometries(column, bad)
        coords, owner = shapely.get_coordinates(geometries, return_index=True)
        x, y = coords[:, 0], coords[:, 1]
    else:
        x, y, owner = positions
        geometries = None
    if not len(x):
        return table, []
    n = table.num_rows

    finite = np.isfinite(x) & np.isfinite(y)
    _first_offence(~finite, owner, x, y, bad, "non-finite coordinate")
    _first_offence(np.abs(y) > 90.0, owner, x, y, bad, "latitude outside [-90, 90]")
    inside = np.abs(x) <= 180.0
    has_inside = np.bincount(owner, weights=inside, minlength=n) > 0
    wild = (np.abs(x) > 360.0) | (~inside & ~has_inside[owner])
    _first_offence(
        wild & finite,
        owner,
        x,
        y,
        bad,
        "longitude outside [-180, 180] (beyond it only as a footprint continued across the"
        " antimeridian from inside)",
    )

    given = np.asarray(bbox_given, dtype=bool)
    if not given.any():
        return table, []
    bbox = table["bbox"].combine_chunks()
    xmin, ymin, xmax, ymax = (
        bbox.field(axis).to_numpy(zero_copy_only=False) for axis in _BBOX_AXES
    )
    contained = _in_bbox(x, y, xmin[owner], ymin[owner], xmax[owner], ymax[owner])
    outside = np.bincount(owner, weights=~contained, minlength=n) > 0
    checked = given & outside
    if bad:
        checked[list(bad)] = False
    rows = np.flatnonzero(checked)
    if not len(rows):
        return table, []

    starts = np.searchsorted(owner, rows, side="left")
    ends = np.searchsorted(owner, rows, side="right")
    new_values = [xmin.copy(), ymin.copy(), xmax.copy(), ymax.copy()]
    fixes: list[Fix] = []
    for row, start, end in zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True):
        first = start + int(np.argmin(contained[start:end]))
        old = [float(xmin[row]), float(ymin[row]), float(xmax[row]), float(ymax[row])]
        geometry = (
            geometries[row] if geometries is not None else shapely.from_wkb(column[row].as_py())
        )
        new = _recomputed_bbox(x[start:end], y[start:end], geometry)
        for values, value in zip(new_values, new, strict=True):
            values[row] = value
        items[row] = {**items[row], "bbox": list(new)}
        fixes.append(
            Fix(
                keys[row],
                f"bbox {old} does not contain the geometry (position"
                f" [{float(x[first])!r}, {float(y[first])!r}] lies outside it): recomputed"
                f" from the geometry as {list(new)}",
            )
        )
    fixed = pa.StructArray.from_arrays(
        [pa.array(v, type=pa.float64()) for v in new_values],
        names=list(_BBOX_AXES),
        mask=bbox.is_null(),
    )
    index = table.column_names.index("bbox")
    return table.set_column(index, table.schema.field(index), fixed.cast(BBOX_TYPE)), fixes


def _decode_geometries(column: pa.ChunkedArray, bad: dict[int, str]) -> np.ndarray:
    """The WKB column as shapely geometries; a geometry GEOS cannot build (a polygon ring
    that is not closed or has fewer than 4 positions, RFC 7946 §3.1.6) is recorded in
    ``bad`` with GEOS's reason, and left out of the coordinate checks."""
    wkb = column.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):  # NaN coordinates: reported later, not warned
        geometries = shapely.from_wkb(wkb, on_invalid="ignore")
    for row in np.flatnonzero(shapely.is_missing(geometries) & (wkb != None)).tolist():  # noqa: E711
        try:
            shapely.from_wkb(wkb[row])
            reason = "GEOS could not build it"
        except shapely.errors.GEOSException as exc:
            reason = str(exc).removeprefix("IllegalArgumentException: ").strip()
        bad.setdefault(row, f"invalid geometry: {reason}")
    return geometries


def _first_offence(
    mask: np.ndarray,
    owner: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    bad: dict[int, str],
    what: str,
) -> None:
    """Record ``what`` and the first offending position of each row with one in ``mask``."""
    positions = np.flatnonzero(mask)
    if not len(positions):
        return
    rows, first = np.unique(owner[positions], return_index=True)
    for row, j in zip(rows.tolist(), positions[first].tolist(), strict=True):
        position = f"[{float(x[j])}, {float(y[j])}]"
        bad.setdefault(row, f"invalid geometry: {what}: position {position}")


def _in_bbox(
    x: np.ndarray,
    y: np.ndarray,
    xmin: np.ndarray,
    ymin: np.ndarray,
    xmax: np.ndarray,
    ymax: np.ndarray,
) -> np.ndarray:
    """Per position: inside its bbox, RFC 7946 style (``xmin > xmax`` crosses ±180).

    A position written past ±180 matches once shifted by 360; NaN bounds match nothing.
    """
    lat = (y >= ymin - _BBOX_SLACK) & (y <= ymax + _BBOX_SLACK)
    plain = xmin <= xmax
    lon = np.zeros(len(x), dtype=bool)
    for shifted in (x, x - 360.0, x + 360.0):
        low = shifted >= xmin - _BBOX_SLACK
        high = shifted <= xmax + _BBOX_SLACK
        lon |= np.where(plain, low & high, False)
    wrapped = np.where(x > 180.0, x - 360.0, np.where(x < -180.0, x + 360.0, x))
    crossing = (wrapped >= xmin - _BBOX_SLACK) | (wrapped <= xmax + _BBOX_SLACK)
    lon |= np.where(plain, False, crossing)
    return lat & lon & np.isfinite(xmin) & np.isfinite(xmax)


def _recomputed_bbox(
    x: np.ndarray, y: np.ndarray, geometry: shapely.Geometry
) -> tuple[float, float, float, float]:
    """The tightest RFC 7946 bbox of one geometry's positions (see the module doc)."""
    south, north = float(y.min()), float(y.max())
    for part in shapely.get_parts(geometry):
        if isinstance(part, shapely.Polygon):
            ring = part.exterior.coords
            winding = ring_winding(ring)
            if winding:
                if sum(lat for _lon, lat, *_z in ring) >= 0.0:
                    return -180.0, south, 180.0, 90.0
                return -180.0, -90.0, 180.0, north
    wrapped = np.where(x > 180.0, x - 360.0, np.where(x < -180.0, x + 360.0, x))
    lons = np.unique(wrapped)
    gaps = np.diff(np.append(lons, lons[0] + 360.0))
    widest = int(np.argmax(gaps))
    if gaps[-1] >= gaps[widest]:  # the widest gap is at ±180: no crossing
        return float(lons[0]), south, float(lons[-1]), north
    return float(lons[widest + 1]), south, float(lons[widest]), north
