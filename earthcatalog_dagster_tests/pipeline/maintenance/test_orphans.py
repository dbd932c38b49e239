"""Orphan removal: only unreferenced table files past the grace period, ``dry_run`` lists
them only, files that are not the table's are never touched, a wrong warehouse refuses."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.pipeline.ingest import ingest
from earthcatalog_dagster.pipeline.maintenance.orphans import WrongWarehouse, remove_orphans
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2, local_and_s3
from earthcatalog_dagster_tests.helpers import load_table, table_pairs, write_day
from earthcatalog_dagster_tests.pipeline.maintenance.history import all_exist, snapshot_reads


def _two_days(settings) -> None:
    for seed, date in enumerate((DAY_1, DAY_2)):
        _, manifest = write_day(settings, date, 12, seed=20 + seed)
        ingest(manifest, settings=settings, h3_resolution=1, workers=1)


def _strays(settings) -> dict[str, str]:
    """A data file of a run that never registered, a manifest and a metadata.json no
    snapshot names, and a file under the warehouse that is not the table's."""
    some_file = next(
        o.uri
        for o in storage.list_objects(settings.warehouse, suffix=".parquet")
        if layout.parse_warehouse_file(o.uri)
    )
    cell, year = layout.parse_warehouse_file(some_file)
    metadata = layout.table_metadata_dir(settings.warehouse)
    strays = {
        "data": layout.warehouse_file(settings.warehouse, cell, year, "deadrun", 0),
        "manifest": layout.join(metadata, "0badc0de-m0.avro"),
        "metadata": layout.join(metadata, "00042-0badc0de.metadata.json"),
    }
    storage.write_bytes(strays["data"], storage.read_bytes(some_file))
    storage.write_bytes(strays["manifest"], b"not read by anyone")
    storage.write_bytes(strays["metadata"], b"{}")
    storage.write_bytes(layout.join(settings.warehouse, "README.txt"), b"not the table's")
    return strays


@pytest.mark.slow
@local_and_s3
def test_grace_period_dry_run_and_removal(home) -> None:
    _two_days(home)
    strays = _strays(home)
    table = load_table(home)
    referenced = set().union(*snapshot_reads(table).values())
    pairs = table_pairs(home)
    now = dt.datetime.now(dt.UTC)

    # Within the grace period (default three days): nothing goes.
    young = remove_orphans(settings=home)
    assert young.orphans == [] and young.too_young == len(strays)
    assert all_exist(set(strays.values())) == []

    # Four days later, a dry run lists exactly the strays and deletes nothing.
    later = now + dt.timedelta(days=4)
    planned = remove_orphans(settings=home, dry_run=True, now=later)
    assert planned.dry_run and set(planned.orphans) == set(strays.values())
    assert planned.data_files_deleted == 1 and planned.metadata_files_deleted == 2
    assert all(uri in planned.render() for uri in strays.values())
    assert all_exist(set(strays.values())) == []

    done = remove_orphans(settings=home, now=later)
    assert set(done.orphans) == set(strays.values())
    assert all_exist(set(strays.values())) == sorted(strays.values())
    assert storage.exists(layout.join(home.warehouse, "README.txt"))
    assert all_exist(referenced) == []
    assert all_exist({table.metadata_location.removeprefix("file://")}) == []
    assert table_pairs(home) == pairs
    assert remove_orphans(settings=home, now=later).orphans == []


def test_a_wrong_warehouse_is_refused(home, tmp_path) -> None:
    _, manifest = write_day(home, DAY_1, 5, seed=1)
    ingest(manifest, settings=home, h3_resolution=1, workers=1)
    other = dataclasses.replace(home, warehouse=str(tmp_path / "elsewhere"))
    storage.write_bytes(
        layout.join(other.warehouse, "grid_partition=x/year=2020/part_a_00000.parquet"), b"x"
    )
    with pytest.raises(WrongWarehouse, match="refusing"):
        remove_orphans(settings=other, orphan_older_than_days=0)
    assert storage.exists(
        layout.join(other.warehouse, "grid_partition=x/year=2020/part_a_00000.parquet")
    )


def test_no_table_removes_nothing(home) -> None:
    stray = layout.warehouse_file(home.warehouse, "8101bffffffffff", 2020, "x", 0)
    storage.write_bytes(stray, b"x")
    assert remove_orphans(settings=home, orphan_older_than_days=0).orphans == []
    assert storage.exists(stray)
