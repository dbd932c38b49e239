"""Tests for the H3 partitioning of footprints, checked against a brute-force oracle.

The oracle is written independently of the module: it draws every cell of a resolution as a
shapely polygon in (lon, lat) — edges densified along their great circles (numpy slerp),
cells across the antimeridian folded into two pieces, the pole's cell as the cap above its
boundary — and intersects the footprint with all of them. Its own test proves it agrees with
``latlng_to_cell``, which is exact. It lives in :mod:`earthcatalog_dagster_tests.helpers`,
where the end-to-end tests take their expected cells from it too.
"""

from __future__ import annotations

import math
import random

import h3
import pytest
import shapely
from shapely.geometry import LineString

from earthcatalog_dagster.core.fanout import fan_out
from earthcatalog_dagster.core.partitioning import DEFAULT_RESOLUTION, cells_for_geometry
from earthcatalog_dagster.layout import NO_CELL
from earthcatalog_dagster_tests.helpers import (
    continuous,
    distance_to,
    oracle,
    oracle_cells,
    ring_of,
)

NORTH_POLE_CELL = h3.latlng_to_cell(90.0, 0.0, 1)
SOUTH_POLE_CELL = h3.latlng_to_cell(-90.0, 0.0, 1)

# --- synthetic ITS_LIVE footprints ----------------------------------------------------------

EARTH_KM = 6371.0


def _destination(lat: float, lon: float, bearing: float, km: float) -> tuple[float, float]:
    """(lat, lon) reached from a point along a great circle (bearing in degrees)."""
    phi, lam, theta, delta = map(math.radians, (lat, lon, bearing, math.degrees(km / EARTH_KM)))
    phi2 = math.asin(
        math.sin(phi) * math.cos(delta) + math.cos(phi) * math.sin(delta) * math.cos(theta)
    )
    lam2 = lam + math.atan2(
        math.sin(theta) * math.sin(delta) * math.cos(phi),
        math.cos(delta) - math.sin(phi) * math.sin(phi2),
    )
    return math.degrees(phi2), (math.degrees(lam2) + 180.0) % 360.0 - 180.0


def footprint(
    lat: float, lon: float, width_km: float = 185.0, height_km: float = 185.0, rotation=0.0
) -> dict:
    """A projected scene rectangle reprojected to lon/lat, like an ITS_LIVE item geometry.

    Azimuthal-equidistant rectangle around (lat, lon), five points per edge, coordinates
    rounded to 4 decimals, longitudes in [-180, 180) (so a crossing shows as a jump).
    """
    w, h = width_km / 2.0, height_km / 2.0
    corners = [(-w, -h), (w, -h), (w, h), (-w, h)]
    ring = []
    for i in range(4):
        (x0, y0), (x1, y1) = corners[i], corners[(i + 1) % 4]
        for k in range(5):
            x, y = x0 + (x1 - x0) * k / 5, y0 + (y1 - y0) * k / 5
            bearing = math.degrees(math.atan2(x, y)) + rotation
            plat, plon = _destination(lat, lon, bearing, math.hypot(x, y))
            ring.append([round(plon, 4), round(plat, 4)])
    ring.append(ring[0])
    return {"type": "Polygon", "coordinates": [ring]}


def random_footprint(rng: random.Random, kind: str) -> dict:
    """A random ITS_LIVE-like footprint of one kind: ordinary, antimeridian, polar, cap."""
    sign = rng.choice([1.0, -1.0])
    if kind == "ordinary":
        lat, lon = rng.uniform(-75.0, 75.0), rng.uniform(-175.0, 175.0)
    elif kind == "antimeridian":
        lat, lon = rng.uniform(-78.0, 78.0), sign * rng.uniform(179.0, 180.0)
    elif kind == "polar":  # near a pole, mostly not encircling it
        lat, lon = sign * rng.uniform(80.0, 88.5), rng.uniform(-180.0, 180.0)
    elif kind == "cap":  # the scene covers the pole
        lat, lon = sign * rng.uniform(89.2, 90.0), rng.uniform(-180.0, 180.0)
    else:
        raise ValueError(kind)
    return footprint(
        lat, lon, rng.uniform(60.0, 320.0), rng.uniform(60.0, 320.0), rng.uniform(0.0, 90.0)
    )


