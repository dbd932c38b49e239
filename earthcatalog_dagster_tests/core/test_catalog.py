from __future__ import annotations

import datetime as dt

import numpy as np
import orjson
import pyarrow as pa
import pytest
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core.geoparquet import write_geoparquet
from earthcatalog_dagster.core.items import parse_items
from earthcatalog_dagster.core.schema import GRID_RESOLUTION_PROPERTY, HASH_INDEX_PROPERTY
from earthcatalog_dagster.synthetic import make_item

CELLS = ["810bbffffffffff", "8106bffffffffff"]


def _bucket(rng, cell: str, year: int, n: int = 4) -> pa.Table:
    items = [make_item(rng, when=dt.datetime(year, 6, 1 + i, tzinfo=dt.UTC)) for i in range(n)]
    parsed = parse_items([orjson.dumps(i) for i in items], [i["id"] for i in items])
    return parsed.table.append_column("grid_partition", pa.array([cell] * n))


@pytest.fixture
def warehouse_files(tmp_path) -> tuple[str, list[str]]:
    rng = np.random.default_rng(0)
    warehouse = str(tmp_path / "warehouse")
    files = []
    for cell in CELLS:
        for year in (2019, 2024):
            uri = layout.warehouse_file(warehouse, cell, year, "test", 0)
            write_geoparquet(_bucket(rng, cell, year), uri)
            files.append(uri)
    return warehouse, files


def test_register_is_idempotent_and_one_snapshot_per_call(tmp_path, warehouse_files) -> None:
    warehouse, files = warehouse_files
    cat = iceberg.open_catalog(str(tmp_path / "catalog.db"), warehouse)
    table = iceberg.create_table(
        cat, warehouse=warehouse, resolution=1, hash_index_path="h.parquet"
    )
    assert table.properties[GRID_RESOLUTION_PROPERTY] == "1"
    assert table.properties[HASH_INDEX_PROPERTY] == "h.parquet"
    assert table.metadata.format_version == 2

    first = iceberg.register_files(table, files[:2] + files[:1])
    assert (first.added, first.skipped) == (2, 0)
    second = iceberg.register_files(table, files)
    assert (second.added, second.skipped) == (2, 2)
    again = iceberg.register_files(table, files)
    assert again == iceberg.Registration(None, 0, 4)
    assert len(table.snapshots()) == 2
    assert iceberg.registered_files(table) == set(files)
    assert table.scan().to_arrow().num_rows == 16


def test_scan_prunes_by_cell_and_datetime(tmp_path, warehouse_files) -> None:
    warehouse, files = warehouse_files
    cat = iceberg.open_catalog(str(tmp_path / "catalog.db"), warehouse)
    table = iceberg.create_table(cat, warehouse=warehouse, resolution=1, hash_index_path="h")
    iceberg.register_files(table, files)
    table = iceberg.load_table(cat)

    row_filter = And(
        EqualTo("grid_partition", CELLS[0]),
        And(
            GreaterThanOrEqual("datetime", "2024-01-01T00:00:00+00:00"),
            LessThan("datetime", "2025-01-01T00:00:00+00:00"),
        ),
    )
    scan = table.scan(row_filter=row_filter)
    planned = [task.file.file_path for task in scan.plan_files()]
    assert planned == [layout.warehouse_file(warehouse, CELLS[0], 2024, "test", 0)]
    rows = scan.to_arrow()
    assert rows.num_rows == 4
    assert set(rows["grid_partition"].to_pylist()) == {CELLS[0]}
    assert {d.year for d in rows["datetime"].to_pylist()} == {2024}
