"""The batch fast path of ``fan_out`` against the exact per-item ``cells_for_geometry``.

``fan_out`` settles most footprints for a whole batch at once (numpy, vectorized shapely)
and skips H3's fill for them; it must give exactly what ``cells_for_geometry`` gives — the
same cells in the same order — on every geometry: ITS_LIVE-like days, random footprints
over the whole globe (near the poles, across the antimeridian, written past ±180), and odd
geometries. Each test also checks the fast path did take part of the batch, so a change
that silently sends everything the slow way does not pass unnoticed.
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from earthcatalog_dagster.core.fanout import _fan_out_fast, fan_out
from earthcatalog_dagster.core.partitioning import cells_for_geometry
from earthcatalog_dagster.layout import NO_CELL
from earthcatalog_dagster.synthetic import make_item
from earthcatalog_dagster_tests.core.test_partitioning import footprint, random_footprint, square

RESOLUTIONS = (0, 1, 2, 3)


def _assert_identical(geometries: list, resolution: int) -> float:
    """``fan_out`` equals ``cells_for_geometry`` item by item; returns the fast share."""
    expected = [cells_for_geometry(g, resolution) for g in geometries]
    got = fan_out(geometries, resolution)
    assert len(got) == len(expected)
    for geometry, want, have in zip(geometries, expected, got, strict=True):
        assert have == want, (resolution, geometry)
    settled = _fan_out_fast(geometries, resolution)
    return sum(cells is not None for cells in settled) / max(1, len(geometries))


def _synthetic_day(count: int, seed: int) -> list[dict]:
    """Footprints of ITS_LIVE-like items, as a day's batch mixes them (plus forced polar,
    pole-encircling and antimeridian ones)."""
    rng = np.random.default_rng(seed)
    items = [make_item(rng) for _ in range(count)]
    items += [make_item(rng, antimeridian=True) for _ in range(count // 20)]
    for polar in ("north", "south", "north_pole", "south_pole"):
        items += [make_item(rng, polar=polar) for _ in range(count // 100)]
    return [item["geometry"] for item in items]


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_fast_fan_out_matches_exact_on_a_synthetic_day(resolution: int) -> None:
    geometries = _synthetic_day(1200 if resolution == 1 else 400, seed=40 + resolution)
    share = _assert_identical(geometries, resolution)
    assert share > 0.2


def _globe_footprints(rng: random.Random, count: int) -> list[dict]:
    """Scene-like footprints anywhere (uniform on the sphere), near the antimeridian and
    near the poles, 10–450 km a side."""
    geometries = []
    for i in range(count):
        where = i % 4
        if where < 2:
            lat, lon = math.degrees(math.asin(rng.uniform(-1.0, 1.0))), rng.uniform(-180, 180)
        elif where == 2:
            lat, lon = rng.uniform(-80.0, 80.0), rng.choice([1, -1]) * rng.uniform(177, 180)
        else:
            lat, lon = rng.choice([1, -1]) * rng.uniform(70.0, 90.0), rng.uniform(-180, 180)
        width, height = rng.uniform(10.0, 450.0), rng.uniform(10.0, 450.0)
        geometries.append(footprint(lat, lon, width, height, rng.uniform(0.0, 90.0)))
    return geometries


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_fast_fan_out_matches_exact_on_random_footprints_over_the_globe(resolution: int) -> None:
    rng = random.Random(f"fast-path-{resolution}")
    geometries = _globe_footprints(rng, 300)
    for kind in ("ordinary", "antimeridian", "polar", "cap"):
        geometries += [random_footprint(rng, kind) for _ in range(15)]
    share = _assert_identical(geometries, resolution)
    assert share > 0.3


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_fast_fan_out_matches_exact_across_and_past_the_antimeridian(resolution: int) -> None:
    # Lon/lat squares around ±180, written with a jump (179.9 → -179.9) and written past
    # ±180 (179.9 → 180.1), in both directions.
    rng = random.Random(f"across-{resolution}")
    geometries = []
    for _ in range(60):
        lon, lat, half = rng.uniform(178.0, 182.0), rng.uniform(-75.0, 75.0), rng.uniform(0.05, 2)
        wrapped = square(lon, lat, half)
        jumping = {
            "type": "Polygon",
            "coordinates": [
                [[(x + 180.0) % 360.0 - 180.0, y] for x, y in wrapped["coordinates"][0]]
            ],
        }
        geometries += [wrapped, square(lon - 360.0, lat, half), jumping]
    share = _assert_identical(geometries, resolution)
    assert share > 0.05


ODD_GEOMETRIES: list = [
    None,
    {},
    {"type": "Curve", "coordinates": [[0, 0], [1, 1]]},
    {"type": "Polygon"},
    {"type": "Polygon", "coordinates": 5},
    {"type": "Polygon", "coordinates": []},
    {"type": "Polygon", "coordinates": [[]]},
    {"type": "Polygon", "coordinates": [[["a", "b"], [None, 1]]]},
    {"type": "Polygon", "coordinates": [[[float("nan"), 10.0]] * 4]},
    {"type": "Polygon", "coordinates": [[[10.0, 47.0], [10.1, 47.0]]]},  # two positions
    {"type": "Polygon", "coordinates": [[[10.0, 47.0]] * 4]},  # one repeated position
    {"type": "Polygon", "coordinates": [[[10, 47], [11, 47], [11, 48], [10, 48], [10, 47]]]},
    {"type": "Polygon", "coordinates": [[[10, 47], [11, 47], [11, 48], [10, 48]]]},  # open
    {"type": "Polygon", "coordinates": [[["10", "47"], ["11", "47"], ["11", "48"], ["10", "47"]]]},
    {"type": "Polygon", "coordinates": [[[10, 47, 5], [11, 47, 5], [11, 48, 5], [10, 47, 5]]]},
    {"type": "Polygon", "coordinates": [[[10, 47], [11, 47, 3], [11, 48], [10, 47]]]},
    {"type": "Polygon", "coordinates": [[[10, 47], [11, 48], [11, 47], [10, 48], [10, 47]]]},
    {"type": "Polygon", "coordinates": [[[10, 47], [11, 47], [11, 95], [10, 47]]]},  # lat > 90
    {"type": "Polygon", "coordinates": [[[10, 47], [float("inf"), 47], [11, 48], [10, 47]]]},
    {"type": "Polygon", "coordinates": [[[-180, 10], [-179, 10], [-179, 11], [-180, 10]]]},
    {"type": "Polygon", "coordinates": [[[179, 10], [180, 10], [180, 11], [179, 10]]]},
    {"type": "Polygon", "coordinates": [[[539, 10], [540, 10], [540, 11], [539, 10]]]},
    {"type": "Polygon", "coordinates": [[[-30, -50], [60, -50], [60, 50], [-30, 50], [-30, -50]]]},
    {"type": "Polygon", "coordinates": [[[-100, 10], [100, 10], [100, 11], [-100, 10]]]},
    {
        "type": "Polygon",
        "coordinates": [
            [[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]],
            [[2, 2], [3, 2], [3, 3], [2, 2]],
        ],
    },
    {
        "type": "MultiPolygon",
        "coordinates": [
            [[[10, 47], [10.2, 47], [10.2, 47.2], [10, 47]]],
            [[[-60, -10], [-59.8, -10], [-59.8, -9.8], [-60, -10]]],
        ],
    },
    {"type": "Point", "coordinates": [-45.0, 72.0]},
    {"type": "MultiPoint", "coordinates": [[-45.0, 72.0], [179.9, 0.0]]},
    {"type": "LineString", "coordinates": [[-10.0, 40.0], [20.0, 45.0]]},
    {"type": "MultiLineString", "coordinates": [[[179.0, 60.0], [-179.0, 61.0]]]},
    {
        "type": "GeometryCollection",
        "geometries": [
            {"type": "Point", "coordinates": [12.5, 46.2]},
            {"type": "Polygon", "coordinates": [[[10, 47], [10.2, 47], [10.2, 47.2], [10, 47]]]},
        ],
    },
    "not a geometry",
    {"type": "Polygon", "coordinates": [[[0, 89.9], [90, 89.9], [180, 89.9], [-90, 89.9]]]},
    {"type": "Polygon", "coordinates": [[[0, -80], [1, -80], [1, -79.9], [0, -80]]]},
]


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_fast_fan_out_matches_exact_on_odd_geometries(resolution: int) -> None:
    # Odd ones mixed into a batch of ordinary footprints, so the fast path runs around them.
    rng = random.Random(3)
    ordinary = [random_footprint(rng, "ordinary") for _ in range(len(ODD_GEOMETRIES))]
    batch = [g for pair in zip(ODD_GEOMETRIES, ordinary, strict=True) for g in pair]
    _assert_identical(batch, resolution)
    assert fan_out([None, {}], resolution) == [[NO_CELL], [NO_CELL]]


def test_fast_fan_out_edge_cases_of_the_batch() -> None:
    assert fan_out([], 1) == []
    assert fan_out([None], 99) == [[NO_CELL]]  # as cells_for_geometry: None before the check
    with pytest.raises(ValueError):
        fan_out([square(10.0, 47.0, 0.3)], 16)
    # Only odd geometries: nothing for the fast path to take.
    assert fan_out(ODD_GEOMETRIES[:9], 1) == [cells_for_geometry(g, 1) for g in ODD_GEOMETRIES[:9]]
    # One settled result is not shared with another item's list.
    same = square(10.0, 47.0, 0.1)
    first, second = fan_out([same, same], 1)
    assert first == second and first is not second
