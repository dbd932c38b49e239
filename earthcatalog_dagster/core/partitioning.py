"""Spatial partitioning: the H3 cells a STAC item's footprint overlaps.

Every item is written to one warehouse partition per H3 cell its ``geometry`` *overlaps*
(``grid_partition=<cell>``), so a query that enumerates the cells of its own area finds every
item touching that area. This module turns a GeoJSON geometry into that sorted, unique list of
cells (hex strings). It is pure — no Dagster, no I/O — and its only cache is bounded.

Semantics
---------
* Positions are ``[lon, lat]`` degrees and polygon edges are straight lines in (lon, lat), the
  way GeoJSON and H3 read them. ITS_LIVE footprints are densified (about five points per
  edge), so this is close to the projected rectangle they came from.
* A cell is returned when the footprint overlaps its area (``contain="overlap"``), not only
  when it holds the cell's centre: the result is a superset of centre containment.
* Ordinary footprints (the common case) get the union of

  (a) H3's own overlap fill, ``h3shape_to_cells_experimental(poly, res, contain="overlap")``;
  (b) the cell of every vertex (``latlng_to_cell``, exact), and of points sampled along edges
      longer than an eighth of the cell edge (at resolution 1, ITS_LIVE footprints get none
      or about one per edge, by scene size).

  (b) matters: on H3 4.5, (a) misses a cell the footprint plainly lies in for about 1 ordinary
  footprint in 200 at resolution 1 (e.g. a footprint at 142.5°E 63.6°N with 15 of its 20
  vertices in ``8104bffffffffff`` gets only ``81147ffffffffff`` from (a)). So the result
  equals H3's overlap fill except where that fill misses vertex cells.
* ``None`` — and a geometry of unknown type or without one valid position — gives
  ``[NO_CELL]`` (the partition of items without a location). A non-null geometry with a
  valid position never gives an empty list.

Antimeridian
------------
A ring whose consecutive vertices jump by more than 180° of longitude (179.2 → -179.4), or
that is written past ±180 (179.2 → 180.6), crosses the antimeridian. Its longitudes are
unwrapped into one continuous run, the polygon is cut at every odd multiple of 180 (shapely),
each piece is shifted back into [-180, 180] and filled on its own, and the cells are united.
Longitudes of exactly ±180 are pulled ``_EPS`` (≈1 cm) inward, as exact ±180 boundaries are
a known source of wrong H3 fills (a defence: H3 4.5 filled our ±180 test boxes right), and no
edge handed to H3 spans more than 90° of longitude (H3 reads an edge wider than 180° as an
antimeridian crossing). A cell just across the cut is still found through its vertices.

Poles
-----
H3 polygon fill fails or returns nothing for polygons containing a pole (h3 issues #945,
#1000, #1051; h3-py #202, #285), and near a pole its straight-edged test adds the pole's cell
to footprints well clear of it (one footprint in five above 80° at resolution 1) and misses
cells they do overlap. So:

* A ring whose unwrapped longitudes wind through ±360° encloses a pole (the one on the side
  of its mean latitude). It stands for the *cap* between the ring and that pole: in (lon, lat)
  the region under the ring up to latitude ±90.
* Every footprint reaching within 3° of latitude of the pole's own cell (``_POLAR_ZONE``:
  |lat| ≥ 79.5° at resolution 1, 84.6° at resolution 2), caps included, is not filled by H3.
  Its cells are found by a breadth-first walk over grid neighbours from its vertex cells
  (and, for a cap, the pole's cell ``latlng_to_cell(±90, 0, res)``), keeping each cell whose
  true boundary — densified along its great-circle edges, the pole's cell as its own cap —
  intersects the footprint (shapely).
  The area is connected and the seeds lie in it, so the walk finds every overlapped cell.

Known limits
------------
* Cell edges are great-circle arcs; H3's fill (a) tests overlap against straight lat/lng
  edges. Outside the polar zone it may add a cell the footprint only approaches (measured at
  resolution 1: ~1 % of footprints below 80°, 3 % at 70–80°, always within ~0.25° of the
  cell): harmless for queries, the item is stored in one more partition. A cell is missed
  only if the footprint enters it through the sliver between H3's straight edge and the arc,
  with no vertex or edge sample inside.
* A cap is the (lon, lat) region between the ring and the pole: what a densified projected
  rectangle around the pole means. A ring that is not star-shaped around the pole is repaired
  with ``make_valid``, not reconstructed. A hole winding around a pole is ignored (superset).
* Points are their cells; (Multi)LineStrings are covered by their vertices and by points
  sampled every eighth of a cell edge along their segments, so a line clipping a cell corner
  by less than that can be missed.
* Cost at resolution 1 (CPU per footprint, 4,000 synthetic ITS_LIVE items, measured on a
  busy shared machine, so read the ratios): ``cells_for_geometry`` one by one ~180–250 µs
  on average (an ordinary footprint ~160–200 µs, mostly H3's fill; one across the
  antimeridian ~1.2 ms); ``fan_out`` ~45–55 µs on average, 4–5× less: ~94 % of the items
  are settled by the batch fast path below (~35 µs each, across the antimeridian too;
  more than half of it ``latlng_to_cell`` of ~32 vertices and edge samples), the other
  ~6 % need H3's fill and cost what they did. Polar zone ~80 µs once the bounded cell
  cache is warm; a polar cap ~350 µs. The walk grows with the number of cells covered, so
  fine resolutions near the poles cost milliseconds.

Batch fan-out
-------------
``fan_out`` returns exactly ``cells_for_geometry`` of each item, but settles most of a batch
at once (numpy, vectorized shapely): a single-ring polygon clear of the polar zone — plain
or across the antimeridian — whose vertex and edge-sample cells S provably hold every cell
H3's fill could add (the footprint lies properly inside the union of S's outlines and clear
of its neighbours' outlines, with a margin) gets S without the fill. Everything else, and
any footprint the test cannot settle, goes through ``cells_for_geometry``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import h3.api.basic_int as h3
import numpy as np
import shapely
from h3 import H3BaseException
from shapely import affinity
from shapely.geometry import Polygon, box

from earthcatalog_dagster.layout import NO_CELL

__all__ = ["DEFAULT_RESOLUTION", "cells_for_geometry", "fan_out", "ring_winding"]

DEFAULT_RESOLUTION = 1

Position = tuple[float, float]  # (lon, lat) in degrees

# Nudge (degrees, ≈1 cm) that keeps coordinates handed to H3 fill off ±180 and ±90.
_EPS = 1e-7
# Edge sampling step per resolution: an eighth of the average cell edge, in degrees of arc.
_KM_PER_DEGREE = 6371.0088 * math.pi / 180.0
_SAMPLE_STEP = tuple(
    h3.average_hexagon_edge_length(res, "km") / _KM_PER_DEGREE / 8.0 for res in range(16)
)
# Footprints reaching this |latitude| are walked cell by cell (_walk), not filled by H3:
# 3° short of the far edge of the cell that holds the pole, at each resolution.
_POLAR_ZONE = tuple(
    min(abs(lat) for lat, _lng in h3.cell_to_boundary(h3.latlng_to_cell(90.0, 0.0, res))) - 3.0
    for res in range(16)
)
# Widest longitude span of one edge handed to H3 fill (> 180 reads as an antimeridian crossing).
_MAX_FILL_EDGE_LON = 90.0
# Points per great-circle edge when a cell boundary is drawn for the walk.
_ARC_POINTS = 16


# --- public API -----------------------------------------------------------------------------


def cells_for_geometry(
    geometry: dict[str, Any] | None, resolution: int = DEFAULT_RESOLUTION
) -> list[str]:
    """The sorted, unique H3 cells (hex strings) at ``resolution`` that ``geometry`` overlaps.

    ``geometry`` is a GeoJSON geometry dict in lon/lat: Polygon and MultiPolygon are the norm;
    Point, MultiPoint, LineString, MultiLineString and GeometryCollection are covered too.
    ``None``, an unknown type or a geometry without a valid position gives ``[NO_CELL]``, so
    one odd item never stops a batch. An invalid ``resolution`` raises ``ValueError``.
    """
    if geometry is None:
        return [NO_CELL]
    if not isinstance(resolution, int) or not 0 <= resolution <= 15:
        raise ValueError(f"H3 resolution must be an integer in 0..15, got {resolution!r}")
    cells: set[int] = set()
    _add_geometry(geometry, resolution, cells)
    if not cells:
        return [NO_CELL]
    # Same-length lowercase hex: integer order is string order.
    return [h3.int_to_str(cell) for cell in sorted(cells)]


def fan_out(geometries: Sequence[dict[str, Any] | None], resolution: int) -> list[list[str]]:
    """``cells_for_geometry`` of each geometry, in order: one list of cells per item.

    Identical results, computed for the whole batch at once where possible: plain
    footprints whose vertex cells already hold every cell they overlap (most of them) are
    settled with numpy and vectorized shapely (see "the batch fast path" below); the rest
    go through ``cells_for_geometry`` one by one.
    """
    items = geometries if isinstance(geometries, list) else list(geometries)
    if not items or not isinstance(resolution, int) or not 0 <= resolution <= 15:
        return [cells_for_geometry(geometry, resolution) for geometry in items]
    fast = _fan_out_fast(items, resolution)
    return [
        cells if cells is not None else cells_for_geometry(geometry, resolution)
        for cells, geometry in zip(fast, items, strict=True)
    ]


def ring_winding(ring: Sequence[Sequence[float]]) -> int:
    """How often a closed or open ``(lon, lat)`` ring winds round a pole (0: it does not).

    The same unwrapping the fan-out uses (each step the short way round, see the module
    doc), so other modules classify rings exactly as the partitioning does.
    """
    points = _open_ring([(float(p[0]), float(p[1])) for p in ring])
    return _unwrap(points)[1] if points else 0


# --- geometry dispatch ----------------------------------------------------------------------


def _add_geometry(geometry: Any, res: int, out: set[int]) -> None:
    """Add the cells of a GeoJSON geometry dict to ``out``; malformed parts add nothing."""
    if not isinstance(geometry, dict):
        return
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    try:
        if kind == "Polygon":
            _add_polygon(coords, res, out)
        elif kind == "MultiPolygon":
            for polygon in coords or ():
                _add_polygon(polygon, res, out)
        elif kind == "Point":
            _add_vertices(_positions([coords]), res, out)
        elif kind == "MultiPoint":
            _add_vertices(_positions(coords or ()), res, out)
        elif kind == "LineString":
            _add_line(_positions(coords or ()), res, out)
        elif kind == "MultiLineString":
            for line in coords or ():
                _add_line(_positions(line or ()), res, out)
        elif kind == "GeometryCollection":
            for part in geometry.get("geometries") or ():
                _add_geometry(part, res, out)
    except (TypeError, ValueError, IndexError, KeyError):
        return  # malformed nesting (a number where a ring belongs): keep what was found


def _positions(raw: Iterable[Any]) -> list[Position]:
    """Valid ``(lon, lat)`` floats of a GeoJSON position list, latitudes clamped to ±90.

    Positions that are not two finite numbers are dropped.
    """
    try:
        points = [(float(p[0]), float(p[1])) for p in raw]
    except (TypeError, ValueError, IndexError):
        points = [p for p in map(_position, raw) if p is not None]
    if math.isfinite(sum(lon + lat for lon, lat in points)) and all(
        -90.0 <= lat <= 90.0 for _lon, lat in points
    ):
        return points  # the common case: one pass, nothing to repair
    return [
        (lon, max(-90.0, min(90.0, lat)))
        for lon, lat in points
        if math.isfinite(lon) and math.isfinite(lat)
    ]


def _position(raw: Any) -> Position | None:
    """One ``(lon, lat)`` from a GeoJSON position, or None if it is not one."""
    try:
        return float(raw[0]), float(raw[1])
    except (TypeError, ValueError, IndexError):
        return None


def _add_vertices(points: Iterable[Position], res: int, out: set[int]) -> None:
    """Add the cell of every point (H3 wraps any longitude)."""
    to_cell = h3.latlng_to_cell
    out.update(to_cell(lat, lon, res) for lon, lat in points)


def _add_line(points: list[Position], res: int, out: set[int]) -> None:
    """Cells of a polyline: its vertices plus samples along its long segments."""
    _add_vertices(points, res, out)
    _add_edge_samples(points, res, out, closed=False)


def _add_edge_samples(points: list[Position], res: int, out: set[int], *, closed: bool) -> None:
    """Add cells of points at most ``_SAMPLE_STEP[res]`` apart along every long edge.

    Edges are straight in (lon, lat), the short way round in longitude; their length is
    bounded with longitudes scaled by the cosine of the latitude nearest the equator.
    """
    step = _SAMPLE_STEP[res]
    step_squared = step * step
    count = len(points)
    for i in range(count if closed else count - 1):
        lon0, lat0 = points[i]
        lon1, lat1 = points[(i + 1) % count]
        dlon = lon1 - lon0
        if dlon > 180.0 or dlon < -180.0:
            dlon -= 360.0 * round(dlon / 360.0)
        dlat = lat1 - lat0
        if dlon * dlon + dlat * dlat <= step_squared:
            continue  # short even in unscaled degrees: the usual case, no trigonometry
        if lat0 * lat1 <= 0.0:
            scale = 1.0  # crosses the equator
        else:
            scale = max(math.cos(math.radians(lat0)), math.cos(math.radians(lat1)))
        length = math.hypot(dlon * scale, dlat)
        if length <= step:
            continue
        pieces = math.ceil(length / step)
        for k in range(1, pieces):
            t = k / pieces
            out.add(h3.latlng_to_cell(lat0 + t * dlat, lon0 + t * dlon, res))


# --- polygons -------------------------------------------------------------------------------


def _add_polygon(raw_rings: Any, res: int, out: set[int]) -> None:
    """Add the cells one GeoJSON Polygon (a list of rings, exterior first) overlaps."""
    rings = [ring for ring in (_open_ring(_positions(raw)) for raw in raw_rings or ()) if ring]
    if not rings:
        return
    exterior = rings[0]
    holes = [ring for ring in rings[1:] if len(ring) >= 3]
    unwrapped, winding = _unwrap(exterior)
    polar = winding != 0 or max(abs(lat) for _lon, lat in exterior) >= _POLAR_ZONE[res]
    if len(exterior) < 3 or not polar:
        sampled: set[int] = set()
        for ring in rings:
            _add_vertices(ring, res, sampled)
            _add_edge_samples(ring, res, sampled, closed=True)
        out |= sampled
        if len(exterior) < 3:
            return  # degenerate: its vertices and edge samples are all it covers
        if len(sampled) == 1 and not holes and _inside_cell(exterior, next(iter(sampled))):
            return  # strictly inside one cell: the fill could add nothing (saves ~90 µs)
    if polar:
        out.update(_walked_cells(exterior, unwrapped, winding, holes, res))
        return
    try:
        if all(-180.0 < lon < 180.0 for lon in unwrapped) and all(_is_plain(h) for h in holes):
            # The common case: no antimeridian, no pole; straight to H3.
            shape = h3.LatLngPoly(
                [(lat, lon) for lon, lat in exterior],
                *[[(lat, lon) for lon, lat in hole] for hole in holes],
            )
            out.update(h3.h3shape_to_cells_experimental(shape, res, contain="overlap"))
        else:
            _fill_folded(_split_polygon(exterior, unwrapped, holes), res, out)
    except H3BaseException:
        # H3 refused the shape (an odd self-crossing ring...): walk the true cells instead.
        out.update(_walked_cells(exterior, unwrapped, winding, holes, res))


@functools.lru_cache(maxsize=8192)
def _plain_outline(cell: int) -> shapely.Polygon | None:
    """The cell's outline as H3 draws it (straight in lon/lat), prepared for fast tests;
    ``None`` for cells across the antimeridian, where that planar outline is not the cell."""
    boundary = [(lon, lat) for lat, lon in h3.cell_to_boundary(cell)]
    lons = [lon for lon, _lat in boundary]
    if max(lons) - min(lons) > 180.0:
        return None
    outline = shapely.Polygon(boundary)
    shapely.prepare(outline)
    return outline


def _inside_cell(exterior: list[Position], cell: int) -> bool:
    """Whether the ring lies strictly inside ``cell``'s outline (touching nothing else)."""
    outline = _plain_outline(cell)
    if outline is None:
        return False
    footprint = shapely.Polygon(exterior)
    return footprint.is_valid and outline.contains_properly(footprint)


