"""Registration drops the rows of ids another run registered first (overlapping deltas)."""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.geoparquet import write_geoparquet
from earthcatalog_dagster.core.hash_index import HashIndex
from earthcatalog_dagster.core.items import parse_items
from earthcatalog_dagster.pipeline.overlap import drop_registered_rows
from earthcatalog_dagster.synthetic import make_item

CELL = "810bbffffffffff"


def _file(path: str, items: list[dict]) -> str:
    parsed = parse_items([orjson.dumps(i) for i in items], [i["id"] for i in items])
    rows = parsed.table.append_column("grid_partition", pa.array([CELL] * len(items)))
    write_geoparquet(rows, path)
    return path


def test_rows_of_registered_ids_are_dropped(tmp_path) -> None:
    rng = np.random.default_rng(3)
    items = [make_item(rng) for _ in range(9)]
    ids = [i["id"] for i in items]
    partly = _file(str(tmp_path / "partly.parquet"), items[:5])
    wholly = _file(str(tmp_path / "wholly.parquet"), items[5:7])
    untouched = _file(str(tmp_path / "untouched.parquet"), items[7:])
    in_table = _file(str(tmp_path / "in_table.parquet"), items[:2])
    gone = str(tmp_path / "gone.parquet")
    before = pq.read_table(partly)

    registered = HashIndex.from_ids([*ids[:2], *ids[5:7]])
    result = drop_registered_rows(
        [partly, wholly, untouched, in_table, gone], registered, table_files={in_table}
    )
    assert result.files == [partly, untouched, in_table]
    assert result.rewritten == [partly]
    assert result.removed == [wholly, gone]
    assert result.rows_dropped == 4
    assert not storage.exists(wholly)
    after = pq.read_table(partly)
    assert after["id"].to_pylist() == [i for i in before["id"].to_pylist() if i in ids[2:5]]
    assert b"geo" in after.schema.metadata and b"stac-geoparquet" in after.schema.metadata
    assert pq.read_table(in_table).num_rows == 2  # already registered: left alone

    # A rerun converges: nothing more to drop.
    again = drop_registered_rows(result.files, registered, table_files={in_table})
    assert again.files == result.files and again.rows_dropped == 0 and not again.rewritten
