from __future__ import annotations

import os

import pytest
import xxhash

from earthcatalog_dagster import ingest, layout
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import load_hash_index
from earthcatalog_dagster.pipeline import commit as commit_module
from earthcatalog_dagster.pipeline import staging
from earthcatalog_dagster.pipeline.info import catalog_info
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2, local_and_s3
from earthcatalog_dagster_tests.core.test_scratch import start_holder, stop
from earthcatalog_dagster_tests.helpers import assert_pairs_match, table_pairs, write_day

# End to end (whole ingests, Dagster runs, S3 servers): out of the fast lane.
pytestmark = pytest.mark.slow


@local_and_s3
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_ingest_builds_the_catalog_and_reconciles(home, fmt) -> None:
    day, manifest = write_day(home, DAY_1, 150 if storage.is_local(home.warehouse) else 60, fmt=fmt)
    summary = ingest(manifest, settings=home, h3_resolution=1)

    assert summary.mode == "full"
    assert summary.reconciles, summary.as_dict()
    bad = day.expected
    assert summary.missing == len(bad["missing"])
    assert summary.rejected == sum(
        len(bad[k]) for k in ("truncated", "error_page", "no_id", "uncoercible")
    )
    assert summary.items_written == len(day.good_ids)

    # Each id once per overlapping cell and nowhere else.
    assert_pairs_match(table_pairs(home), day)

    # Iceberg partition values (from the writer's own footers) match each file's path.
    table = iceberg.load_table(iceberg.open_catalog(home.catalog, home.warehouse))
    files = table.inspect.files().to_pylist()
    assert len(files) == summary.files_written
    for file in files:
        cell, year = layout.parse_warehouse_file(file["file_path"])
        assert file["partition"]["grid_partition"] == cell
        year_value = file["partition"]["datetime_year"]
        assert (str(1970 + year_value) if year_value is not None else layout.NO_YEAR) == year

    # The hash index holds exactly the ingested ids.
    index = load_hash_index(home.warehouse_hash)
    assert len(index) == len(set(day.good_ids))
    probe = xxhash.xxh3_128(day.good_ids[0].encode(), seed=42).digest()
    assert index.contains([probe]).all()

    # Rejected and missing objects are recorded with reasons.
    outcomes = storage.read_parquet(summary.outcomes_uri).to_pylist()
    assert {o["outcome"] for o in outcomes} == {"rejected", "missing"}
    assert all(o["reason"] for o in outcomes)
    assert len(outcomes) == summary.rejected + summary.missing

    info = catalog_info(home.catalog, home.warehouse, home.warehouse_hash).render()
    assert f"Unique items : {len(set(day.good_ids)):,} (from hash index)" in info


@local_and_s3
def test_rerun_adds_no_file_row_or_hash(home) -> None:
    _, manifest = write_day(home, DAY_1, 80)
    first = ingest(manifest, settings=home, h3_resolution=1)
    files_before = sorted(o.uri for o in storage.list_objects(home.warehouse, suffix=".parquet"))
    rows_before = table_pairs(home)

    again = ingest(manifest, settings=home, h3_resolution=1)
    assert again.mode == "delta"
    assert again.files_written == 0 and again.snapshot_id is None
    assert again.already_ingested == first.items_written
    assert again.hashes_after == first.hashes_after
    assert (
        sorted(o.uri for o in storage.list_objects(home.warehouse, suffix=".parquet"))
        == files_before
    )
    assert table_pairs(home) == rows_before


def test_next_day_appends_as_delta(home) -> None:
    day1, manifest1 = write_day(home, DAY_1, 60, seed=1)
    ingest(manifest1, settings=home, h3_resolution=1)
    day2, manifest2 = write_day(home, DAY_2, 70, seed=2)
    summary = ingest(manifest2, settings=home, h3_resolution=1)
    assert summary.mode == "delta" and summary.reconciles
    assert_pairs_match(table_pairs(home), day1, day2)
    assert len(load_hash_index(home.warehouse_hash)) == len(set(day1.good_ids) | set(day2.good_ids))


def test_run_killed_before_hash_index_update_heals_on_rerun(home, monkeypatch) -> None:
    day1, manifest1 = write_day(home, DAY_1, 40, seed=3)
    ingest(manifest1, settings=home, h3_resolution=1)
    day2, manifest2 = write_day(home, DAY_2, 50, seed=4)

    def dies_after_registering(table, uri, **kwargs):
        raise SystemExit("killed")  # the sync after registration: the process "dies" here

    monkeypatch.setattr(commit_module, "sync_hash_index", dies_after_registering)
    with pytest.raises(SystemExit):
        ingest(manifest2, settings=home, h3_resolution=1)
    monkeypatch.undo()
    assert len(load_hash_index(home.warehouse_hash)) == len(set(day1.good_ids))

    rerun = ingest(manifest2, settings=home, h3_resolution=1)
    assert rerun.reconciles
    assert rerun.files_written == 0  # everything was registered before the kill
    assert_pairs_match(table_pairs(home), day1, day2)
    assert len(load_hash_index(home.warehouse_hash)) == len(set(day1.good_ids) | set(day2.good_ids))