def _open_ring(ring: list[Position]) -> list[Position]:
    """The ring without its closing position (GeoJSON repeats the first one at the end)."""
    if len(ring) > 1 and ring[0] == ring[-1]:
        return ring[:-1]
    return ring


def _unwrap(ring: list[Position]) -> tuple[list[float], int]:
    """Longitudes of the open ``ring`` made continuous, and how often the ring winds round.

    Each step between consecutive vertices is taken the short way (|step| ≤ 180°), the first
    longitude brought into [-180, 180]. The winding is the signed number of full turns of the
    closed ring: 0 for any ring that does not encircle a pole.
    """
    previous = ring[0][0]
    current = previous - 360.0 * round(previous / 360.0)
    lons = [current]
    append = lons.append
    for lon, _lat in ring[1:]:
        step = lon - previous
        if step > 180.0 or step < -180.0:
            step -= 360.0 * round(step / 360.0)
        current += step
        append(current)
        previous = lon
    closing = ring[0][0] - previous
    closing -= 360.0 * round(closing / 360.0)
    return lons, round((current + closing - lons[0]) / 360.0)


def _is_plain(ring: list[Position]) -> bool:
    """True if the ring needs no antimeridian or pole repair."""
    lons, winding = _unwrap(ring)
    return winding == 0 and all(-180.0 < lon < 180.0 for lon in lons)


