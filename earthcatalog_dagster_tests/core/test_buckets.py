from __future__ import annotations

import datetime as dt

import numpy as np
import orjson
import pyarrow as pa

from earthcatalog_dagster.core.buckets import (
    bucket_order,
    dedupe_latest,
    explode_to_cells,
    split_buckets,
)
from earthcatalog_dagster.core.items import parse_items
from earthcatalog_dagster.core.partitioning import cells_for_geometry
from earthcatalog_dagster.synthetic import make_item


def _parsed(items):
    return parse_items([orjson.dumps(i) for i in items], [i["id"] for i in items])


def test_explode_gives_one_row_per_overlapping_cell() -> None:
    rng = np.random.default_rng(4)
    items = [make_item(rng) for _ in range(40)] + [make_item(rng, antimeridian=True)]
    rows = explode_to_cells(_parsed(items), 1)
    expected = sorted((i["id"], c) for i in items for c in cells_for_geometry(i["geometry"], 1))
    got = sorted(zip(rows["id"].to_pylist(), rows["grid_partition"].to_pylist(), strict=True))
    assert got == expected


def test_split_buckets_one_cell_and_year_each_in_warehouse_order() -> None:
    rng = np.random.default_rng(5)
    items = [make_item(rng) for _ in range(60)]
    items[0]["properties"]["datetime"] = None
    rows = explode_to_cells(_parsed(items), 1)
    total = 0
    for (cell, year), bucket in split_buckets(rows):
        total += bucket.num_rows
        assert set(bucket["grid_partition"].to_pylist()) == {cell}
        years = {d.year if d else None for d in bucket["datetime"].to_pylist()}
        assert years == ({None} if year == "__none__" else {int(year)})
        keys = list(zip(bucket["platform"].to_pylist(), bucket["id"].to_pylist(), strict=True))
        assert [k[0] for k in keys] == sorted(k[0] for k in keys)
    assert total == rows.num_rows


def test_dedupe_keeps_the_latest_update_and_the_order() -> None:
    rng = np.random.default_rng(6)
    base = make_item(rng)
    older = orjson.loads(orjson.dumps(base))
    newer = orjson.loads(orjson.dumps(base))
    older["properties"]["updated"] = "2024-01-01T00:00:00.000000Z"
    newer["properties"]["updated"] = "2025-01-01T00:00:00.000000Z"
    newer["properties"]["percent_valid_pixels"] = 99
    other = make_item(rng)
    parsed = _parsed([other, older, newer])
    table = parsed.table.append_column("grid_partition", pa.array(["c"] * 3))
    deduped = dedupe_latest(table)
    assert deduped["id"].to_pylist() == [other["id"], base["id"]]
    kept = deduped.to_pylist()[1]
    assert kept["percent_valid_pixels"] == 99
    assert kept["updated"] == dt.datetime(2025, 1, 1, tzinfo=dt.UTC)


def _key_rows(rng: np.random.Generator, n: int) -> pa.Table:
    """Key columns with many exact ties (full-key duplicates), null datetimes and null
    platforms; ``row`` numbers the rows."""
    cells = ["81003ffffffffff", "8100bffffffffff", "__none__"]
    days = [dt.datetime(2019, 12, 31, 23, tzinfo=dt.UTC), dt.datetime(2020, 1, 1, tzinfo=dt.UTC)]
    return pa.table(
        {
            "grid_partition": pa.array([cells[i] for i in rng.integers(0, 3, n)]),
            "platform": pa.array([[None, "L8", "S1"][i] for i in rng.integers(0, 3, n)]),
            "datetime": pa.array(
                [[None, *days][i] for i in rng.integers(0, 3, n)], pa.timestamp("us", tz="UTC")
            ),
            "id": pa.array([f"item{i}" for i in rng.integers(0, 4, n)]),
            "row": pa.array(np.arange(n)),
        }
    )


def test_bucket_order_is_a_stable_sort_by_bucket_then_warehouse_order() -> None:
    rows = _key_rows(np.random.default_rng(7), 400)
    order = bucket_order(rows.drop_columns(["row"]))

    # The oracle: Python's stable sort on (cell, year label, platform, datetime, id), nulls
    # last within each column; exact ties stay in input order.
    def key(row: dict) -> tuple:
        year = str(row["datetime"].year) if row["datetime"] else "__none__"
        platform, when = row["platform"], row["datetime"]
        return (
            row["grid_partition"],
            year,
            platform is None,
            platform or "",
            when is None,
            when or dt.datetime.min.replace(tzinfo=dt.UTC),
            row["id"],
        )

    expected = [r["row"] for r in sorted(rows.to_pylist(), key=key)]
    assert order.indices.tolist() == expected
    got_buckets = [
        (order.keys[i], order.indices[order.starts[i] : order.ends[i]].tolist())
        for i in range(len(order))
    ]
    expected_buckets: dict[tuple[str, str], list[int]] = {}
    for r in sorted(rows.to_pylist(), key=key):
        expected_buckets.setdefault(key(r)[:2], []).append(r["row"])
    assert got_buckets == list(expected_buckets.items())


def test_bucket_order_of_no_rows_is_empty() -> None:
    order = bucket_order(_key_rows(np.random.default_rng(8), 0))
    assert len(order) == 0 and order.indices.size == 0
