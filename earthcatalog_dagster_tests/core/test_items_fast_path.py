"""The column-at-once path of ``parse_items`` against the exact per-item path.

Every test parses the same items twice, once as ``parse_decoded`` does and once with
``exact=True`` (every item through ``_row``), and requires the same table, geometries, keys,
rejects, items and fixes. The odd items are the reasons the fast path exists to fall back:
each must leave the batch's other items on the fast path and still come out exactly as the
per-item path makes it.
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import items as items_module
from earthcatalog_dagster.core.items import parse_items, table_to_items
from earthcatalog_dagster.core.wkb import geojson_to_wkb, polygons_to_wkb
from earthcatalog_dagster.synthetic import make_item
from earthcatalog_dagster.synthetic.day import SOURCE_BUCKET, generate_day


def _both(items: list[dict[str, Any]], keys: list[str] | None = None) -> tuple[Any, Any]:
    """``_items_to_table`` of deep copies of ``items``, fast then exact; asserts they agree."""
    keys = keys or [f"k/{i}.stac.json" for i in range(len(items))]
    fast = items_module._items_to_table(copy.deepcopy(items), keys)
    exact = items_module._items_to_table(copy.deepcopy(items), keys, exact=True)
    table, geometries, kept, rejects, kept_items, fixes = fast
    assert table.schema.equals(exact[0].schema)
    assert table.equals(exact[0]), _first_difference(table, exact[0])
    assert geometries == exact[1]
    assert kept == exact[2]
    assert rejects == exact[3]
    assert kept_items == exact[4]
    assert fixes == exact[5]
    return fast, exact


def _first_difference(a: Any, b: Any) -> str:
    for name in a.column_names:
        if not a[name].equals(b[name]):
            return f"column {name}: {a[name].to_pylist()} != {b[name].to_pylist()}"
    return "no column differs"


@functools.cache
def _made(n: int, seed: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    items = [make_item(rng) for _ in range(n)]
    items += [make_item(rng, antimeridian=True) for _ in range(3)]
    items += [make_item(rng, region=r) for r in ("north_pole", "south_pole")]
    return items


def _good(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """``n`` plain items, 3 across the antimeridian and 2 polar caps (fresh copies)."""
    return copy.deepcopy(_made(n, seed))


def test_synthetic_day_parses_the_same_both_ways(tmp_path: Path) -> None:
    day = generate_day("2024-03-05", 60, source_root=str(tmp_path), seed=4)
    keys, bodies = [], []
    for key in day.item_keys:
        path = Path(layout.source_object(SOURCE_BUCKET, key, str(tmp_path)))
        if path.exists():
            keys.append(key)
            bodies.append(path.read_bytes())
    decoded, decoded_keys = [], []
    for body, key in zip(bodies, keys, strict=True):
        try:
            decoded.append(items_module._decode(body))
            decoded_keys.append(key)
        except items_module._Rejected:
            pass
    fast, _ = _both(decoded, decoded_keys)
    # The coercible items (numbers written as strings) took the exact path, the rest not.
    assert len(fast[2]) == len(day.good_ids)
    parsed = parse_items(bodies, keys)
    assert parsed.table.equals(fast[0])


def test_plain_items_read_back_exactly() -> None:
    items = _good(20)
    fast, _ = _both(items)
    assert list(table_to_items(fast[0])) == items


def _spoil(item: dict[str, Any], how: str) -> None:
    """Make ``item`` odd in one way (in place)."""
    props = item["properties"]
    data = item["assets"]["data"]
    match how:
        case "int_string_property":
            props["platform"] = 7
        case "bool_integer":
            props["percent_valid_pixels"] = True
        case "bool_float":
            props["latitude"] = False
        case "number_as_string":
            props["date_dt"] = "16.0"
        case "bad_number_string":
            props["percent_valid_pixels"] = "high"
        case "fractional_integer":
            props["date_dt"] = 12.5
        case "whole_float_integer":
            props["percent_valid_pixels"] = 87.0
        case "int_float":
            props["longitude"] = 12
        case "huge_int_float":
            props["latitude"] = 2**53 + 1
        case "exact_2_53_float":
            props["latitude"] = 2**53
        case "int32_overflow":
            props["percent_valid_pixels"] = 2**31
        case "int64_overflow":
            props["date_dt"] = 2**70
        case "nan_float":
            props["longitude"] = math.nan
        case "inf_integer":
            props["date_dt"] = math.inf
        case "bad_datetime":
            props["datetime"] = "yesterday"
        case "datetime_number":
            props["start_datetime"] = 20200101
        case "null_property":
            props["platform"] = None
        case "missing_property":
            del props["version"]
        case "unknown_property":
            props["processing:level"] = {"nested": [1, 2]}
        case "unknown_top_level":
            item["custom"] = [1, {"a": None}]
        case "properties_null":
            item["properties"] = None
        case "properties_empty_list":
            item["properties"] = []
        case "type_number":
            item["type"] = 5
        case "collection_list":
            item["collection"] = ["x"]
        case "stac_version_null":
            item["stac_version"] = None
        case "extensions_string":
            item["stac_extensions"] = "https://x"
        case "extensions_with_null":
            item["stac_extensions"].append(None)
        case "extensions_with_number":
            item["stac_extensions"].append(3)
        case "extensions_missing":
            del item["stac_extensions"]
        case "links_null":
            item["links"] = None
        case "links_empty":
            item["links"] = []
        case "links_dict":
            item["links"] = {"rel": "self"}
        case "link_extra_key":
            item["links"][0]["title"] = "t"
        case "link_null_value":
            item["links"][1]["type"] = None
        case "link_number_value":
            item["links"][2]["href"] = 3
        case "link_not_dict":
            item["links"].append("https://x")
        case "link_null":
            item["links"].append(None)
        case "link_missing_field":
            del item["links"][0]["type"]
        case "assets_null":
            item["assets"] = None
        case "assets_empty":
            item["assets"] = {}
        case "assets_list":
            item["assets"] = [1]
        case "asset_unknown_key":
            item["assets"]["metadata"] = {"href": "s3://x/y.json", "roles": ["metadata"]}
        case "asset_null":
            item["assets"]["overview"] = None
        case "asset_missing":
            del item["assets"]["thumbnail"]
        case "asset_extra_field":
            data["file:size"] = 3
        case "asset_href_number":
            item["assets"]["thumbnail"]["href"] = 1
        case "asset_title_null":
            data["title"] = None
        case "asset_roles_string":
            data["roles"] = "data"
        case "asset_roles_with_null":
            data["roles"] = ["data", None]
        case "asset_roles_with_number":
            data["roles"] = ["data", 1]
        case "asset_alternate_on_overview":
            item["assets"]["overview"]["alternate"] = data["alternate"]
        case "alternate_empty":
            data["alternate"] = {}
        case "alternate_s3_null":
            data["alternate"] = {"s3": None}
        case "alternate_extra_key":
            data["alternate"]["http"] = {"href": "https://x"}
        case "s3_null_value":
            data["alternate"]["s3"]["alternate:name"] = None
        case "s3_extra_key":
            data["alternate"]["s3"]["title"] = "S3"
        case "s3_number_value":
            data["alternate"]["s3"]["href"] = 1
        case "geometry_null":
            item["geometry"] = None
            del item["bbox"]
        case "geometry_null_with_bbox":
            item["geometry"] = None
        case "multipolygon":
            item["geometry"] = {
                "type": "MultiPolygon",
                "coordinates": [item["geometry"]["coordinates"]],
            }
        case "geometry_3d":
            for point in item["geometry"]["coordinates"][0]:
                point.append(10.0)
        case "one_3d_position":
            item["geometry"]["coordinates"][0][1].append(10.0)
        case "geometry_with_hole":
            ring = item["geometry"]["coordinates"][0]
            item["geometry"]["coordinates"].append([list(p) for p in ring])
        case "geometry_int_coordinates":
            item["geometry"]["coordinates"][0][0] = [
                int(v) for v in item["geometry"]["coordinates"][0][0]
            ]
            item["geometry"]["coordinates"][0][-1] = list(item["geometry"]["coordinates"][0][0])
        case "geometry_string_coordinate":
            item["geometry"]["coordinates"][0][1][0] = "12.5"
        case "geometry_bool_coordinate":
            item["geometry"]["coordinates"][0][1][0] = True
        case "geometry_nan":
            item["geometry"]["coordinates"][0][1][1] = math.nan
        case "geometry_bad_latitude":
            item["geometry"]["coordinates"][0][1][1] = 95.0
        case "geometry_empty_ring":
            item["geometry"]["coordinates"] = [[]]
        case "geometry_no_rings":
            item["geometry"]["coordinates"] = []
        case "geometry_not_dict":
            item["geometry"] = [1, 2]
        case "geometry_no_coordinates":
            del item["geometry"]["coordinates"]
        case "point":
            item["geometry"] = {
                "type": "Point",
                "coordinates": item["geometry"]["coordinates"][0][0],
            }
        case "bbox_missing":
            del item["bbox"]
        case "bbox_short":
            item["bbox"] = item["bbox"][:3]
        case "bbox_strings":
            item["bbox"] = [str(v) for v in item["bbox"]]
        case "bbox_bool":
            item["bbox"][0] = True
        case "bbox_ints":
            item["bbox"] = [math.floor(item["bbox"][0]), -90, math.ceil(item["bbox"][2]), 90]
        case "bbox_wrong":
            item["bbox"] = [0.0, 0.0, 1.0, 1.0]
        case "bbox_nan":
            item["bbox"][1] = math.nan
        case "bbox_dict":
            item["bbox"] = {"xmin": 0}
        case "id_number":
            item["id"] = 12
        case _:
            raise AssertionError(how)


ODD = [
    "int_string_property",
    "bool_integer",
    "bool_float",
    "number_as_string",
    "bad_number_string",
    "fractional_integer",
    "whole_float_integer",
    "int_float",
    "huge_int_float",
    "exact_2_53_float",
    "int32_overflow",
    "int64_overflow",
    "nan_float",
    "inf_integer",
    "bad_datetime",
    "datetime_number",
    "null_property",
    "missing_property",
    "unknown_property",
    "unknown_top_level",
    "properties_null",
    "properties_empty_list",
    "type_number",
    "collection_list",
    "stac_version_null",
    "extensions_string",
    "extensions_with_null",
    "extensions_with_number",
    "extensions_missing",
    "links_null",
    "links_empty",
    "links_dict",
    "link_extra_key",
    "link_null_value",
    "link_number_value",
    "link_not_dict",
    "link_null",
    "link_missing_field",
    "assets_null",
    "assets_empty",
    "assets_list",
    "asset_unknown_key",
    "asset_null",
    "asset_missing",
    "asset_extra_field",
    "asset_href_number",
    "asset_title_null",
    "asset_roles_string",
    "asset_roles_with_null",
    "asset_roles_with_number",
    "asset_alternate_on_overview",
    "alternate_empty",
    "alternate_s3_null",
    "alternate_extra_key",
    "s3_null_value",
    "s3_extra_key",
    "s3_number_value",
    "geometry_null",
    "geometry_null_with_bbox",
    "multipolygon",
    "geometry_3d",
    "one_3d_position",
    "geometry_with_hole",
    "geometry_int_coordinates",
    "geometry_string_coordinate",
    "geometry_bool_coordinate",
    "geometry_nan",
    "geometry_bad_latitude",
    "geometry_empty_ring",
    "geometry_no_rings",
    "geometry_not_dict",
    "geometry_no_coordinates",
    "point",
    "bbox_missing",
    "bbox_short",
    "bbox_strings",
    "bbox_bool",
    "bbox_ints",
    "bbox_wrong",
    "bbox_nan",
    "bbox_dict",
]


@pytest.mark.parametrize("how", ODD)
def test_an_odd_item_comes_out_as_the_exact_path_makes_it(how: str) -> None:
    items = _good(6)
    _spoil(items[2], how)
    _spoil(items[-1], how)  # a polar item, its bbox across all longitudes
    _both(items)
    # The odd items do not send the plain ones down the per-item path.
    fast = items_module._fast_columns(copy.deepcopy(items))
    assert fast and {0, 1, 3} <= set(fast[1])


@pytest.mark.parametrize("how", ODD)
def test_a_batch_of_only_odd_items(how: str) -> None:
    items = _good(2)
    for item in items:
        _spoil(item, how)
    _both(items)


def test_many_odd_items_in_one_batch_keep_their_order() -> None:
    items = _good(len(ODD) + 10, seed=9)
    for item, how in zip(items[5:], ODD, strict=False):
        _spoil(item, how)
    fast, _ = _both(items)
    # Rejects and fixes interleave as the per-item path orders them.
    assert fast[3] and fast[5]


def test_an_id_that_is_not_a_string_fails_as_before() -> None:
    items = _good(3)
    items[1]["id"] = 12
    keys = [f"k/{i}.stac.json" for i in range(len(items))]
    for exact in (False, True):
        with pytest.raises(TypeError, match="int"):
            items_module._items_to_table(copy.deepcopy(items), keys, exact=exact)


def test_parse_items_on_bodies_matches_the_exact_path() -> None:
    items = _good(8)
    _spoil(items[1], "number_as_string")
    _spoil(items[3], "bbox_wrong")
    _spoil(items[4], "geometry_bad_latitude")
    bodies = [orjson.dumps(item) for item in items]
    bodies.insert(2, b"<?xml version='1.0'?><Error><Code>SlowDown</Code></Error>")
    bodies.insert(5, b'{"id": "cut", ')
    keys = [f"k/{i}.stac.json" for i in range(len(bodies))]
    parsed = parse_items(bodies, keys)
    decoded = [orjson.loads(b) for j, b in enumerate(bodies) if j not in (2, 5)]
    decoded_keys = [k for j, k in enumerate(keys) if j not in (2, 5)]
    exact = items_module._items_to_table(decoded, decoded_keys, exact=True)
    assert parsed.table.equals(exact[0])
    assert parsed.rejects[2:] == exact[3]
    assert [r.key for r in parsed.rejects[:2]] == [keys[2], keys[5]]
    assert parsed.fixes == exact[5] and len(parsed.fixes) == 1


@pytest.mark.parametrize(
    "rings",
    [
        [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]],
        [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], [[0.2, 0.2], [0.3, 0.2], [0.2, 0.2]]],
        [],
        [[[5.5, -3.25]]],
    ],
)
def test_polygons_to_wkb_writes_the_bytes_of_geojson_to_wkb(rings: list) -> None:
    polygons = [rings, [[[10.0, 60.0], [11.0, 60.0], [10.0, 61.0], [10.0, 60.0]]], rings]
    ring_counts = [len(p) for p in polygons]
    ring_sizes = [len(r) for p in polygons for r in p]
    xy = np.array(
        [v for p in polygons for r in p for point in r for v in point], dtype=np.float64
    ).reshape(-1, 2)
    wkb = polygons_to_wkb(np.array(ring_counts), np.array(ring_sizes), xy).to_pylist()
    assert wkb == [geojson_to_wkb({"type": "Polygon", "coordinates": p}) for p in polygons]