def _split_polygon(
    exterior: list[Position], unwrapped: list[float], holes: list[list[Position]]
) -> shapely.Geometry:
    """The polygon in continuous longitudes, cut at ±180 and folded into [-180, 180]."""
    shell = list(zip(unwrapped, (lat for _lon, lat in exterior), strict=True))
    centre = (min(unwrapped) + max(unwrapped)) / 2.0
    interiors = []
    for hole in holes:
        lons, winding = _unwrap(hole)
        if winding:
            continue  # a hole around a pole: ignored, the result stays a superset
        shift = 360.0 * round((centre - (min(lons) + max(lons)) / 2.0) / 360.0)
        interiors.append([(lon + shift, lat) for lon, (_x, lat) in zip(lons, hole, strict=True)])
    return _fold(_valid(Polygon(shell, interiors)))


def _valid(geometry: shapely.Geometry) -> shapely.Geometry:
    """``geometry`` if valid, else its ``make_valid`` repair (self-touching rings)."""
    return geometry if geometry.is_valid else shapely.make_valid(geometry)


def _fold(geometry: shapely.Geometry) -> shapely.Geometry:
    """Cut a continuous-longitude geometry at odd multiples of 180, shift each piece home."""
    west, _south, east, _north = geometry.bounds
    if west >= -180.0 and east <= 180.0:
        return geometry
    pieces = []
    for k in range(math.floor((west + 180.0) / 360.0), math.floor((east + 180.0) / 360.0) + 1):
        offset = 360.0 * k
        piece = geometry.intersection(box(offset - 180.0, -90.0, offset + 180.0, 90.0))
        if not piece.is_empty:
            pieces.append(affinity.translate(piece, -offset, 0.0))
    return shapely.union_all(pieces)


