"""``ingest()`` writes its buckets a group at a time, from rows spilled per batch.

However the rows are batched, staged (threads or worker processes) and grouped for
writing, the warehouse files are the same, byte for byte; and they hold what the source
holds (the oracle: the generated day and the objects written here), one (cell, year)
each, in warehouse order, the latest update of an item winning.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from earthcatalog_dagster import ingest, layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.buckets import explode_to_cells
from earthcatalog_dagster.core.geoparquet import HeldFile, write_geoparquet
from earthcatalog_dagster.core.items import parse_items
from earthcatalog_dagster.core.schema import WAREHOUSE_SCHEMA
from earthcatalog_dagster.pipeline import ingest as ingest_module
from earthcatalog_dagster.pipeline import staging
from earthcatalog_dagster.synthetic import generate_day, make_item, write_inventory
from earthcatalog_dagster_tests.conftest import DAY_1
from earthcatalog_dagster_tests.helpers import assert_pairs_match, table_pairs

pytestmark = pytest.mark.slow

COUNTS = (
    "source_rows",
    "duplicate_keys",
    "fetched",
    "missing",
    "failed",
    "rejected",
    "items_written",
    "rows_written",
    "id_mismatches",
    "files_written",
    "bytes_written",
    "files_registered",
    "cells",
    "years",
)


def _source(root: str, n: int, seed: int):
    """A synthetic day under ``root``, plus one more object holding an item of the day
    again under another key, updated later and with other contents; the day, its
    manifest, the source root, and the twin item."""
    src = Settings.embedded(root)
    day = generate_day(DAY_1, n, source_root=src.source_root, seed=seed)
    original = next(i for i in day.items if i["geometry"] is not None)
    twin = orjson.loads(orjson.dumps(original))
    twin["properties"]["updated"] = "2099-01-01T00:00:00.000000Z"
    twin["properties"]["percent_valid_pixels"] = 3
    key = next(k for k in day.item_keys if layout.item_id_from_key(k) == original["id"])
    twin_key = key.replace(original["id"], f"{original['id']}_again")
    bucket = day.refs["bucket"][0].as_py()
    storage.write_bytes(layout.source_object(bucket, twin_key, src.source_root), orjson.dumps(twin))
    extra = day.refs.slice(0, 1).to_pylist()[0] | {"key": twin_key}
    refs = pa.concat_tables([day.refs, pa.Table.from_pylist([extra], schema=day.refs.schema)])
    manifest = write_inventory(src.inventory, DAY_1, refs)
    return day, manifest, src.source_root, twin


def _data_files(settings: Settings) -> dict[str, bytes]:
    """Every warehouse data file, by its path under the warehouse root."""
    return {
        os.path.relpath(o.uri, settings.warehouse): storage.read_bytes(o.uri)
        for o in storage.list_objects(settings.warehouse, suffix=".parquet")
        if layout.parse_warehouse_file(o.uri) is not None
    }


def test_groups_batches_and_workers_give_the_same_files(tmp_path, monkeypatch) -> None:
    day, manifest, source_root, twin = _source(str(tmp_path / "source"), 120, seed=31)
    spill_root = tmp_path / "tmp"
    spill_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill_root))

    # Every bucket a group of its own; batches of 16 rows fanned out in worker processes.
    monkeypatch.setattr(ingest_module, "WRITE_GROUP_ROWS", 1)
    monkeypatch.setattr(staging, "PARALLEL_AFTER_ROWS", 0)
    small = Settings.embedded(tmp_path / "small")
    grouped = ingest(
        manifest,
        settings=small,
        source_root=source_root,
        h3_resolution=1,
        batch_rows=16,
        workers=2,
        compact_rows=3,
    )
    # One group of every row, one batch, staged in this process.
    monkeypatch.setattr(ingest_module, "WRITE_GROUP_ROWS", 10**9)
    monkeypatch.setattr(staging, "PARALLEL_AFTER_ROWS", 10**9)
    whole = Settings.embedded(tmp_path / "whole")
    at_once = ingest(
        manifest, settings=whole, source_root=source_root, h3_resolution=1, compact_rows=3
    )

    assert list(spill_root.glob("earthcatalog-ingest-*")) == []  # the spill folders are gone
    assert grouped.reconciles and at_once.reconciles
    assert grouped.id_mismatches == 1
    assert {k: grouped.as_dict()[k] for k in COUNTS} == {k: at_once.as_dict()[k] for k in COUNTS}
    files = _data_files(small)
    assert files == _data_files(whole)
    assert len(files) == grouped.files_written

    # What the files hold, from the source: each item once in each of its cells.
    assert_pairs_match(table_pairs(small), day)
    buckets: dict[tuple[str, str], int] = {}
    for path in files:
        cell, year = layout.parse_warehouse_file(path)
        rows = pq.read_table(os.path.join(small.warehouse, path)).to_pylist()
        assert 1 <= len(rows) <= 3
        buckets[(cell, year)] = buckets.get((cell, year), 0) + len(rows)
        assert {r["grid_partition"] for r in rows} == {cell}
        assert {str(r["datetime"].year) if r["datetime"] else layout.NO_YEAR for r in rows} == {
            year
        }
        order = [(r["platform"], r["datetime"], r["id"]) for r in rows]
        assert order == sorted(order)
        for row in rows:
            if row["id"] == twin["id"]:  # the later update won, in every cell
                assert row["percent_valid_pixels"] == 3
                assert row["updated"] == dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
    # A bucket of more than 3 rows is split over files numbered on from 0.
    for (cell, year), rows in buckets.items():
        names = sorted(p for p in files if layout.parse_warehouse_file(p) == (cell, year))
        assert len(names) == -(-rows // 3)
    assert grouped.rows_written == sum(buckets.values())


def test_a_failed_run_leaves_no_spill_folder(home, tmp_path, monkeypatch) -> None:
    day = generate_day(DAY_1, 30, source_root=home.source_root, seed=32)
    manifest = write_inventory(home.inventory, DAY_1, day.refs)
    spill_root = tmp_path / "tmp"
    spill_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spill_root))

    def dies(*args, **kwargs):
        (folder,) = spill_root.glob("earthcatalog-ingest-*")  # the rows, spilled
        assert list(folder.glob("*.arrow"))
        raise RuntimeError("the write phase failed")

    monkeypatch.setattr(ingest_module, "write_geoparquet", dies)
    with pytest.raises(RuntimeError, match="write phase failed"):
        ingest(manifest, settings=home, h3_resolution=1)
    assert list(spill_root.glob("earthcatalog-ingest-*")) == []


def test_held_footer_is_the_footer_of_the_file(tmp_path) -> None:
    rng = np.random.default_rng(33)
    items = [make_item(rng) for _ in range(30)]
    parsed = parse_items([orjson.dumps(i) for i in items], [i["id"] for i in items])
    rows = explode_to_cells(parsed, 1).cast(WAREHOUSE_SCHEMA)
    uri = str(tmp_path / "part.parquet")
    held = HeldFile.of(write_geoparquet(rows, uri))
    assert held.uri == uri and held.size == os.path.getsize(uri)
    on_disk = pq.read_metadata(uri)
    assert held.footer.to_dict() == on_disk.to_dict()
    assert held.footer.schema.equals(on_disk.schema)
    assert held.footer.metadata == on_disk.metadata