def h3_overlap(geometry: dict, resolution: int = 1) -> set[str]:
    """H3's own overlap fill of a plain (non-crossing, non-polar) polygon."""
    shape = h3.LatLngPoly([(y, x) for x, y in ring_of(geometry)[:-1]])
    return set(h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap"))


def h3_centre(geometry: dict, resolution: int = 1) -> set[str]:
    shape = h3.LatLngPoly([(y, x) for x, y in ring_of(geometry)[:-1]])
    return set(h3.h3shape_to_cells_experimental(shape, resolution, contain="center"))


def vertex_cells(geometry: dict, resolution: int = 1) -> set[str]:
    return {h3.latlng_to_cell(y, x, resolution) for x, y in ring_of(geometry)}


def square(lon: float, lat: float, half: float) -> dict:
    """A small lon/lat square, densified like a footprint (five points per edge)."""
    corners = [
        (lon - half, lat - half),
        (lon + half, lat - half),
        (lon + half, lat + half),
        (lon - half, lat + half),
    ]
    ring = []
    for i in range(4):
        (x0, y0), (x1, y1) = corners[i], corners[(i + 1) % 4]
        ring += [[x0 + (x1 - x0) * k / 5, y0 + (y1 - y0) * k / 5] for k in range(5)]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


# --- the oracle itself ----------------------------------------------------------------------


def test_oracle_tiles_the_world_and_agrees_with_latlng_to_cell():
    cells, areas, _tree = oracle_cells(1)
    assert len(cells) == 842
    assert sum(a.area for a in areas) == pytest.approx(360.0 * 180.0, rel=1e-9)
    index = {c: i for i, c in enumerate(cells)}
    rng = random.Random(11)
    disagreements = 0
    for _ in range(3000):
        lat = math.degrees(math.asin(rng.uniform(-1.0, 1.0)))
        lon = rng.uniform(-180.0, 180.0)
        area = areas[index[h3.latlng_to_cell(lat, lon, 1)]]
        disagreements += not area.buffer(1e-6).covers(shapely.Point(lon, lat))
    assert disagreements == 0
    # The pole's cells are the caps above (below) their boundaries.
    assert areas[index[NORTH_POLE_CELL]].covers(shapely.Point(123.0, 90.0))
    assert areas[index[SOUTH_POLE_CELL]].covers(shapely.Point(-77.0, -90.0))


# --- null and odd geometries ----------------------------------------------------------------


def test_null_geometry_is_no_cell():
    assert cells_for_geometry(None) == [NO_CELL] == ["__none__"]
    assert fan_out([None], 1) == [["__none__"]]


@pytest.mark.parametrize(
    "geometry",
    [
        {"type": "Polygon", "coordinates": []},
        {"type": "Polygon", "coordinates": [[]]},
        {"type": "MultiPolygon", "coordinates": []},
        {"type": "Polygon", "coordinates": [[["a", "b"], [None, 1]]]},
        {"type": "Polygon", "coordinates": [[[float("nan"), 10.0]] * 4]},
        {"type": "Curve", "coordinates": [[0, 0], [1, 1]]},
        {"type": "Polygon"},
        {"type": "Polygon", "coordinates": 5},
        {},
    ],
)
def test_geometries_without_a_position_are_no_cell(geometry):
    assert cells_for_geometry(geometry) == [NO_CELL]


def test_default_resolution_is_1():
    assert DEFAULT_RESOLUTION == 1
    cells = cells_for_geometry(square(10.0, 47.0, 0.3))
    assert cells and all(h3.get_resolution(c) == 1 for c in cells)


def test_invalid_resolution_raises():
    with pytest.raises(ValueError):
        cells_for_geometry(square(10.0, 47.0, 0.3), 16)


def test_degenerate_polygon_is_never_empty():
    point = [12.5, 46.2]
    geometry = {"type": "Polygon", "coordinates": [[point, point, point, point]]}
    assert cells_for_geometry(geometry) == [h3.latlng_to_cell(46.2, 12.5, 1)]
    two = {"type": "Polygon", "coordinates": [[[12.5, 46.2], [12.6, 46.3], [12.5, 46.2]]]}
    assert cells_for_geometry(two) == [h3.latlng_to_cell(46.2, 12.5, 1)]


def test_string_numbers_bad_positions_and_latitude_overshoot_are_tolerated():
    good = square(-140.0, 60.0, 0.4)
    as_strings = {
        "type": "Polygon",
        "coordinates": [[[str(x), str(y)] for x, y in good["coordinates"][0]]],
    }
    assert cells_for_geometry(as_strings) == cells_for_geometry(good)
    with_junk = {
        "type": "Polygon",
        "coordinates": [
            [*good["coordinates"][0][:-1], [float("inf"), 1.0], "x", good["coordinates"][0][0]]
        ],
    }
    assert cells_for_geometry(with_junk) == cells_for_geometry(good)
    overshoot = {"type": "Point", "coordinates": [10.0, 90.00001]}
    assert cells_for_geometry(overshoot) == [NORTH_POLE_CELL]


def test_points_and_lines():
    assert cells_for_geometry({"type": "Point", "coordinates": [-45.0, 72.0]}) == [
        h3.latlng_to_cell(72.0, -45.0, 1)
    ]
    multi = {"type": "MultiPoint", "coordinates": [[-45.0, 72.0], [10.0, 46.0]]}
    assert cells_for_geometry(multi) == sorted(
        {h3.latlng_to_cell(72.0, -45.0, 1), h3.latlng_to_cell(46.0, 10.0, 1)}
    )
    # A two-vertex line 20° long: its cells are those the (lon, lat) segment crosses.
    line = {"type": "LineString", "coordinates": [[0.0, 10.0], [20.0, 12.0]]}
    cells, _areas, tree = oracle_cells(1)
    expected = {cells[i] for i in tree.query(LineString([(0, 10), (20, 12)]), "intersects")}
    got = set(cells_for_geometry(line))
    assert got == expected
    assert len(got) > 2
    collection = {"type": "GeometryCollection", "geometries": [line, multi]}
    assert set(cells_for_geometry(collection)) == got | set(cells_for_geometry(multi))


# --- ordinary footprints --------------------------------------------------------------------


def test_footprint_inside_one_cell_gives_exactly_that_cell():
    cell = h3.latlng_to_cell(47.0, 10.0, 1)
    lat, lon = h3.cell_to_latlng(cell)
    assert cells_for_geometry(footprint(lat, lon, 150.0, 150.0, 20.0)) == [cell]
    assert cells_for_geometry(square(lon, lat, 0.5), 1) == [cell]


def test_footprint_straddling_a_cell_boundary_gives_both_cells():
    a = h3.latlng_to_cell(47.0, 10.0, 1)
    b = h3.grid_ring(a, 1)[0]
    edge = h3.directed_edge_to_boundary(h3.cells_to_directed_edge(a, b))
    (lat0, lon0), (lat1, lon1) = edge[0], edge[1]  # first segment of the shared edge
    middle_lat, middle_lon = (lat0 + lat1) / 2.0, (lon0 + lon1) / 2.0
    geometry = square(middle_lon, middle_lat, 0.1)
    assert cells_for_geometry(geometry) == sorted([a, b])
    # Centre containment would find no cell at all: this is why we use overlap.
    assert h3_centre(geometry) == set()


def test_ordinary_footprints_equal_h3_overlap_plus_vertex_cells():
    rng = random.Random(2)
    equal_to_h3 = 0
    total = 300
    for _ in range(total):
        geometry = random_footprint(rng, "ordinary")
        got = set(cells_for_geometry(geometry))
        overlap = h3_overlap(geometry)
        assert got == overlap | vertex_cells(geometry)
        assert got >= h3_centre(geometry)
        equal_to_h3 += got == overlap
    # H3's fill alone is right for nearly all; the vertex cells repair the rest.
    assert equal_to_h3 >= 0.97 * total


def test_h3_overlap_miss_is_repaired_by_vertex_cells():
    # Measured on h3 4.5: overlap fill gives only 81147ffffffffff although 15 of the 20
    # vertices lie in 8104bffffffffff.
    ring = [
        [141.9279, 62.6937], [142.2156, 62.6864], [142.5032, 62.6784], [142.7906, 62.6698],
        [143.0778, 62.6607], [143.3649, 62.651], [143.4309, 63.0447], [143.4989, 63.4383],
        [143.5687, 63.832], [143.6405, 64.2256], [143.7145, 64.6191], [143.407, 64.6296],
        [143.0992, 64.6394], [142.7912, 64.6485], [142.483, 64.6571], [142.1747, 64.665],
        [142.1226, 64.2708], [142.0719, 63.8765], [142.0226, 63.4823], [141.9746, 63.088],
        [141.9279, 62.6937],
    ]  # fmt: skip
    geometry = {"type": "Polygon", "coordinates": [ring]}
    assert cells_for_geometry(geometry) == ["8104bffffffffff", "81147ffffffffff"]
    assert "8104bffffffffff" in oracle(geometry)


def test_h3_refusing_a_shape_falls_back_to_the_walk(monkeypatch):
    from earthcatalog_dagster.core import partitioning

    def refuse(*_args, **_kwargs):
        raise h3.H3FailedError("refused")

    geometry = footprint(61.0, -147.0, 300.0, 250.0, 25.0)
    monkeypatch.setattr(partitioning.h3, "h3shape_to_cells_experimental", refuse)
    assert set(cells_for_geometry(geometry)) == oracle(geometry)
    assert set(cells_for_geometry(_crossing_ring(wrapped=True))) == oracle(
        _crossing_ring(wrapped=True)
    )


def test_polygon_with_a_hole():
    inner_cell = h3.latlng_to_cell(30.0, 60.0, 2)
    lat, lon = h3.cell_to_latlng(inner_cell)
    outer = [[lon - 6, lat - 6], [lon + 6, lat - 6], [lon + 6, lat + 6], [lon - 6, lat + 6]]
    hole = [[lon - 2, lat - 2], [lon + 2, lat - 2], [lon + 2, lat + 2], [lon - 2, lat + 2]]
    geometry = {"type": "Polygon", "coordinates": [[*outer, outer[0]], [*hole, hole[0]]]}
    got = set(cells_for_geometry(geometry, 2))
    assert inner_cell not in got
    assert h3.latlng_to_cell(lat + 4, lon + 4, 2) in got
    shape = h3.LatLngPoly([(y, x) for x, y in outer], [(y, x) for x, y in hole])
    assert got >= set(h3.h3shape_to_cells_experimental(shape, 2, contain="overlap"))


def test_multipolygon_is_the_union_of_its_parts():
    alaska = footprint(61.0, -147.0, 200.0, 180.0, 10.0)
    himalaya = footprint(28.0, 86.9, 185.0, 185.0, 0.0)
    across = footprint(65.0, 179.8, 200.0, 200.0, 30.0)
    geometry = {
        "type": "MultiPolygon",
        "coordinates": [alaska["coordinates"], himalaya["coordinates"], across["coordinates"]],
    }
    expected = (
        set(cells_for_geometry(alaska))
        | set(cells_for_geometry(himalaya))
        | set(cells_for_geometry(across))
    )
    assert cells_for_geometry(geometry) == sorted(expected)
    assert set(cells_for_geometry(geometry)) == oracle(geometry)


# --- antimeridian ---------------------------------------------------------------------------


def _crossing_ring(wrapped: bool) -> dict:
    """A 179.2°E → 179.4°W footprint at 62°N, written with a jump or past 180."""
    west, east = 179.2, 180.6  # east edge at -179.4
    ring = []
    for k in range(6):
        ring.append([west + (east - west) * k / 5, 61.5])
    for k in range(1, 6):
        ring.append([east, 61.5 + k / 5])
    for k in range(1, 6):
        ring.append([east - (east - west) * k / 5, 62.5])
    for k in range(1, 5):
        ring.append([west, 62.5 - k / 5])
    ring.append(ring[0])
    if wrapped:
        ring = [[round((x + 180.0) % 360.0 - 180.0, 4), y] for x, y in ring]
    return {"type": "Polygon", "coordinates": [ring]}


def test_antimeridian_footprint_is_split_and_both_sides_filled():
    jumping = _crossing_ring(wrapped=True)
    beyond = _crossing_ring(wrapped=False)
    assert any(x < 0 for x, _ in ring_of(jumping)) and any(x > 0 for x, _ in ring_of(jumping))
    assert max(x for x, _ in ring_of(beyond)) > 180.0
    got = cells_for_geometry(jumping)
    assert cells_for_geometry(beyond) == got
    assert h3.latlng_to_cell(62.0, 179.6, 1) in got
    assert h3.latlng_to_cell(62.0, -179.6, 1) in got
    assert set(got) == oracle(jumping)
    # The union of the two halves, each filled on its own by H3.
    halves = set()
    for west, east in ((179.2, 180.0 - 1e-7), (-180.0 + 1e-7, -179.4)):
        shape = h3.LatLngPoly([(61.5, west), (61.5, east), (62.5, east), (62.5, west)])
        halves |= set(h3.h3shape_to_cells_experimental(shape, 1, contain="overlap"))
    assert halves <= set(got)
    assert len(got) <= 4  # not the world-wrapping band a naive fill can return


@pytest.mark.parametrize("west", [179.0, -180.0])
def test_edges_exactly_on_the_antimeridian(west):
    east = west + 1.0
    geometry = square(west + 0.5, 55.0, 0.5)
    assert min(x for x, _ in ring_of(geometry)) == pytest.approx(west)
    assert max(x for x, _ in ring_of(geometry)) == pytest.approx(east)
    got = cells_for_geometry(geometry)
    assert h3.latlng_to_cell(55.0, west + 0.5, 1) in got
    assert set(got) == oracle(geometry)


def test_antimeridian_at_resolution_5_fills_both_halves():
    # Cells of ~10 km: most cells of the footprint hold no vertex, only the fill finds them.
    jumping = _crossing_ring(wrapped=True)
    got = set(cells_for_geometry(jumping, 5))
    halves = set()
    for west, east in ((179.2, 180.0 - 1e-7), (-180.0 + 1e-7, -179.4)):
        shape = h3.LatLngPoly([(61.5, west), (61.5, east), (62.5, east), (62.5, west)])
        halves |= set(h3.h3shape_to_cells_experimental(shape, 5, contain="overlap"))
    assert got == halves | vertex_cells(jumping, 5)
    filled_only = got - vertex_cells(jumping, 5)
    centre_lons = [h3.cell_to_latlng(c)[1] for c in filled_only]
    assert sum(lon > 0 for lon in centre_lons) >= 3
    assert sum(lon < 0 for lon in centre_lons) >= 3


@pytest.mark.slow  # ~5 s: the resolution-2 oracle of the whole world
def test_antimeridian_at_resolution_2():
    geometry = footprint(-71.0, 179.9, 250.0, 200.0, 15.0)
    got = cells_for_geometry(geometry, 2)
    assert {h3.get_resolution(c) for c in got} == {2}
    assert set(got) == oracle(geometry, 2)


# --- poles ----------------------------------------------------------------------------------


def test_north_polar_cap_greenland_scene_covering_the_pole():
    # An EPSG:3413 scene of 300 km × 300 km whose centre is 60 km from the pole.
    geometry = footprint(89.46, -45.0, 300.0, 300.0, 0.0)
    lons = continuous([x for x, _ in ring_of(geometry)])
    assert abs(lons[-1] - lons[0]) == pytest.approx(360.0)  # it winds round the pole
    got = cells_for_geometry(geometry)
    assert NORTH_POLE_CELL in got
    assert set(got) == oracle(geometry)
    assert all(h3.cell_to_latlng(c)[0] > 70.0 for c in got)


def test_south_polar_cap_antarctica():
    geometry = footprint(-89.8, 0.0, 250.0, 300.0, 33.0)
    got = cells_for_geometry(geometry)
    assert SOUTH_POLE_CELL in got
    assert set(got) == oracle(geometry)
    assert set(cells_for_geometry(geometry, 2)) == oracle(geometry, 2)
    assert h3.latlng_to_cell(-90.0, 0.0, 2) in cells_for_geometry(geometry, 2)


def test_large_cap_reaching_past_the_pole_cell():
    # A ring at 80°N all the way round: the cap holds the pole's cell and its neighbours.
    ring = [[lon, 80.0] for lon in range(-180, 180, 10)]
    geometry = {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}
    got = set(cells_for_geometry(geometry))
    assert got == oracle(geometry)
    assert {NORTH_POLE_CELL, *h3.grid_ring(NORTH_POLE_CELL, 1)} <= got


def test_cap_written_with_explicit_pole_vertices_gives_the_same_cells():
    lons = list(range(-180, 181, 15))
    encircling = [[lon, 86.0] for lon in lons[:-1]]
    explicit = [[lon, 86.0] for lon in lons] + [[180.0, 90.0], [-180.0, 90.0]]
    a = cells_for_geometry({"type": "Polygon", "coordinates": [[*encircling, encircling[0]]]})
    b = cells_for_geometry({"type": "Polygon", "coordinates": [[*explicit, explicit[0]]]})
    assert a == b
    assert NORTH_POLE_CELL in a


@pytest.mark.parametrize(
    ("lon", "expected"),
    [
        # H3's fill alone misses 81037ffffffffff here ...
        (-80.0, ["81033ffffffffff", "81037ffffffffff"]),
        (20.0, ["81007ffffffffff", "8100fffffffffff", "81033ffffffffff"]),
        # ... and adds the pole's cell 81033ffffffffff here, the footprint being clear of it.
        (80.0, ["8100fffffffffff"]),
    ],
)
def test_near_pole_footprint_not_encircling(lon, expected):
    # 84.7–88.2°N, spanning 85° of longitude, but not round the pole.
    geometry = footprint(86.6, lon, 360.0, 360.0, 0.0)
    lons = continuous([x for x, _ in ring_of(geometry)])
    lats = [y for _, y in ring_of(geometry)]
    assert lons[-1] == pytest.approx(lons[0])  # not encircling
    assert max(lons) - min(lons) > 80.0
    assert min(lats) < 85.0 and max(lats) > 88.0
    assert cells_for_geometry(geometry) == expected
    assert set(expected) == oracle(geometry)


def test_polar_footprints_crossing_the_antimeridian():
    for lat in (83.0, -84.0, 88.0):
        geometry = footprint(lat, 179.95, 200.0, 200.0, 10.0)
        assert set(cells_for_geometry(geometry)) == oracle(geometry)


# --- against the oracle, in bulk ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "count"), [("ordinary", 120), ("antimeridian", 80), ("polar", 100), ("cap", 40)]
)
def test_random_footprints_against_brute_force_oracle(kind, count):
    rng = random.Random(f"partitioning-{kind}")
    for _ in range(count):
        geometry = random_footprint(rng, kind)
        got = set(cells_for_geometry(geometry))
        expected = oracle(geometry)
        assert got, geometry
        assert expected <= got, (geometry, expected - got)  # nothing missed
        # Extras only where H3's straight cell edges differ from the true arcs: close by.
        for cell in got - expected:
            assert distance_to(cell, geometry) < 0.25, (geometry, cell)
        if kind in ("polar", "cap"):
            assert got == expected, geometry