def _fill_folded(geometry: shapely.Geometry, res: int, out: set[int]) -> None:
    """H3 overlap fill of every polygon of a geometry folded into [-180, 180]."""
    for polygon in shapely.get_parts(shapely.get_parts(geometry)):
        if not isinstance(polygon, Polygon) or polygon.area == 0.0:
            continue
        holes = [_h3_loop(ring.coords) for ring in polygon.interiors]
        shape = h3.LatLngPoly(_h3_loop(polygon.exterior.coords), *holes)
        out.update(h3.h3shape_to_cells_experimental(shape, res, contain="overlap"))


def _h3_loop(coords: Iterable[tuple[float, ...]]) -> list[tuple[float, float]]:
    """A ring as H3 fill wants it: open, (lat, lng), off ±180/±90, no edge wider than 90°."""
    points = [(x, y) for x, y, *_z in coords]
    if len(points) > 1 and points[0] == points[-1]:
        points.pop()
    lo_lon, hi_lon = -180.0 + _EPS, 180.0 - _EPS
    lo_lat, hi_lat = -90.0 + _EPS, 90.0 - _EPS
    loop: list[tuple[float, float]] = []
    for i, (lon0, lat0) in enumerate(points):
        lon1, lat1 = points[(i + 1) % len(points)]
        pieces = max(1, math.ceil(abs(lon1 - lon0) / _MAX_FILL_EDGE_LON))
        for k in range(pieces):
            t = k / pieces
            lon = lon0 + t * (lon1 - lon0)
            lat = lat0 + t * (lat1 - lat0)
            loop.append((min(max(lat, lo_lat), hi_lat), min(max(lon, lo_lon), hi_lon)))
    return loop


# --- near the poles -------------------------------------------------------------------------


def _walked_cells(
    exterior: list[Position],
    unwrapped: list[float],
    winding: int,
    holes: list[list[Position]],
    res: int,
) -> set[int]:
    """Cells of a polygon found by walking the true cells (the polar zone, see module doc)."""
    seeds = {h3.latlng_to_cell(lat, lon, res) for lon, lat in exterior}
    if winding:
        lats = [lat for _lon, lat in exterior]
        pole = 90.0 if sum(lats) >= 0.0 else -90.0
        area = _cap_geometry(unwrapped, lats, winding, pole)
        seeds.add(h3.latlng_to_cell(pole, 0.0, res))
    else:
        area = _split_polygon(exterior, unwrapped, holes)
    return _walk(area, seeds)


def _cap_geometry(
    unwrapped: list[float], lats: list[float], winding: int, pole: float
) -> shapely.Geometry:
    """The (lon, lat) region between a ring encircling a pole and ``pole``, folded home.

    The unwrapped ring runs once from ``a`` to ``a ± 360·winding``. Three turns of it closed
    along the pole's latitude make a band whose middle turn, cut out and folded into
    [-180, 180], is the cap with no seam.
    """
    if winding < 0:
        unwrapped = unwrapped[::-1]
        lats = lats[::-1]
    turn = 360.0 * abs(winding)
    start = unwrapped[0]
    once = list(zip(unwrapped, lats, strict=True))
    line = [(lon - turn, lat) for lon, lat in once]
    line += once
    line += [(lon + turn, lat) for lon, lat in once]
    line.append((start + 2.0 * turn, lats[0]))
    band = _valid(Polygon([*line, (line[-1][0], pole), (line[0][0], pole)]))
    return _fold(band.intersection(box(start, -90.0, start + turn, 90.0)))