def test_run_killed_after_writing_files_overwrites_them_on_rerun(home, monkeypatch) -> None:
    day1, manifest1 = write_day(home, DAY_1, 40, seed=5)

    def dies(*args, **kwargs):
        raise SystemExit("killed before registering")

    monkeypatch.setattr(commit_module.iceberg, "register_files", dies)
    with pytest.raises(SystemExit):
        ingest(manifest1, settings=home, h3_resolution=1)
    monkeypatch.undo()
    written = sorted(o.uri for o in storage.list_objects(home.warehouse, suffix=".parquet"))
    assert written

    summary = ingest(manifest1, settings=home, h3_resolution=1)
    assert summary.reconciles
    after = sorted(o.uri for o in storage.list_objects(home.warehouse, suffix=".parquet"))
    assert after == written  # same deterministic names, no second copy
    assert_pairs_match(table_pairs(home), day1)


def test_since_and_limit(home) -> None:
    _, manifest = write_day(home, DAY_1, 50)
    summary = ingest(manifest, settings=home, limit=10, h3_resolution=1)
    assert summary.source_rows == 10 and summary.reconciles
    later = ingest(manifest, settings=home, since="2099-01-01", h3_resolution=1)
    assert later.source_rows == 0


def test_null_geometry_items_land_in_none_cell(home) -> None:
    day, manifest = write_day(home, DAY_1, 30)
    ingest(manifest, settings=home, h3_resolution=1)
    null_ids = {layout.item_id_from_key(k) for k in day.expected["null_geometry"]}
    assert null_ids
    rows = table_pairs(home)
    assert {(i, layout.NO_CELL) for i in null_ids} <= set(rows)


def test_resolution_is_stored_and_enforced(home) -> None:
    _, manifest = write_day(home, DAY_1, 20)
    ingest(manifest, settings=home, h3_resolution=2)
    table = iceberg.load_table(iceberg.open_catalog(home.catalog, home.warehouse))
    assert iceberg.table_resolution(table) == 2
    _, manifest2 = write_day(home, DAY_2, 20, seed=9)
    with pytest.raises(ValueError, match="resolution"):
        ingest(manifest2, settings=home, h3_resolution=1)


def test_process_pool_path_gives_the_same_catalog(home, monkeypatch) -> None:
    # Runs past PARALLEL_AFTER_ROWS parse and fan out in worker processes; force it here.
    day, manifest = write_day(home, DAY_1, 120, seed=21)
    monkeypatch.setattr(staging, "PARALLEL_AFTER_ROWS", 0)
    summary = ingest(manifest, settings=home, batch_rows=25, workers=2, h3_resolution=1)
    assert summary.reconciles, summary.as_dict()
    assert summary.items_written == len(day.good_ids)
    assert_pairs_match(table_pairs(home), day)
    assert len(load_hash_index(home.warehouse_hash)) == len(set(day.good_ids))


def test_ingest_spills_into_a_folder_it_removes_and_sweeps_a_killed_runs(
    home, monkeypatch, tmp_path
) -> None:
    """The spill folder lives in ``TMPDIR`` and goes with the run; a killed run's goes with
    the next run."""
    spill_parent = tmp_path / "tmpdir"
    spill_parent.mkdir()
    monkeypatch.setenv("TMPDIR", str(spill_parent))
    monkeypatch.setattr("tempfile.tempdir", None)  # read TMPDIR again
    killed, abandoned = start_holder(spill_parent, staging.SPILL_PREFIX)
    stop(killed)  # SIGKILL: it could not remove its folder
    spilled_to: list[str] = []
    spill_rows = staging.spill_rows

    def recording_spill(rows, spill_dir):  # type: ignore[no-untyped-def]
        spilled_to.append(spill_dir)
        return spill_rows(rows, spill_dir)

    monkeypatch.setattr(staging, "spill_rows", recording_spill)
    day, manifest = write_day(home, DAY_1, 40, seed=5)
    summary = ingest(manifest, settings=home, h3_resolution=1)
    assert summary.items_written == len(set(day.good_ids))
    assert spilled_to and {os.path.dirname(d) for d in spilled_to} == {str(spill_parent)}
    assert not abandoned.exists()
    assert list(spill_parent.iterdir()) == []
