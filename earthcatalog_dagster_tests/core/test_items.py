from __future__ import annotations

import copy
import math

import numpy as np
import orjson
import pyarrow as pa
import pytest

from earthcatalog_dagster.core.items import (
    MISMATCH_SCHEMA,
    mismatches,
    parse_decoded,
    parse_items,
    table_to_items,
)
from earthcatalog_dagster.core.schema import WAREHOUSE_SCHEMA
from earthcatalog_dagster.synthetic import make_item


def _items(n: int = 5) -> list[dict]:
    rng = np.random.default_rng(7)
    return [make_item(rng) for _ in range(n)]


def _parse(items: list[dict]):
    bodies = [orjson.dumps(i) for i in items]
    return parse_items(bodies, [f"k/{i['id']}.stac.json" for i in items])


def test_rows_follow_the_schema_and_read_back_exactly() -> None:
    items = _items()
    parsed = _parse(items)
    assert parsed.rejects == []
    assert parsed.table.schema.names == [n for n in WAREHOUSE_SCHEMA.names if n != "grid_partition"]
    assert parsed.table["datetime"].type == pa.timestamp("us", tz="UTC")
    assert parsed.table["percent_valid_pixels"].type == pa.int32()
    assert parsed.table["date_dt"].type == pa.int32()
    assert list(table_to_items(parsed.table)) == items


def test_lossless_coercion_and_lossy_rejection() -> None:
    good, bad = _items(2)
    good["properties"]["percent_valid_pixels"] = "85"
    good["properties"]["date_dt"] = "16.0"
    good["properties"]["latitude"] = "61.2345"
    bad["properties"]["percent_valid_pixels"] = "high"
    parsed = _parse([good, bad])
    assert parsed.table.num_rows == 1
    row = parsed.table.to_pylist()[0]
    assert (row["percent_valid_pixels"], row["date_dt"], row["latitude"]) == (85, 16, 61.2345)
    [reject] = parsed.rejects
    assert reject.key.endswith(f"{bad['id']}.stac.json")
    assert "percent_valid_pixels" in reject.reason and "high" in reject.reason


def test_fractional_integer_and_bad_datetime_are_rejected_with_reason() -> None:
    a, b = _items(2)
    a["properties"]["date_dt"] = 16.5
    b["properties"]["datetime"] = "yesterday"
    parsed = _parse([a, b])
    assert parsed.table.num_rows == 0
    reasons = sorted(r.reason for r in parsed.rejects)
    assert "whole number" in reasons[0] or "whole number" in reasons[1]
    assert any("datetime" in r and "yesterday" in r for r in reasons)


def test_bad_bodies_become_rejects() -> None:
    [item] = _items(1)
    body = orjson.dumps(item)
    bodies = [
        body[: len(body) // 2],
        b'<?xml version="1.0"?><Error><Code>SlowDown</Code></Error>',
        orjson.dumps({k: v for k, v in item.items() if k != "id"}),
        b"[1, 2]",
    ]
    parsed = parse_items(bodies, ["truncated", "page", "noid", "list"])
    assert parsed.table.num_rows == 0
    reasons = {r.key: r.reason for r in parsed.rejects}
    assert "invalid JSON" in reasons["truncated"]
    assert "error page" in reasons["page"] and "SlowDown" in reasons["page"]
    assert "id" in reasons["noid"]
    assert "not a STAC item" in reasons["list"]


def test_unknown_fields_are_kept_losslessly() -> None:
    [item] = _items(1)
    extra = copy.deepcopy(item)
    extra["properties"]["processing:level"] = {"nested": [1, 2]}
    extra["assets"]["metadata"] = {"href": "s3://x/y.json", "roles": ["metadata"], "file:size": 3}
    extra["links"].append({"rel": "via", "href": "https://x", "title": "t", "method": "GET"})
    extra["custom_top"] = 1
    parsed = _parse([extra])
    assert parsed.rejects == []
    assert parsed.table["stac_extra"][0].as_py() is not None
    assert list(table_to_items(parsed.table)) == [extra]


def test_null_geometry_is_kept() -> None:
    [item] = _items(1)
    item["geometry"] = None
    item.pop("bbox")
    parsed = _parse([item])
    assert parsed.rejects == []
    assert parsed.table["geometry"][0].as_py() is None
    assert parsed.geometries == [None]
    assert list(table_to_items(parsed.table)) == [item]


# --- geometry checks (hand-written items: the oracle is the item written here) --------------


def _feature(item_id: str, geometry: dict | None, bbox: list | None = None) -> dict:
    item = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "geometry": geometry,
        "properties": {"datetime": "2020-06-01T00:00:00.000000Z"},
    }
    if bbox is not None:
        item["bbox"] = bbox
    return item


def _polygon(*ring: tuple[float, float]) -> dict:
    return {"type": "Polygon", "coordinates": [[list(p) for p in (*ring, ring[0])]]}


def _parse_decoded(items: list[dict]):
    return parse_decoded(items, [f"p/{item['id']}.stac.json" for item in items])