def _walk(area: shapely.Geometry, seeds: set[int]) -> set[int]:
    """``seeds`` plus every cell linked to them through cells whose area meets ``area``.

    Breadth-first over grid neighbours. ``area`` is connected and the seeds lie in it, so
    this finds every cell whose true area intersects ``area``.
    """
    shapely.prepare(area)
    found = set(seeds)
    seen = set(seeds)
    frontier = list(seeds)
    while frontier:
        next_frontier = []
        for cell in frontier:
            for neighbour in h3.grid_disk(cell, 1):
                if neighbour not in seen:
                    seen.add(neighbour)
                    if area.intersects(_cell_geometry(neighbour)):
                        found.add(neighbour)
                        next_frontier.append(neighbour)
        frontier = next_frontier
    return found


@functools.lru_cache(maxsize=4096)
def _cell_geometry(cell: int) -> shapely.Geometry:
    """The (lon, lat) area of an H3 cell, its edges densified along their great circles.

    Folded into [-180, 180]: a cell across the antimeridian is two pieces, the cell holding a
    pole is the cap between its boundary and that pole. The cache is bounded; walks near the
    poles revisit the same few cells.
    """
    boundary = _great_circle_ring(h3.cell_to_boundary(cell))
    unwrapped, winding = _unwrap(boundary)
    lats = [lat for _lon, lat in boundary]
    if winding:
        pole = 90.0 if h3.cell_to_latlng(cell)[0] >= 0.0 else -90.0
        return _cap_geometry(unwrapped, lats, winding, pole)
    return _fold(_valid(Polygon(list(zip(unwrapped, lats, strict=True)))))


def _great_circle_ring(boundary: Sequence[tuple[float, float]]) -> list[Position]:
    """``(lon, lat)`` of a cell boundary with ``_ARC_POINTS`` points per great-circle edge."""
    vectors = [_unit_vector(lat, lng) for lat, lng in boundary]
    points: list[Position] = []
    for i, (a, (lat, lng)) in enumerate(zip(vectors, boundary, strict=True)):
        points.append((lng, lat))
        b = vectors[(i + 1) % len(vectors)]
        angle = math.acos(max(-1.0, min(1.0, a[0] * b[0] + a[1] * b[1] + a[2] * b[2])))
        if angle < 1e-12:
            continue
        sin_angle = math.sin(angle)
        for k in range(1, _ARC_POINTS):
            t = k / _ARC_POINTS
            wa = math.sin((1.0 - t) * angle) / sin_angle
            wb = math.sin(t * angle) / sin_angle
            x, y, z = (wa * a[j] + wb * b[j] for j in range(3))
            points.append(
                (math.degrees(math.atan2(y, x)), math.degrees(math.atan2(z, math.hypot(x, y))))
            )
    return points


def _unit_vector(lat: float, lng: float) -> tuple[float, float, float]:
    """Unit vector of a (lat, lng) point given in degrees."""
    phi, lam = math.radians(lat), math.radians(lng)
    return (math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi))


# --- the batch fast path --------------------------------------------------------------------
#
# Most footprints are small single-ring polygons clear of the polar zone whose vertex and
# edge-sample cells S already hold every cell H3's overlap fill could return. ``fan_out``
# finds those for a whole batch at once with numpy and vectorized shapely and skips the fill
# for them (``_add_polygon`` would return S ∪ fill = S); every other geometry goes through
# ``cells_for_geometry``. The vertex cells and edge samples are computed exactly as
# ``_add_polygon`` computes them (same positions, same IEEE arithmetic).
#
# Why skipping the fill is exact: H3's overlap fill adds a cell only if its centre lies in
# the polygon, the polygon's first vertex lies in it, or its straight lat/lng outline crosses
# the polygon's edges. If the footprint lies properly inside the union of the outlines of S,
# shrunk by a margin, and stays that margin clear of the outlines of every neighbour of S,
# no cell outside S passes the first and last tests (cells beyond the neighbours are a whole
# cell width away). The first vertex of a plain footprint is one of its own, so in S. A
# footprint across the antimeridian is filled as pieces cut at ±180 (``_fill_folded``): the
# test runs in longitudes read in [0, 360) with a margin wider than the ``_EPS`` pull of the
# cut, and the cell of every cut point (which may start a piece) must be surely in S.

# Longitude bound, latitude-step bound (degrees) and margin of the fast path; anything
# beyond goes the exact per-item way.
_FAST_MAX_LON = 179.5
_FAST_MAX_EDGE_LON = 90.0
_FAST_MARGIN = 1e-9
# Relative margin on the vectorized edge-length test (see ``_fast_rings``).
_FAST_SAMPLE_MARGIN = 1e-9
# How clearly (degrees) a ring read in [0, 360) must cross 180 to take the folded fast path.
_FAST_ACROSS_MARGIN = 1e-6
# Margin of the fast path across the antimeridian: the pieces H3 fills there are the
# footprint cut at ±180 with the cut pulled ``_EPS`` inward, which can stick out of the
# footprint by about ``_EPS``; this margin is a hundred times that.
_FAST_FOLD_MARGIN = 1e-5
# Latitude offsets (degrees) around a cut point at which its cell is probed (see below).
_FAST_CUT_PROBE = 1e-6