def test_random_footprints_at_resolution_2_against_oracle():
    rng = random.Random(5)
    for kind in ("ordinary", "antimeridian", "polar", "cap"):
        for _ in range(8):
            geometry = random_footprint(rng, kind)
            got = set(cells_for_geometry(geometry, 2))
            expected = oracle(geometry, 2)
            assert expected <= got, (geometry, expected - got)
            for cell in got - expected:
                assert distance_to(cell, geometry, 2) < 0.25, (geometry, cell)


def test_polar_footprints_at_resolution_3_against_oracle():
    # ~60 km cells under 300 km scenes: some cells hold no vertex, only the walk finds them.
    rng = random.Random(8)
    walked_only = 0
    for low, high in ((80.0, 88.0), (89.2, 90.0)):  # near a pole, then round it
        for _ in range(8):
            lat = rng.choice([1.0, -1.0]) * rng.uniform(low, high)
            geometry = footprint(lat, rng.uniform(-180, 180), 320.0, 300.0, rng.uniform(0, 90))
            got = set(cells_for_geometry(geometry, 3))
            assert got == oracle(geometry, 3, polar_only=True), geometry
            walked_only += len(got - vertex_cells(geometry, 3))
    assert walked_only >= 16  # cells that hold no vertex: found by the walk alone