SQUARE = _polygon((10.0, 60.0), (11.0, 60.0), (11.0, 61.0), (10.0, 61.0))


@pytest.mark.parametrize(
    ("geometry", "words"),
    [
        (_polygon((10.0, 89.0), (11.0, 89.0), (11.0, 90.5)), ["latitude", "90.5"]),
        (_polygon((10.0, -91.0), (11.0, -89.0), (12.0, -89.0)), ["latitude", "-91.0"]),
        # Entirely beyond ±180: not a footprint continued across the antimeridian.
        (_polygon((181.0, 60.0), (182.0, 60.0), (182.0, 61.0)), ["longitude", "181.0"]),
        ({"type": "Point", "coordinates": [-200.0, 10.0]}, ["longitude", "-200.0"]),
        # Projected metres (a footprint never reprojected): far out on both axes.
        (
            _polygon((500000.0, 70.0), (510000.0, 70.0), (510000.0, 71.0)),
            ["longitude", "500000.0"],
        ),
        # Past ±360 even though another position is on the globe.
        (_polygon((179.0, 60.0), (541.0, 60.0), (179.0, 61.0)), ["longitude", "541.0"]),
        (_polygon((10.0, 60.0), (11.0, math.nan), (11.0, 61.0)), ["non-finite", "nan"]),
        (_polygon((10.0, 60.0), (math.inf, 60.0), (11.0, 61.0)), ["non-finite", "inf"]),
        (
            {"type": "MultiPoint", "coordinates": [[10.0, 60.0], [-math.inf, 0.0]]},
            ["non-finite", "-inf"],
        ),
        # Rings GEOS cannot build (RFC 7946: closed, at least 4 positions): once a crash
        # of the whole batch, now a reject naming what is wrong.
        (
            {"type": "Polygon", "coordinates": [[[10, 60], [11, 60], [11, 61], [10, 61]]]},
            ["closed"],
        ),
        ({"type": "Polygon", "coordinates": [[[10.0, 60.0]]]}, ["point array"]),
    ],
)
def test_impossible_coordinates_are_rejected_with_a_reason(geometry, words) -> None:
    good = _feature("good", SQUARE, [10.0, 60.0, 11.0, 61.0])
    bad = _feature("bad", geometry)
    parsed = _parse_decoded([good, bad])
    assert parsed.table["id"].to_pylist() == ["good"]
    assert parsed.keys == ["p/good.stac.json"] and parsed.items == [good]
    assert len(parsed.geometries) == 1 and parsed.fixes == []
    [reject] = parsed.rejects
    assert reject.key == "p/bad.stac.json"
    assert reject.reason.startswith("invalid geometry")
    for word in words:
        assert word in reject.reason


def test_impossible_coordinates_in_a_body_are_rejected_too() -> None:
    body = orjson.dumps(_feature("far", _polygon((10.0, 95.0), (11.0, 95.0), (11.0, 96.0))))
    parsed = parse_items([body], ["p/far.stac.json"])
    assert parsed.table.num_rows == 0
    assert "latitude" in parsed.rejects[0].reason


@pytest.mark.parametrize(
    ("geometry", "bbox"),
    [
        # Across the antimeridian with a jump, RFC 7946 bbox (xmin > xmax).
        (
            _polygon((179.5, 60.0), (-179.5, 60.0), (-179.5, 61.0), (179.5, 61.0)),
            [179.5, 60.0, -179.5, 61.0],
        ),
        # Written continuously past 180, the form core/partitioning unwraps.
        (
            _polygon((179.5, 60.0), (180.5, 60.0), (180.5, 61.0), (179.5, 61.0)),
            [179.5, 60.0, -179.5, 61.0],
        ),
        (
            _polygon((179.5, 60.0), (180.5, 60.0), (180.5, 61.0), (179.5, 61.0)),
            [179.5, 60.0, 180.5, 61.0],
        ),
        (
            _polygon((-180.5, 60.0), (-179.5, 60.0), (-179.5, 61.0), (-180.5, 61.0)),
            [179.5, 60.0, -179.5, 61.0],
        ),
        # Exactly on the bounds, the poles and ±180 themselves.
        (
            _polygon((-180.0, -90.0), (180.0, -90.0), (180.0, 90.0), (-180.0, 90.0)),
            [-180.0, -90.0, 180.0, 90.0],
        ),
        # A cap around the north pole, bbox as RFC 7946 draws it.
        (
            _polygon((0.0, 85.0), (90.0, 85.0), (180.0, 85.0), (-90.0, 85.0)),
            [-180.0, 85.0, 180.0, 90.0],
        ),
    ],
)
def test_valid_edge_geometries_are_kept_unchanged(geometry, bbox) -> None:
    item = _feature("edge", geometry, bbox)
    parsed = _parse_decoded([copy.deepcopy(item)])
    assert parsed.rejects == [] and parsed.fixes == []
    assert list(table_to_items(parsed.table)) == [item]