def _fast_candidates(
    geometries: Sequence[dict[str, Any] | None],
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Items that are single-ring GeoJSON Polygons of numeric positions, as flat arrays.

    Returns the item indices, the ``(N, 2)`` float coordinates of their rings (as written,
    closing position included) and the ring lengths. Anything else is left to the exact path.
    """
    index: list[int] = []
    rings: list[Any] = []
    for i, geometry in enumerate(geometries):
        if isinstance(geometry, dict) and geometry.get("type") == "Polygon":
            coords = geometry.get("coordinates")
            if isinstance(coords, list) and len(coords) == 1:
                ring = coords[0]
                if isinstance(ring, list) and len(ring) >= 3:
                    index.append(i)
                    rings.append(ring)
    lengths = np.fromiter(map(len, rings), dtype=np.int64, count=len(rings))
    try:
        flat = np.array([p for ring in rings for p in ring], dtype=np.float64)
        if flat.ndim != 2 or flat.shape[1] != 2:
            raise ValueError("not plain 2-D positions")
    except (TypeError, ValueError, OverflowError):
        # Some ring is unusual: convert ring by ring, keep those that convert cleanly.
        parts: list[np.ndarray] = []
        kept: list[int] = []
        for k, ring in enumerate(rings):
            try:
                part = np.array(ring, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                continue
            if part.ndim == 2 and part.shape[1] == 2:
                parts.append(part)
                kept.append(k)
        index = [index[k] for k in kept]
        lengths = lengths[kept]
        flat = np.concatenate(parts) if parts else np.empty((0, 2), dtype=np.float64)
    return index, flat, lengths


def _fast_rings(
    flat: np.ndarray, lengths: np.ndarray, res: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Open the rings, pick the ones the fast path can take, and plan their samples.

    Returns, per ring, its kind (0: not eligible, 1: plain, 2: across the antimeridian)
    and whether its edge samples must be taken
    by ``_add_edge_samples`` itself; the open rings' start offsets and lengths in ``flat``;
    and, per position, the number of pieces ``_add_edge_samples`` cuts the edge from it to
    the next position into (1: no samples) and its longitude step taken the short way.
    Eligible: at least three open positions, all finite, |lat| below the polar zone, no edge
    wider than ``_FAST_MAX_EDGE_LON`` (so winding 0 and ``_positions`` changes nothing),
    and either plain (|lon| ≤ ``_FAST_MAX_LON``: ``_unwrap`` changes nothing) or, read in
    [0, 360), continuous, within [90, 270] and clearly across 180 (so ``_add_polygon``
    cuts and folds it, whatever its first longitude).
    """
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    lasts = starts + lengths - 1
    x, y = flat[:, 0], flat[:, 1]
    closed = (x[starts] == x[lasts]) & (y[starts] == y[lasts])
    open_lengths = lengths - closed
    owner = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(x))
    in_open = position - starts[owner] < open_lengths[owner]
    # The next position along the open ring (wrapping to its start): the edges.
    following = np.where(
        position - starts[owner] + 1 < open_lengths[owner], position + 1, starts[owner]
    )
    dlat = y[following] - y
    lat_next = y[following]
    step = _SAMPLE_STEP[res]
    with np.errstate(invalid="ignore", over="ignore"):
        raw_dlon = x[following] - x
        # The short way round, as ``_add_edge_samples`` takes it (round half to even both).
        dlon = np.where(
            np.abs(raw_dlon) > 180.0, raw_dlon - 360.0 * np.round(raw_dlon / 360.0), raw_dlon
        )
        common = (
            np.isfinite(x)
            & np.isfinite(y)
            & (np.abs(y) < _POLAR_ZONE[res])
            & (np.abs(dlon) <= _FAST_MAX_EDGE_LON)
        )
        good = common & (np.abs(x) <= _FAST_MAX_LON) & (np.abs(raw_dlon) <= _FAST_MAX_EDGE_LON)
        x360 = np.mod(x, 360.0)
        d360 = x360[following] - x360
        good360 = common & (np.abs(x) <= 360.0) & (np.abs(d360) <= _FAST_MAX_EDGE_LON)
        # ``_add_edge_samples``'s arithmetic, vectorized: the same unscaled test (exact),
        # then ``ceil(length / step)`` pieces. numpy's cosine and hypot may differ from
        # math's in the last bit, so an edge whose length is within a relative
        # ``_FAST_SAMPLE_MARGIN`` of a whole number of steps is left to the exact code.
        long_edge = dlon * dlon + dlat * dlat > step * step
        scale = np.where(
            y * lat_next <= 0.0,
            1.0,
            np.maximum(np.cos(np.radians(y)), np.cos(np.radians(lat_next))),
        )
        ratio = np.where(long_edge & (good | good360), np.hypot(dlon * scale, dlat) / step, 0.0)
        nearest = np.round(ratio)
        ambiguous = long_edge & (np.abs(ratio - nearest) <= _FAST_SAMPLE_MARGIN * ratio)
        pieces = np.where(ratio > 1.0, np.ceil(ratio), 1.0).astype(np.int64)
        ambiguous &= good | good360
        west = np.minimum.reduceat(np.where(in_open, x360, np.inf), starts)
        east = np.maximum.reduceat(np.where(in_open, x360, -np.inf), starts)
    bad_per_ring = np.bincount(owner[in_open & ~good], minlength=len(lengths))
    bad360_per_ring = np.bincount(owner[in_open & ~good360], minlength=len(lengths))
    ambiguous_per_ring = np.bincount(owner[in_open & ambiguous], minlength=len(lengths))
    across = (
        (bad360_per_ring == 0)
        & (west > 90.0)
        & (east < 270.0)
        & (west < 180.0 - _FAST_ACROSS_MARGIN)
        & (east > 180.0 + _FAST_ACROSS_MARGIN)
    )
    kind = np.where(bad_per_ring == 0, 1, np.where(across, 2, 0))
    kind[open_lengths < 3] = 0
    return kind, ambiguous_per_ring > 0, starts, open_lengths, pieces, dlon


