"""Batch fan-out: the H3 cells of every footprint of a batch, at once where possible.

:func:`fan_out` gives exactly what :func:`~earthcatalog_dagster.core.partitioning.
cells_for_geometry` gives item by item (that module states the semantics and stays the
exact reference); this module only makes the common case cheap, reusing the per-item
module's own rules (sample step, polar zone, unwrapping, folding) so both read a
footprint the same way.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import h3.api.basic_int as h3
import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import Polygon, box

from earthcatalog_dagster.core.partitioning import (
    _EPS,
    _POLAR_ZONE,
    _SAMPLE_STEP,
    _add_edge_samples,
    _fold,
    _plain_outline,
    _unwrap,
    _valid,
    cells_for_geometry,
)

__all__ = ["fan_out"]


def fan_out(geometries: Sequence[dict[str, Any] | None], resolution: int) -> list[list[str]]:
    """``cells_for_geometry`` of each geometry, in order: one list of cells per item.

    Identical results, computed for the whole batch at once where possible: plain
    footprints whose vertex cells already hold every cell they overlap (most of them) are
    settled with numpy and vectorized shapely (see "the batch fast path" below for why
    that is exact); the rest go through ``cells_for_geometry`` one by one.
    """
    items = geometries if isinstance(geometries, list) else list(geometries)
    if not items or not isinstance(resolution, int) or not 0 <= resolution <= 15:
        return [cells_for_geometry(geometry, resolution) for geometry in items]
    fast = _fan_out_fast(items, resolution)
    return [
        cells if cells is not None else cells_for_geometry(geometry, resolution)
        for cells, geometry in zip(fast, items, strict=True)
    ]


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
