from __future__ import annotations

import copy

import numpy as np
import orjson
import pyarrow as pa

from earthcatalog_dagster.core.items import parse_items, table_to_items
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
