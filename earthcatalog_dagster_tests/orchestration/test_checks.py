"""The ingest asset checks on their own: they take their evidence from what
``warehouse_parquets``' tasks returned (no file read back), that evidence equals what the
files hold, and each check still fails on the problem it guards against."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import HashIndex
from earthcatalog_dagster.orchestration import checks
from earthcatalog_dagster.orchestration.descriptors import NdjsonDescriptor
from earthcatalog_dagster.pipeline import phases
from earthcatalog_dagster.synthetic import generate_day, write_inventory
from earthcatalog_dagster_tests.conftest import DAY_1


def _compacted(tmp_path: Path, n: int = 40) -> tuple[str, list[phases.BucketResult]]:
    """A staged chunk of ``n`` synthetic items compacted with ``keep_ids``."""
    settings = Settings.embedded(tmp_path)
    day = generate_day(DAY_1, n, source_root=settings.source_root, seed=3)
    manifest = write_inventory(settings.inventory, DAY_1, day.refs)
    staging = layout.join(settings.staging, "delta_test")
    plan = phases.write_chunks(manifest, staging, chunk_size=1_000)
    chunk = phases.ingest_chunk(
        plan.chunks[0], staging, source_root=settings.source_root, resolution=1
    )
    results = phases.compact_task(
        [(cell, year) for cell, year, _ in chunk.buckets],
        staging_dir=staging,
        warehouse=settings.warehouse,
        token="t",
        keep_ids=True,
    )
    return staging, results


def test_evidence_from_the_tasks_equals_what_the_files_hold(tmp_path) -> None:
    staging, results = _compacted(tmp_path)
    from_tasks = checks.NewRows.from_results(results)
    read_back = checks.NewRows.read([f for r in results for f in r.files])
    assert from_tasks.files_read == 0
    assert read_back.files_read == len(read_back.files) > 0
    assert from_tasks.files == read_back.files
    assert from_tasks.cells == read_back.cells
    assert from_tasks.years == read_back.years
    assert from_tasks.table.equals(read_back.table)
    assert checks.files_match_their_bucket(from_tasks).passed
    assert checks.no_duplicate_rows(from_tasks, HashIndex.empty()).passed

    # The ids recorded for the later steps come back per file, as the files hold them.
    checks.write_new_ids(staging, from_tasks)
    recorded = checks.read_new_ids(staging, from_tasks.files[:3])
    assert set(recorded) == set(from_tasks.files[:3])
    for uri, ids in recorded.items():
        assert ids.equals(storage.read_parquet(uri, columns=["id"])["id"].combine_chunks())

    # A bucket skipped by its marker has no ids in memory: its files are read back.
    again = phases.compact_task(
        [(r.cell, r.year) for r in results],
        staging_dir=staging,
        warehouse="unused",
        token="t",
        keep_ids=True,
    )
    assert all(r.skipped and r.ids is None for r in again)
    reread = checks.NewRows.from_results(again)
    assert reread.files_read == len(reread.files)
    assert reread.table.equals(from_tasks.table)


def _result(
    cell: str, year: str, files: list[str], years: list[list[str]], ids: list[list[str]]
) -> phases.BucketResult:
    """A task's result for ``files`` of one bucket, each file holding ``ids``."""
    return phases.BucketResult(
        cell,
        year,
        files=files,
        rows=sum(map(len, ids)),
        file_cells=[[cell] for _ in files],
        file_years=years,
        ids=[pa.array(i, pa.string()) for i in ids],
    )


def test_a_file_holding_another_year_fails_its_check(tmp_path) -> None:
    uri = layout.warehouse_file(str(tmp_path), "81", "2024", "t", 0)
    good = _result("81", "2024", [uri], [["2024"]], [["a"]])
    bad = _result("81", "2024", [uri], [["2023", "2024"]], [["a"]])
    assert checks.files_match_their_bucket(checks.NewRows.from_results([good])).passed
    failed = checks.files_match_their_bucket(checks.NewRows.from_results([bad]))
    assert not failed.passed
    assert "2023" in failed.metadata["mismatched"].value


def test_an_id_twice_in_one_cell_fails_and_known_ids_are_counted(tmp_path) -> None:
    a = layout.warehouse_file(str(tmp_path), "81", "2024", "t", 0)
    b = layout.warehouse_file(str(tmp_path), "81", "2023", "t", 0)
    c = layout.warehouse_file(str(tmp_path), "83", "2023", "t", 0)
    # The same id in two cells is fine (fan-out); in two years of one cell it is not.
    ok = checks.NewRows.from_results(
        [
            _result("81", "2024", [a], [["2024"]], [["x", "y"]]),
            _result("83", "2023", [c], [["2023"]], [["x"]]),
        ]
    )
    result = checks.no_duplicate_rows(ok, HashIndex.from_ids(["y"]))
    assert result.passed
    assert result.metadata["new ids already in the table (dropped at registration)"].value == 1
    twice = checks.NewRows.from_results(
        [
            _result("81", "2024", [a], [["2024"]], [["x"]]),
            _result("81", "2023", [b], [["2023"]], [["x"]]),
        ]
    )
    failed = checks.no_duplicate_rows(twice, HashIndex.empty())
    assert not failed.passed
    assert failed.metadata["repeated (id, cell) among new rows"].value == 1


def test_a_delta_id_nowhere_fails_delta_accounted_for(tmp_path) -> None:
    staging = str(tmp_path / "staging")
    keys = [f"velocity_image_pair/landsatOLI/v02/N60W040/{i}.stac.json" for i in "abc"]
    storage.write_parquet(
        pa.table({"bucket": ["its-live-data"] * 3, "key": keys}), layout.chunk_file(staging, 0)
    )
    uri = layout.warehouse_file(str(tmp_path), "81", "2024", "t", 0)
    ndjson = NdjsonDescriptor(rows=3, items=3, buckets=(("81", "2024"),), resolution=1)
    all_there = checks.NewRows.from_results(
        [_result("81", "2024", [uri], [["2024"]], [list("abc")])]
    )
    assert checks.delta_accounted_for(all_there, HashIndex.empty(), staging, ndjson).passed
    lost = checks.NewRows.from_results([_result("81", "2024", [uri], [["2024"]], [["a", "b"]])])
    failed = checks.delta_accounted_for(lost, HashIndex.empty(), staging, ndjson)
    assert not failed.passed
    assert failed.metadata["unaccounted sample"].value == "c"
    # ... unless the index holds it (a delta reused after a partial run).
    assert checks.delta_accounted_for(lost, HashIndex.from_ids(["c"]), staging, ndjson).passed


def test_index_missing_a_new_id_fails() -> None:
    ids = pa.array(["a", "b"], pa.string())
    assert checks.index_holds_new_ids(ids, HashIndex.from_ids(["a", "b", "z"])).passed
    failed = checks.index_holds_new_ids(ids, HashIndex.from_ids(["a"]))
    assert not failed.passed
    assert failed.metadata["ids missing from the index"].value == 1