@functools.lru_cache(maxsize=4096)
def _fast_regions(
    cells: tuple[int, ...],
) -> tuple[shapely.Geometry, shapely.Geometry, list[str]] | None:
    """For vertex cells ``cells``: the union of their outlines shrunk by ``_FAST_MARGIN``,
    the union of their neighbours' outlines grown by it (both prepared), and the cells as
    sorted hex strings; ``None`` if one of their own outlines is not plain (antimeridian).

    Mitred buffers keep the outlines' few vertices (a round one has seven times as many,
    and these are cached) and err on the safe side: the grown outline holds the round
    one, the shrunk one lies within it.
    """
    own = [_plain_outline(cell) for cell in cells]
    if any(outline is None for outline in own):
        return None
    around = {n for cell in cells for n in h3.grid_disk(cell, 1)} - set(cells)
    others = [_folded_outline(cell) for cell in sorted(around)]
    inner = shapely.union_all(own).buffer(-_FAST_MARGIN, join_style="mitre")
    outer = shapely.union_all(others).buffer(_FAST_MARGIN, join_style="mitre")
    shapely.prepare(inner)
    shapely.prepare(outer)
    return inner, outer, [h3.int_to_str(cell) for cell in sorted(cells)]


@functools.lru_cache(maxsize=4096)
def _fast_regions_360(
    cells: tuple[int, ...],
) -> tuple[shapely.Geometry, shapely.Geometry, list[str]] | None:
    """``_fast_regions`` for a footprint across the antimeridian, in longitudes read in
    [0, 360): each vertex cell's outline unwrapped and placed with its centre in [0, 360);
    each neighbour's also shifted by ±360 (a superset of where it could be)."""
    own = [_outline_360(cell) for cell in cells]
    if any(outline is None for outline in own):
        return None
    around = {n for cell in cells for n in h3.grid_disk(cell, 1)} - set(cells)
    others = []
    for cell in sorted(around):
        outline = _outline_360(cell)
        if outline is None:  # the cell holding a pole: everything beyond its lowest vertex
            lats = [lat for lat, _lon in h3.cell_to_boundary(cell)]
            if h3.cell_to_latlng(cell)[0] >= 0.0:
                others.append(box(-360.0, min(lats), 720.0, 90.0))
            else:
                others.append(box(-360.0, -90.0, 720.0, max(lats)))
            continue
        others += [affinity.translate(outline, shift, 0.0) for shift in (-360.0, 0.0, 360.0)]
    inner = shapely.union_all(own).buffer(-_FAST_FOLD_MARGIN, join_style="mitre")
    outer = shapely.union_all(others).buffer(_FAST_FOLD_MARGIN, join_style="mitre")
    shapely.prepare(inner)
    shapely.prepare(outer)
    return inner, outer, [h3.int_to_str(cell) for cell in sorted(cells)]


def _cut_cells(lons: np.ndarray, lats: np.ndarray, nxt: np.ndarray, res: int) -> np.ndarray:
    """Per position of rings across the antimeridian (``nxt``: the next position of its
    ring), the cell of the point where the edge from it crosses 180 (longitudes read in
    [0, 360)).

    H3's fill also adds the cell of each filled polygon's first vertex, and a piece of a
    footprint cut at ±180 may start at a cut point, which is no vertex of the footprint.
    Its cell is probed ``_FAST_CUT_PROBE`` north and south of it on both sides of the
    antimeridian (where ``_h3_loop`` pulls it): four points in one cell make that cell
    the cut point's, whatever the last bits of the cut that shapely computes.
    Returns the cell of the cut, 0 for an edge that does not cross, -1 where the probes
    disagree (H3 cells fit in int64: their top bit is 0).
    """
    u = np.mod(lons, 360.0)
    u_next, lat_next = u[nxt], lats[nxt]
    crossing = np.flatnonzero((u < 180.0) != (u_next < 180.0))
    result = np.zeros(len(lons), dtype=np.int64)
    if crossing.size == 0:
        return result
    u0, u1 = u[crossing], u_next[crossing]
    lat0, lat1 = lats[crossing], lat_next[crossing]
    cut = lat0 + (180.0 - u0) * (lat1 - lat0) / (u1 - u0)
    probes = []
    for lon in (180.0 - _EPS, -180.0 + _EPS):
        for offset in (-_FAST_CUT_PROBE, _FAST_CUT_PROBE):
            cells = _cells_of_points(cut + offset, np.full(cut.size, lon), res)
            probes.append(np.array(cells, dtype=np.int64))
    same = np.all([probe == probes[0] for probe in probes], axis=0)
    result[crossing] = np.where(same, probes[0], -1)
    return result


def _outline_360(cell: int) -> shapely.Polygon | None:
    """The cell's outline as H3 draws it, longitudes unwrapped and its centre in [0, 360);
    ``None`` for the cell holding a pole."""
    boundary = [(lon, lat) for lat, lon in h3.cell_to_boundary(cell)]
    unwrapped, winding = _unwrap(boundary)
    if winding:
        return None
    shift = -360.0 * math.floor((min(unwrapped) + max(unwrapped)) / 2.0 / 360.0)
    return shapely.Polygon(
        [(lon + shift, lat) for lon, (_x, lat) in zip(unwrapped, boundary, strict=True)]
    )


