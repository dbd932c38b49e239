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
