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
  antimeridian ~1.2 ms); ``fanout.fan_out`` ~45–55 µs on average, 4–5× less: ~94 % of
  the items are settled by its batch fast path (~35 µs each, across the antimeridian too;
  more than half of it ``latlng_to_cell`` of ~32 vertices and edge samples), the other
  ~6 % need H3's fill and cost what they did. Polar zone ~80 µs once the bounded cell
  cache is warm; a polar cap ~350 µs. The walk grows with the number of cells covered, so
  fine resolutions near the poles cost milliseconds.

Batch fan-out (:mod:`earthcatalog_dagster.core.fanout`)
--------------------------------------------------------
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
import shapely
from h3 import H3BaseException
from shapely import affinity
from shapely.geometry import Polygon, box

from earthcatalog_dagster.layout import NO_CELL

__all__ = ["DEFAULT_RESOLUTION", "cells_for_geometry", "ring_winding"]

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