@pytest.mark.parametrize(
    ("geometry", "bbox", "expected"),
    [
        (SQUARE, [10.0, 60.0, 10.5, 61.0], [10.0, 60.0, 11.0, 61.0]),  # too narrow
        (SQUARE, [60.0, 10.0, 61.0, 11.0], [10.0, 60.0, 11.0, 61.0]),  # lat/lon swapped
        (SQUARE, [10.0, 60.0, 11.0, 60.5], [10.0, 60.0, 11.0, 61.0]),  # too low
        (SQUARE, [math.nan, 60.0, 11.0, 61.0], [10.0, 60.0, 11.0, 61.0]),  # not a number
        # Across the antimeridian: the recomputed bbox crosses it too (xmin > xmax).
        (
            _polygon((179.5, 60.0), (-179.5, 60.0), (-179.5, 61.0), (179.5, 61.0)),
            [-179.5, 60.0, 179.5, 60.5],
            [179.5, 60.0, -179.5, 61.0],
        ),
        # A cap around the south pole: all longitudes, down to the pole.
        (
            _polygon((0.0, -85.0), (-90.0, -85.0), (180.0, -85.0), (90.0, -85.0)),
            [0.0, -86.0, 90.0, -85.0],
            [-180.0, -90.0, 180.0, -85.0],
        ),
    ],
)
def test_a_bbox_not_containing_the_geometry_is_recomputed_and_the_fix_recorded(
    geometry, bbox, expected
) -> None:
    item = _feature("boxed", geometry, bbox)
    parsed = _parse_decoded([item])
    assert parsed.rejects == []
    row = parsed.table.to_pylist()[0]
    assert [row["bbox"][axis] for axis in ("xmin", "ymin", "xmax", "ymax")] == expected
    [fix] = parsed.fixes
    assert fix.key == "p/boxed.stac.json"
    assert str(bbox) in fix.reason and str(expected) in fix.reason
    # The kept item (what staging writes) and the stored row both carry the new bbox; the
    # caller's dict is not modified.
    assert parsed.items[0]["bbox"] == expected and item["bbox"] == bbox
    assert list(table_to_items(parsed.table)) == [{**item, "bbox": expected}]
    # Re-parsing the fixed item (Phase 3 reads the staged NDJSON) changes nothing more.
    again = _parse_decoded([parsed.items[0]])
    assert again.fixes == [] and again.table["bbox"].equals(parsed.table["bbox"])


def test_synthetic_items_pass_the_checks_untouched() -> None:
    rng = np.random.default_rng(11)
    items = [make_item(rng) for _ in range(40)]
    items += [make_item(rng, antimeridian=True) for _ in range(20)]
    items += [make_item(rng, region=r) for r in ("north_pole", "south_pole") for _ in range(10)]
    parsed = _parse(copy.deepcopy(items))
    assert parsed.rejects == [] and parsed.fixes == []
    assert list(table_to_items(parsed.table)) == items


# --- ids that differ from their file name ---------------------------------------------------


def test_mismatched_ids_are_listed_with_their_key_stem() -> None:
    a, b, c, bad = (_feature(i, SQUARE, [10.0, 60.0, 11.0, 61.0]) for i in "abcd")
    bad["properties"]["datetime"] = "never"
    keys = [
        "x/N60/a.stac.json",  # matches
        "x/N60/b_renamed.stac.json",  # differs
        "c.stac.json",  # matches, no directory
        "x/N60/d_renamed.stac.json",  # differs, but rejected: not listed
    ]
    parsed = parse_decoded([a, b, c, bad], keys)
    assert [r.key for r in parsed.rejects] == [keys[3]]
    assert parsed.mismatches.schema.equals(MISMATCH_SCHEMA)
    assert parsed.mismatches.to_pylist() == [{"key_id": "b_renamed", "item_id": "b"}]


def test_no_mismatch_gives_an_empty_table() -> None:
    parsed = _parse(_items(3))
    assert parsed.mismatches.num_rows == 0
    assert parsed.mismatches.schema.equals(MISMATCH_SCHEMA)
    assert parse_items([], []).mismatches.num_rows == 0
    assert mismatches(
        pa.array(["k/x.stac.json", "k/y.stac.json"]), pa.array(["x", "z"])
    ).to_pylist() == [{"key_id": "y", "item_id": "z"}]


def test_a_fix_leaves_the_other_rows_of_the_batch_alone() -> None:
    nothing = _feature("nothing", None)
    fine = _feature("fine", SQUARE, [10.0, 60.0, 11.0, 61.0])
    wrong = _feature("wrong", SQUARE, [0.0, 0.0, 1.0, 1.0])
    late = _feature("late", SQUARE, [0.0, 0.0, 1.0, 1.0])
    late["properties"]["datetime"] = "soon"  # rejected for its datetime: no fix recorded
    parsed = _parse_decoded([nothing, fine, wrong, late])
    assert [r.key for r in parsed.rejects] == ["p/late.stac.json"]
    assert [f.key for f in parsed.fixes] == ["p/wrong.stac.json"]
    boxes = parsed.table["bbox"].to_pylist()
    assert boxes[0] is None
    assert boxes[1] == boxes[2] == {"xmin": 10.0, "ymin": 60.0, "xmax": 11.0, "ymax": 61.0}
