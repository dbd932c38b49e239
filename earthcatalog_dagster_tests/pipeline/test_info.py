"""``info``'s summary: what it counts, where it read the catalog, and that it creates nothing."""

from __future__ import annotations

import os

import pytest

from earthcatalog_dagster import ingest
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.pipeline.info import FROM_HASH_INDEX, FROM_TABLE, catalog_info
from earthcatalog_dagster.synthetic import generate_day, write_inventory
from earthcatalog_dagster_tests.conftest import DAY_1


def test_without_a_hash_index_it_counts_distinct_ids_not_rows(home) -> None:
    day = generate_day(DAY_1, 60, source_root=home.source_root, seed=3)
    manifest = write_inventory(home.inventory, DAY_1, day.refs)
    summary = ingest(manifest, settings=home, h3_resolution=2, update_hash_index=False)
    assert summary.reconciles and not os.path.exists(home.warehouse_hash)

    info = catalog_info(home.catalog, home.warehouse, home.warehouse_hash)
    distinct = len(set(day.good_ids))
    assert info.total_rows > distinct  # items span several cells: rows are not items
    assert info.unique_items == distinct
    assert info.unique_items_source == FROM_TABLE
    text = info.render()
    assert f"Unique items : {distinct:,} (distinct ids counted in the table; no hash" in text
    assert f"Catalog : {home.catalog}" in text

    ingest(manifest, settings=home, h3_resolution=2)  # now with the hash index
    indexed = catalog_info(home.catalog, home.warehouse, home.warehouse_hash)
    assert indexed.unique_items == distinct and indexed.unique_items_source == FROM_HASH_INDEX
    assert f"Hash index : {home.warehouse_hash}" in indexed.render()


def test_a_catalog_that_does_not_exist_is_an_error_and_is_not_created(home) -> None:
    with pytest.raises(FileNotFoundError, match=f"no catalog at {home.catalog}"):
        catalog_info(home.catalog, home.warehouse, home.warehouse_hash)
    assert not os.path.exists(home.home)  # neither the catalog nor its folder


def test_an_empty_catalog_reports_zero(home) -> None:
    iceberg.open_catalog(home.catalog, home.warehouse)
    info = catalog_info(home.catalog, home.warehouse, catalog_label="s3://b/earthcatalog.db")
    assert (info.unique_items, info.total_files, info.snapshot_id) == (0, 0, None)
    assert "Catalog : s3://b/earthcatalog.db" in info.render()


def test_it_shows_the_tables_health(home) -> None:
    import datetime as dt
    from collections import Counter

    from earthcatalog_dagster import layout
    from earthcatalog_dagster.core import storage

    for n in range(3):
        date = DAY_1 + dt.timedelta(days=n)
        day = generate_day(date, 30, source_root=home.source_root, seed=40 + n)
        ingest(write_inventory(home.inventory, date, day.refs), settings=home, h3_resolution=1)
    listing = storage.list_objects(home.warehouse, suffix=".parquet")
    per_bucket = Counter(layout.parse_warehouse_file(o.uri) for o in listing)

    info = catalog_info(home.catalog, home.warehouse, home.warehouse_hash)
    assert info.health.files_per_bucket_max == max(per_bucket.values())
    assert info.health.snapshots == 3
    assert info.health.metadata_bytes > 0
    text = info.render()
    assert f"Files per (cell, year) : max {max(per_bucket.values()):,}," in text
    assert f"Rows per file : {info.total_rows / len(listing):,.1f} on average" in text
    assert "Snapshots : 3 (oldest " in text
    assert "Last maintenance : never" in text

    from earthcatalog_dagster import compact

    compact(settings=home, min_files=2)
    after = catalog_info(home.catalog, home.warehouse, home.warehouse_hash)
    assert after.health.last_maintenance is not None
    assert "Last maintenance : compact at " in after.render()
    assert after.health.files_per_bucket_max < max(per_bucket.values())
