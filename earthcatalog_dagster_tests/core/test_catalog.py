from __future__ import annotations

import datetime as dt
from pathlib import Path

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


def _reference_data_files(table, written) -> list:
    """DataFiles built the way PyIceberg's ``add_files`` builds them (the path
    ``register_files`` took before its statistics plan), for comparison."""
    from pyiceberg.io.pyarrow import (
        compute_statistics_plan,
        data_file_statistics_from_parquet_metadata,
        parquet_path_to_id_mapping,
    )
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat

    metadata = table.metadata
    schema = metadata.schema()
    plan = compute_statistics_plan(schema, metadata.properties)
    mapping = parquet_path_to_id_mapping(schema)
    files = []
    for w in written:
        stats = data_file_statistics_from_parquet_metadata(
            parquet_metadata=w.footer, stats_columns=plan, parquet_column_mapping=mapping
        )
        files.append(
            DataFile.from_args(
                content=DataFileContent.DATA,
                file_path=w.uri,
                file_format=FileFormat.PARQUET,
                partition=stats.partition(metadata.spec(), schema),
                file_size_in_bytes=w.size,
                sort_order_id=None,
                spec_id=metadata.default_spec_id,
                equality_ids=None,
                key_metadata=None,
                **stats.to_serialized_dict(),
            )
        )
    return files


DATA_FILE_FIELDS = (
    "content",
    "file_path",
    "file_format",
    "partition",
    "record_count",
    "file_size_in_bytes",
    "column_sizes",
    "value_counts",
    "null_value_counts",
    "nan_value_counts",
    "lower_bounds",
    "upper_bounds",
    "split_offsets",
    "sort_order_id",
    "equality_ids",
    "key_metadata",
)


def _varied_files(tmp_path) -> list:
    """Files that exercise the statistics: several rows, nulls in a pruning column, a
    file of several row groups (bounds merged across them), a no-year bucket."""
    import pyarrow.compute as pc

    from earthcatalog_dagster.core import geoparquet

    rng = np.random.default_rng(7)
    warehouse = str(tmp_path / "warehouse")
    written = []
    for i, cell in enumerate(CELLS):
        for year in (2019, 2024):
            rows = _bucket(rng, cell, year, n=3 + 5 * i)
            if year == 2024:  # nulls in statistics columns
                mask = pa.array([j % 2 == 0 for j in range(rows.num_rows)])
                for name in ("percent_valid_pixels", "start_datetime", "platform"):
                    column = rows[name]
                    nulls = pa.nulls(rows.num_rows, column.type)
                    rows = rows.set_column(
                        rows.schema.get_field_index(name), name, pc.if_else(mask, nulls, column)
                    )
            uri = layout.warehouse_file(warehouse, cell, year, "fast", 0)
            written.append(write_geoparquet(rows, uri))
    no_year = _bucket(rng, CELLS[0], 2020, n=3)
    no_year = no_year.set_column(
        no_year.schema.get_field_index("datetime"),
        "datetime",
        pa.nulls(3, no_year["datetime"].type),
    )
    written.append(
        write_geoparquet(no_year, layout.warehouse_file(warehouse, CELLS[0], None, "fast", 0))
    )
    big = _bucket(rng, CELLS[1], 2021, n=30)
    original = geoparquet.ROW_GROUP_ROWS
    try:
        geoparquet.ROW_GROUP_ROWS = 7  # several row groups: bounds merge across them
        uri = layout.warehouse_file(warehouse, CELLS[1], 2021, "fast", 0)
        written.append(write_geoparquet(big, uri))
    finally:
        geoparquet.ROW_GROUP_ROWS = original
    assert written[-1].footer.num_row_groups > 1
    return warehouse, written


def test_data_files_match_pyiceberg_add_files_statistics(tmp_path) -> None:
    """The statistics plan builds the very DataFiles PyIceberg's per-column path builds:
    every field, bound bytes and key order included, from handed-over and read footers."""
    warehouse, written = _varied_files(tmp_path)
    cat = iceberg.open_catalog(str(tmp_path / "catalog.db"), warehouse)
    table = iceberg.create_table(cat, warehouse=warehouse, resolution=1, hash_index_path="h")
    expected = _reference_data_files(table, written)
    uris = [w.uri for w in written]
    handed = iceberg.data_files(table, uris, footers={w.uri: w for w in written})
    read = iceberg.data_files(table, uris)  # footers read back from storage
    for built in (handed, read):
        assert len(built) == len(expected)
        for ours, theirs in zip(built, expected, strict=True):
            for name in DATA_FILE_FIELDS:
                a, b = getattr(ours, name), getattr(theirs, name)
                assert a == b, (name, ours.file_path)
                if isinstance(a, dict):
                    assert list(a) == list(b), (name, ours.file_path)
    # The pruning statistics are there (PyIceberg keeps no bounds of struct fields such
    # as bbox.xmin: the search reads those from the Parquet row-group statistics).
    schema = table.schema()
    for data_file in handed:
        assert data_file.record_count > 0
        for name in ("grid_partition", "created", "latitude", "id"):
            assert schema.find_field(name).field_id in data_file.lower_bounds
    assert {tuple(f.partition) for f in handed} >= {(CELLS[0], None)}


def test_data_files_match_pyiceberg_on_default_metrics(tmp_path) -> None:
    """A table with PyIceberg's default metrics (``truncate(16)`` everywhere: a table made
    before the pruning-column metrics) gets the same DataFiles as PyIceberg builds; the
    columns the writer keeps no statistics of have no bounds, as there."""
    warehouse, written = _varied_files(tmp_path)
    cat = iceberg.open_catalog(str(tmp_path / "catalog.db"), warehouse)
    table = cat.create_table(
        iceberg.TABLE_IDENTIFIER,
        schema=iceberg.iceberg_schema(),
        location=warehouse,
        partition_spec=iceberg.partition_spec(),
        properties={"format-version": "2"},
    )
    expected = _reference_data_files(table, written)
    built = iceberg.data_files(table, [w.uri for w in written], footers={w.uri: w for w in written})
    for ours, theirs in zip(built, expected, strict=True):
        for name in DATA_FILE_FIELDS:
            assert getattr(ours, name) == getattr(theirs, name), name


def test_pruning_fields_same_as_from_a_file_with_every_statistic(tmp_path) -> None:
    """A file written with statistics on every column (as before) and the same rows
    written now register with the same partition, record count and bounds: the table
    prunes them alike. Sizes are each file's own."""
    from earthcatalog_dagster_tests.core.test_geoparquet import _all_statistics_file

    rng = np.random.default_rng(11)
    warehouse = str(tmp_path / "warehouse")
    rows = _bucket(rng, CELLS[0], 2024, n=9)
    new_uri = layout.warehouse_file(warehouse, CELLS[0], 2024, "new", 0)
    old_uri = layout.warehouse_file(warehouse, CELLS[0], 2024, "old", 0)
    write_geoparquet(rows, new_uri)
    _all_statistics_file(rows, old_uri)
    cat = iceberg.open_catalog(str(tmp_path / "catalog.db"), warehouse)
    table = iceberg.create_table(cat, warehouse=warehouse, resolution=1, hash_index_path="h")
    new, old = iceberg.data_files(table, [new_uri, old_uri])
    for name in ("partition", "record_count", "lower_bounds", "upper_bounds", "value_counts"):
        assert getattr(new, name) == getattr(old, name), name
    assert new.lower_bounds  # there are bounds to compare
    for data_file, uri in ((new, new_uri), (old, old_uri)):
        assert data_file.file_size_in_bytes == Path(uri).stat().st_size