def _folded_outline(cell: int) -> shapely.Geometry:
    """The cell's outline as H3 draws it, folded into [-180, 180] (two pieces if the cell
    spans the antimeridian): a superset of where H3 could see the cell, for the clearance
    test of the fast path."""
    outline = _plain_outline(cell)
    if outline is not None:
        return outline
    boundary = [(lon, lat) for lat, lon in h3.cell_to_boundary(cell)]
    unwrapped, winding = _unwrap(boundary)
    lats = [lat for _lon, lat in boundary]
    if winding:  # the cell holding a pole: the whole cap beyond its lowest vertex
        if h3.cell_to_latlng(cell)[0] >= 0.0:
            return box(-180.0, min(lats), 180.0, 90.0)
        return box(-180.0, -90.0, 180.0, max(lats))
    return _fold(_valid(Polygon(list(zip(unwrapped, lats, strict=True)))))


def _cells_of_points(lats: np.ndarray, lons: np.ndarray, res: int) -> list[int]:
    """``latlng_to_cell`` of every point (degrees), as Python ints."""
    to_cell = h3.latlng_to_cell
    return [to_cell(lat, lon, res) for lat, lon in zip(lats.tolist(), lons.tolist(), strict=True)]


def _fan_out_fast(geometries: Sequence[dict[str, Any] | None], res: int) -> list[list[str] | None]:
    """Cells of the footprints the fast path settles; ``None`` for the others."""
    out: list[list[str] | None] = [None] * len(geometries)
    index, flat, lengths = _fast_candidates(geometries)
    if not index:
        return out
    kind, exact_samples, starts, open_lengths, pieces, steps = _fast_rings(flat, lengths, res)
    rings = np.flatnonzero(kind)
    if rings.size == 0:
        return out
    # The open positions of the eligible rings, in ring order.
    counts = open_lengths[rings]
    owner = np.repeat(np.arange(rings.size), counts)
    offsets = np.zeros(rings.size + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    take = starts[rings][owner] + np.arange(offsets[-1]) - offsets[:-1][owner]
    lons = flat[take, 0]
    lats = flat[take, 1]
    # Edge samples, as ``_add_edge_samples`` places them: lat0 + t·dlat, lon0 + t·dlon with
    # t = k / pieces, k = 1 .. pieces - 1 (same IEEE operations, so the same points).
    edge_pieces = pieces[take]
    edge_pieces[exact_samples[rings][owner]] = 1  # those rings sample with the exact code
    extra = edge_pieces - 1
    edge = np.repeat(np.arange(take.size), extra)
    first = np.zeros(take.size + 1, dtype=np.int64)
    np.cumsum(extra, out=first[1:])
    k = (np.arange(edge.size) - first[:-1][edge] + 1).astype(np.float64)
    t = k / edge_pieces[edge].astype(np.float64)
    nxt = np.where(
        np.arange(take.size) + 1 < offsets[1:][owner], np.arange(take.size) + 1, offsets[:-1][owner]
    )
    sample_lats = lats[edge] + t * (lats[nxt][edge] - lats[edge])
    sample_lons = lons[edge] + t * steps[take][edge]
    sample_counts = np.bincount(owner[edge], minlength=rings.size)
    sample_offsets = np.zeros(rings.size + 1, dtype=np.int64)
    np.cumsum(sample_counts, out=sample_offsets[1:])

    vertex_cells = _cells_of_points(lats, lons, res)
    sample_cells = _cells_of_points(sample_lats, sample_lons, res)
    across_position = kind[rings][owner] == 2
    cut_cells = np.zeros(take.size, dtype=np.int64)
    if across_position.any():
        on = np.flatnonzero(across_position)
        local = np.full(take.size, -1, dtype=np.int64)
        local[on] = np.arange(on.size)
        cut_cells[on] = _cut_cells(lons[on], lats[on], local[nxt[on]], res)
    cut_per_ring: dict[int, set[int]] = {}
    for position in np.flatnonzero(cut_cells).tolist():
        cut_per_ring.setdefault(int(owner[position]), set()).add(int(cut_cells[position]))
    bounds = offsets.tolist()
    sample_bounds = sample_offsets.tolist()
    exact = exact_samples[rings].tolist()
    keys: list[tuple[int, ...]] = []
    for k_ring in range(rings.size):
        lo, hi = bounds[k_ring], bounds[k_ring + 1]
        cells = set(vertex_cells[lo:hi])
        cells.update(sample_cells[sample_bounds[k_ring] : sample_bounds[k_ring + 1]])
        if exact[k_ring]:
            points = list(zip(lons[lo:hi].tolist(), lats[lo:hi].tolist(), strict=True))
            _add_edge_samples(points, res, cells, closed=True)
        keys.append(tuple(sorted(cells)))
    across = (kind[rings] == 2).tolist()
    regions = [
        _fast_regions_360(key) if crossing else _fast_regions(key)
        for key, crossing in zip(keys, across, strict=True)
    ]
    for k_ring, cuts in cut_per_ring.items():
        # Every cut point must lie surely in a vertex cell, else leave it to the exact code.
        if not cuts <= set(keys[k_ring]):
            regions[k_ring] = None
    chosen = np.array([i for i, region in enumerate(regions) if region is not None], dtype=int)
    if chosen.size == 0:
        return out
    footprints = shapely.polygons(
        shapely.linearrings(
            np.column_stack((np.where(kind[rings][owner] == 2, np.mod(lons, 360.0), lons), lats)),
            indices=owner,
        )
    )[chosen]
    inner = np.array([regions[i][0] for i in chosen.tolist()], dtype=object)  # type: ignore[index]
    outer = np.array([regions[i][1] for i in chosen.tolist()], dtype=object)  # type: ignore[index]
    settled = (
        shapely.is_valid(footprints)
        & shapely.contains_properly(inner, footprints)
        & ~shapely.intersects(outer, footprints)
    )
    for i in chosen[settled].tolist():
        region = regions[i]
        assert region is not None
        out[index[rings[i]]] = list(region[2])
    return out
