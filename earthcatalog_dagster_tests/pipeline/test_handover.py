"""The footers ``warehouse_parquets`` hands ``iceberg_table``: what comes back is what the
files hold (oracle: the footer read from the file itself). That registration from handed
footers records what reading the files records is tested in ``core/test_catalog*``."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.buckets import explode_to_cells, split_buckets
from earthcatalog_dagster.core.geoparquet import (
    HeldFile,
    footer_bytes,
    footer_from_bytes,
    write_geoparquet,
)
from earthcatalog_dagster.core.items import parse_items
from earthcatalog_dagster.pipeline.handover import read_footers, write_footers
from earthcatalog_dagster.synthetic.items import item_json, make_item


def _written(tmp_path, n: int = 30):
    rng = np.random.default_rng(7)
    items = [make_item(rng) for _ in range(n)]
    parsed = parse_items([item_json(i) for i in items], [f"k/{i['id']}.stac.json" for i in items])
    rows = explode_to_cells(parsed, 1)
    return [
        write_geoparquet(bucket, str(tmp_path / "wh" / f"{cell}_{year}.parquet"))
        for (cell, year), bucket in split_buckets(rows)
    ]


def test_recorded_footers_are_the_files_footers(tmp_path) -> None:
    written = _written(tmp_path)
    staging = str(tmp_path / "staging")
    uri = write_footers(staging, [HeldFile.of(w) for w in written])
    assert uri == layout.warehouse_footers(staging)

    wanted = [w.uri for w in written[:-1]] + [str(tmp_path / "not-written.parquet")]
    back = read_footers(staging, wanted)
    assert sorted(back) == sorted(w.uri for w in written[:-1])
    for uri, got in back.items():
        on_disk = pq.read_metadata(uri)
        assert got.footer.equals(on_disk)
        assert got.size == len(storage.read_bytes(uri))
        assert (
            got.footer.row_group(0).column(0).statistics
            == on_disk.row_group(0).column(0).statistics
        )
    assert read_footers(str(tmp_path / "elsewhere"), wanted) == {}


def test_footer_bytes_refuse_what_is_not_a_footer() -> None:
    with pytest.raises(TypeError, match="not a serialized Parquet footer"):
        footer_from_bytes(pickle.dumps({"a": 1}))
    table = pa.table({"x": [1, 2]})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    footer = pq.read_metadata(pa.BufferReader(sink.getvalue()))
    assert footer_from_bytes(footer_bytes(footer)).equals(footer)
