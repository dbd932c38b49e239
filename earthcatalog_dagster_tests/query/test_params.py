"""Parsing and validation of search parameters (no catalog needed)."""

from __future__ import annotations

import datetime as dt

import pytest
import shapely
from shapely.geometry import Point, box

from earthcatalog_dagster.query.params import (
    Fields,
    QueryError,
    build_params,
    parse_bbox,
    parse_datetime,
    parse_fields,
    parse_filter,
    parse_intersects,
    parse_sortby,
)

UTC = dt.UTC


def test_bbox_plain_text_and_3d() -> None:
    assert parse_bbox([-10, -5, 10, 5]).equals(box(-10, -5, 10, 5))
    assert parse_bbox("-10,-5,10,5").equals(box(-10, -5, 10, 5))
    assert parse_bbox([-10, -5, 0, 10, 5, 100]).equals(box(-10, -5, 10, 5))


def test_bbox_across_the_antimeridian_is_two_boxes() -> None:
    area = parse_bbox([170, 50, -170, 70])
    assert shapely.get_num_geometries(area) == 2
    assert area.contains(Point(175, 60)) and area.contains(Point(-175, 60))
    assert not area.intersects(Point(0, 60))


@pytest.mark.parametrize(
    "value", [[1, 2, 3], [0, 10, 1, 5], [0, 0, 200, 1], [0, -91, 1, 1], "a,b,c,d", [0, 0, 1, "nan"]]
)
def test_bad_bbox(value) -> None:
    with pytest.raises(QueryError):
        parse_bbox(value)


def test_intersects_polygon_across_the_antimeridian_is_cut() -> None:
    ring = [[170, 60], [-170, 60], [-170, 65], [170, 65], [170, 60]]
    area = parse_intersects({"type": "Polygon", "coordinates": [ring]})
    assert area.equals(shapely.union(box(170, 60, 180, 65), box(-180, 60, -170, 65)))
    assert not area.intersects(Point(0, 62))
    # Not crossings: an ordinary polygon, and the ±180 edges of a world-wide box.
    plain = {"type": "Polygon", "coordinates": [[[-10, 0], [10, 0], [10, 5], [-10, 0]]]}
    assert parse_intersects(plain).equals(shapely.Polygon([(-10, 0), (10, 0), (10, 5)]))
    world = [[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]
    assert parse_intersects({"type": "Polygon", "coordinates": [world]}).area == 360 * 180
    # A ring round the pole stands for the cap between it and the pole.
    cap = parse_intersects(
        {"type": "Polygon", "coordinates": [[[0, 80], [90, 80], [180, 80], [-90, 80], [0, 80]]]}
    )
    assert cap.contains(Point(45, 85)) and cap.bounds == (-180.0, 80.0, 180.0, 90.0)
    # In a MultiPolygon, only the crossing part is cut.
    multi = {"type": "MultiPolygon", "coordinates": [[ring], [[[0, 0], [1, 0], [1, 1], [0, 0]]]]}
    assert parse_intersects(multi).area == 100 + 0.5


def test_intersects_forms() -> None:
    geojson = {"type": "Point", "coordinates": [-140.0, 60.0]}
    assert parse_intersects(geojson).equals(Point(-140, 60))
    assert parse_intersects('{"type": "Point", "coordinates": [-140.0, 60.0]}').equals(
        Point(-140, 60)
    )
    assert parse_intersects(Point(1, 2)).equals(Point(1, 2))
    with pytest.raises(QueryError):
        parse_intersects("{not json")
    with pytest.raises(QueryError):
        parse_intersects({"type": "Point", "coordinates": [0, 95]})
    with pytest.raises(QueryError):
        build_params(bbox=[0, 0, 1, 1], intersects=geojson)


def test_datetime_instant_interval_open_ends() -> None:
    t = dt.datetime(2020, 5, 1, 12, tzinfo=UTC)
    assert parse_datetime("2020-05-01T12:00:00Z") == (t, t)
    assert parse_datetime("2020-05-01T14:00:00+02:00") == (t, t)
    assert parse_datetime("2020-01-01T00:00:00Z/..") == (dt.datetime(2020, 1, 1, tzinfo=UTC), None)
    assert parse_datetime("../2020-01-01T00:00:00Z") == (None, dt.datetime(2020, 1, 1, tzinfo=UTC))
    assert parse_datetime("/2020-01-01T00:00:00Z")[0] is None
    start, end = parse_datetime("2020-01-01/2022-12-31")
    assert start == dt.datetime(2020, 1, 1, tzinfo=UTC)
    assert end == dt.datetime(2022, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    ["yesterday", "../..", "2021-01-01/2020-01-01", "2020-13-01", "a/b/c", "2020-01-01T25:00Z"],
)
def test_bad_datetime(value) -> None:
    with pytest.raises(QueryError):
        parse_datetime(value)


def test_filter_text_json_and_errors() -> None:
    text = parse_filter("percent_valid_pixels > 50")
    as_json = parse_filter({"op": ">", "args": [{"property": "percent_valid_pixels"}, 50]})
    assert text.to_json() == as_json.to_json()
    assert parse_filter('{"op": "=", "args": [{"property": "platform"}, "LC08"]}') is not None
    with pytest.raises(QueryError, match="invalid CQL2"):
        parse_filter("percent_valid_pixels >")
    with pytest.raises(QueryError) as error:
        parse_filter("a >")
    assert "\n" not in str(error.value)


def test_sortby_and_fields() -> None:
    assert parse_sortby("-datetime,id") == (("datetime", False), ("id", True))
    assert parse_sortby([{"field": "properties.platform", "direction": "desc"}]) == (
        ("platform", False),
    )
    with pytest.raises(QueryError):
        parse_sortby("-no_such_field")
    assert parse_fields("id,-assets,properties.datetime") == Fields(
        frozenset({"id", "properties.datetime"}), frozenset({"assets"})
    )
    assert parse_fields({"include": ["id"], "exclude": []}).include == {"id"}
    with pytest.raises(QueryError):
        build_params(limit=0)
