from __future__ import annotations

import json

import geopandas
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from stac_geoparquet.arrow import stac_table_to_items

from earthcatalog_dagster.core.geoparquet import geo_metadata, write_geoparquet
from earthcatalog_dagster.core.items import parse_items, table_to_items
from earthcatalog_dagster.synthetic import make_item


def _rows(items: list[dict], cell: str = "810bbffffffffff") -> pa.Table:
    parsed = parse_items([orjson.dumps(i) for i in items], [i["id"] for i in items])
    assert parsed.rejects == []
    return parsed.table.append_column("grid_partition", pa.array([cell] * parsed.table.num_rows))


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_file_reads_back_through_stac_geoparquet_and_geopandas(tmp_path) -> None:
    rng = np.random.default_rng(1)
    items = [make_item(rng) for _ in range(20)]
    path = str(tmp_path / "part.parquet")
    write_geoparquet(_rows(items), path)

    table = pq.read_table(path)
    back = {i["id"]: i for i in stac_table_to_items(table)}
    for item in items:
        expected = json.loads(json.dumps(item))
        expected["properties"]["grid_partition"] = "810bbffffffffff"
        # Parquet cannot tell an absent field from a null one: compare without nulls.
        assert _without_nulls(back[item["id"]]) == expected

    frame = geopandas.read_parquet(path)
    assert len(frame) == 20 and frame.crs.to_string() == "OGC:CRS84"
    assert (frame.geometry.geom_type == "Polygon").all() and not frame.geometry.is_empty.any()


def test_geo_metadata_and_layout(tmp_path) -> None:
    rng = np.random.default_rng(2)
    items = [make_item(rng) for _ in range(30)]
    path = str(tmp_path / "part.parquet")
    write_geoparquet(_rows(items), path)
    file = pq.ParquetFile(path)
    meta = json.loads(file.schema_arrow.metadata[b"geo"])
    column = meta["columns"]["geometry"]
    assert meta["version"] == "1.1.0" and meta["primary_column"] == "geometry"
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Polygon"]
    assert column["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
    stac = json.loads(file.schema_arrow.metadata[b"stac-geoparquet"])
    assert stac["collections"] == {"itslive-granules": {}}
    assert file.metadata.row_group(0).column(0).compression == "ZSTD"
    table = file.read()
    keys = list(zip(table["platform"].to_pylist(), table["datetime"].to_pylist(), strict=True))
    assert keys == sorted(keys)
    assert table["grid_partition"].type == pa.string()
    assert list(table_to_items(table.drop_columns(["grid_partition"])))  # our reader too


def test_bbox_across_antimeridian_is_rfc7946() -> None:
    rng = np.random.default_rng(3)
    east = make_item(rng)
    cross = make_item(rng, antimeridian=True)
    meta = geo_metadata(_rows([east, cross]))
    xmin, _, xmax, _ = meta["columns"]["geometry"]["bbox"]
    if cross["bbox"][0] > cross["bbox"][2]:
        assert xmin > xmax or (xmin, xmax) == (-180.0, 180.0)


def _all_statistics_file(table: pa.Table, path: str) -> None:
    """A file written the way the writer wrote them before the tiny-file settings:
    statistics on every column, dictionary pages on the low-cardinality ones."""
    from earthcatalog_dagster.core import geoparquet

    rows = geoparquet.sort_rows(table.select(geoparquet.WAREHOUSE_SCHEMA.names))
    rows = rows.cast(geoparquet.WAREHOUSE_SCHEMA).replace_schema_metadata(
        {
            b"geo": json.dumps(geoparquet.geo_metadata(rows)).encode(),
            b"stac-geoparquet": json.dumps(geoparquet.stac_metadata(rows)).encode(),
        }
    )
    pq.write_table(
        rows,
        path,
        compression="zstd",
        use_dictionary=geoparquet.DICTIONARY_COLUMNS,
        write_statistics=True,
        store_schema=True,
    )


def test_statistics_only_on_pruning_columns_same_rows_and_metadata(tmp_path) -> None:
    """Against a file with statistics everywhere: the same rows, the same ``geo`` and
    ``stac-geoparquet`` bytes, the same statistics on the columns kept, none elsewhere."""
    from earthcatalog_dagster.core.geoparquet import STATISTICS_COLUMNS

    rng = np.random.default_rng(3)
    rows = _rows([make_item(rng) for _ in range(12)])
    old, new = str(tmp_path / "old.parquet"), str(tmp_path / "new.parquet")
    _all_statistics_file(rows, old)
    written = write_geoparquet(rows, new)
    before, after = pq.ParquetFile(old), pq.ParquetFile(new)
    assert after.read().equals(before.read())
    assert after.schema_arrow.equals(before.schema_arrow, check_metadata=True)
    for key in (b"geo", b"stac-geoparquet"):
        assert after.schema_arrow.metadata[key] == before.schema_arrow.metadata[key]
    assert written.size == (tmp_path / "new.parquet").stat().st_size
    assert written.size < (tmp_path / "old.parquet").stat().st_size  # statistics were bytes
    old_group, new_group = before.metadata.row_group(0), after.metadata.row_group(0)
    for i in range(after.metadata.num_columns):
        column = new_group.column(i)
        if column.path_in_schema in STATISTICS_COLUMNS:
            assert column.is_stats_set
            assert column.statistics == old_group.column(i).statistics
        else:
            assert not column.is_stats_set, column.path_in_schema
        assert column.compression == "ZSTD"


def test_dictionary_pages_only_in_large_files(tmp_path) -> None:
    from earthcatalog_dagster.core import geoparquet

    rng = np.random.default_rng(4)
    small = _rows([make_item(rng) for _ in range(5)])
    path = str(tmp_path / "small.parquet")
    write_geoparquet(small, path)
    assert not any(
        pq.ParquetFile(path).metadata.row_group(0).column(i).has_dictionary_page
        for i in range(small.num_columns)
    )
    large = pa.concat_tables([small] * (geoparquet.DICTIONARY_MIN_ROWS // 5 + 1))
    path = str(tmp_path / "large.parquet")
    write_geoparquet(large, path)
    meta = pq.ParquetFile(path).metadata
    dictionary = {
        meta.row_group(0).column(i).path_in_schema
        for i in range(meta.num_columns)
        if meta.row_group(0).column(i).has_dictionary_page
    }
    assert dictionary == set(geoparquet.DICTIONARY_COLUMNS)