# --- fan_out --------------------------------------------------------------------------------


def test_fan_out_keeps_order_and_matches_cells_for_geometry():
    rng = random.Random(9)
    geometries = [random_footprint(rng, k) for k in ("ordinary", "cap", "antimeridian")]
    geometries.insert(1, None)
    result = fan_out(geometries, 1)
    assert result == [cells_for_geometry(g, 1) for g in geometries]
    assert result[1] == [NO_CELL]
    assert all(r == sorted(set(r)) and r for r in result)
    assert fan_out(geometries, 2) == [cells_for_geometry(g, 2) for g in geometries]


def test_ring_winding_matches_the_fan_out_reading_of_a_ring() -> None:
    from earthcatalog_dagster.core.partitioning import ring_winding

    cap = [(0.0, 85.0), (90.0, 85.0), (180.0, 85.0), (-90.0, 85.0), (0.0, 85.0)]
    assert abs(ring_winding(cap)) == 1
    assert ring_winding(cap[::-1]) == -ring_winding(cap)
    crossing = [(179.5, 60.0), (-179.5, 60.0), (-179.5, 61.0), (179.5, 61.0)]
    assert ring_winding(crossing) == 0
    assert ring_winding([(10.0, 60.0), (11.0, 60.0), (11.0, 61.0)]) == 0
    assert ring_winding([]) == 0
