"""Exact spatial tests and row-group pruning on stored footprints (no catalog needed)."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import shapely
from shapely.geometry import Point, box

from earthcatalog_dagster.core.geoparquet import write_geoparquet
from earthcatalog_dagster.core.items import parse_items
from earthcatalog_dagster.query.geometry import bbox_candidates, intersects, query_boxes
from earthcatalog_dagster.query.plan import row_groups_to_read
from earthcatalog_dagster.synthetic import make_item
from earthcatalog_dagster_tests.helpers import planar_region, ring_of

QUERIES = [
    box(178.0, 50.0, 180.0, 70.0),
    box(-180.0, 50.0, -178.5, 70.0),
    box(-180.0, 85.0, 180.0, 90.0),
    Point(0.0, 90.0),
    Point(0.0, -90.0),
    box(-180.0, -90.0, 180.0, -86.0),
    box(10.0, 77.0, 20.0, 80.0),
]


@pytest.fixture(scope="module")
def rows() -> tuple[pa.Table, list[dict]]:
    rng = np.random.default_rng(3)
    items = [
        make_item(rng, region=region)
        for region in (
            "chukotka_aleutians",
            "north_pole",
            "south_pole",
            "north_near_pole",
            "south_near_pole",
            "svalbard",
            None,
        )
        for _ in range(25)
    ]
    parsed = parse_items([orjson.dumps(i) for i in items], [i["id"] for i in items])
    assert not parsed.rejects
    return parsed.table, parsed.items


@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_exact_intersection_matches_the_oracle(rows, query) -> None:
    table, items = rows
    expected = np.array([planar_region(ring_of(i["geometry"])).intersects(query) for i in items])
    candidates = bbox_candidates(table["bbox"], query_boxes(query))
    assert not (expected & ~candidates).any(), "the bbox pre-filter dropped a match"
    got = intersects(table["geometry"], table["bbox"], query)
    assert (got == expected).all()
    assert expected.any()


def test_row_groups_pruned_by_bbox_statistics(rows, tmp_path) -> None:
    table, _items = rows
    svalbard = table.slice(125, 25).append_column("grid_partition", pa.array(["c"] * 25))
    path = tmp_path / "svalbard.parquet"
    write_geoparquet(svalbard, str(path))
    metadata = pq.read_metadata(path)
    assert row_groups_to_read(metadata, query_boxes(box(10.0, 77.0, 20.0, 80.0))) == [0]
    assert row_groups_to_read(metadata, query_boxes(box(-60.0, 60.0, -50.0, 70.0))) == []
    assert row_groups_to_read(metadata, None) == [0]
    # A file whose rows cross the antimeridian is pruned on latitude only.
    chukotka = table.slice(0, 25).append_column("grid_partition", pa.array(["c"] * 25))
    write_geoparquet(chukotka, str(tmp_path / "chukotka.parquet"))
    crossing = pq.read_metadata(tmp_path / "chukotka.parquet")
    assert row_groups_to_read(crossing, query_boxes(box(-180.0, 50.0, -178.5, 70.0))) == [0]
    assert row_groups_to_read(crossing, query_boxes(box(-180.0, -10.0, 180.0, 10.0))) == []
    assert shapely.get_num_geometries(box(0, 0, 1, 1)) == 1
