"""One engine: ``ingest()`` and ``bulk_ingest()`` share one policy and one commit path.

Each test is a regression for a defect a new user met when entry points drifted apart:
the resolution policy, empty runs, runs that read nothing, items whose id differs from
their file name, full builds over an existing table, commits without the lock, and the
debris of killed writes. Oracles are the synthetic source items and the files on disk.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from earthcatalog_dagster import bulk_ingest, ingest, layout
from earthcatalog_dagster.cli import main as cli_main
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.pipeline import commit as commit_module
from earthcatalog_dagster.pipeline.commit import ResolutionError
from earthcatalog_dagster.pipeline.outcomes import SourceUnreadable
from earthcatalog_dagster.synthetic import SOURCE_BUCKET, generate_day, write_inventory
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2
from earthcatalog_dagster_tests.helpers import (
    assert_pairs_match,
    catalog_holds_exactly,
    checks_pass,
    load_table,
    materialize_partition,
    metadata,
    table_pairs,
    warehouse_files,
    write_day,
)

pytestmark = pytest.mark.slow
SYNC = {"scheduler": "synchronous", "chunk_size": 25, "progress": False}


def _run(entry: str, manifest: str, settings, **options):
    """One run through ``ingest()`` or ``bulk_ingest()`` with the same options."""
    if entry == "ingest":
        return ingest(manifest, settings=settings, **options)
    return bulk_ingest(manifest, settings=settings, **SYNC, **options)


both_entries = pytest.mark.parametrize("entry", ["ingest", "bulk"])


# --- resolution policy and empty runs ---------------------------------------------------------


@both_entries
def test_a_first_build_without_a_resolution_fails_before_any_work(home, entry) -> None:
    _, manifest = write_day(home, DAY_1, 20)
    with pytest.raises(ResolutionError, match="--h3-resolution"):
        _run(entry, manifest, home, mode="delta")
    assert load_table(home) is None
    assert not warehouse_files(home)
    assert not storage.list_objects(home.staging)  # not even a chunk


@both_entries
def test_delta_mode_on_a_fresh_catalog_creates_the_table_at_the_resolution(home, entry) -> None:
    day, manifest = write_day(home, DAY_1, 30)
    summary = _run(entry, manifest, home, mode="delta", h3_resolution=2)
    assert summary.mode == "delta" and summary.reconciles
    assert iceberg.table_resolution(load_table(home)) == 2
    catalog_holds_exactly(home, day, resolution=2)


@both_entries
def test_another_resolution_is_refused_and_the_table_keeps_one(home, entry) -> None:
    day, manifest = write_day(home, DAY_1, 20)
    _run(entry, manifest, home, h3_resolution=1)
    _, manifest2 = write_day(home, DAY_2, 20, seed=3)
    files = warehouse_files(home)
    with pytest.raises(ResolutionError, match="two resolutions"):
        _run(entry, manifest2, home, h3_resolution=3)
    assert warehouse_files(home) == files
    catalog_holds_exactly(home, day, resolution=1)


@both_entries
def test_an_empty_run_creates_no_table_and_fixes_no_resolution(home, entry) -> None:
    _, manifest = write_day(home, DAY_1, 20)
    summary = _run(entry, manifest, home, h3_resolution=3, limit=0)
    assert summary.source_rows == 0
    assert load_table(home) is None
    _, manifest = write_day(home, DAY_2, 20, seed=4)
    _run(entry, manifest, home, h3_resolution=1)
    assert iceberg.table_resolution(load_table(home)) == 1


# --- a run that reads nothing --------------------------------------------------------------


@both_entries
def test_a_run_where_every_object_is_missing_fails_naming_the_source(home, entry, tmp_path):
    _, manifest = write_day(home, DAY_1, 20)
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    with pytest.raises(SourceUnreadable) as failure:
        _run(entry, manifest, home, h3_resolution=1, source_root=str(empty))
    message = str(failure.value)
    assert str(empty) in message and ".stac.json" in message
    assert load_table(home) is None


def test_run_backfill_exits_non_zero_when_nothing_could_be_read(home, tmp_path, capsys) -> None:
    _, manifest = write_day(home, DAY_1, 20)
    code = cli_main(
        [
            "run-backfill",
            "--inventory",
            manifest,
            "--h3-resolution",
            "1",
            "--scheduler",
            "synchronous",
            "--source-root",
            str(tmp_path / "nowhere"),
        ]
    )
    assert code != 0
    assert str(tmp_path / "nowhere") in capsys.readouterr().err


def test_a_few_missing_objects_are_fine_and_the_threshold_is_configurable(home) -> None:
    day, manifest = write_day(home, DAY_1, 40)
    assert day.expected["missing"]  # the synthetic day deletes a few objects
    summary = ingest(manifest, settings=home, h3_resolution=1)
    assert summary.missing == len(day.expected["missing"]) and summary.reconciles
    _, manifest2 = write_day(home, DAY_2, 40, seed=8)
    with pytest.raises(SourceUnreadable, match="allowed 0%"):
        ingest(manifest2, settings=home, max_missing_fraction=0.0)


# --- items whose id differs from their file name ---------------------------------------------


def _rename_items(settings, day, count: int) -> dict[str, str]:
    """Rewrite ``count`` source objects so their id differs from their file name."""
    renamed = {}
    good = set(day.good_ids)
    for key in day.item_keys:
        if layout.item_id_from_key(key) not in good or len(renamed) == count:
            continue
        uri = layout.source_object(SOURCE_BUCKET, key, settings.source_root)
        item = orjson.loads(storage.read_bytes(uri))
        item["id"] = f"renamed-{item['id']}"
        storage.write_bytes(uri, orjson.dumps(item))
        renamed[key] = item["id"]
    return renamed


@both_entries
def test_an_item_whose_id_differs_from_its_file_name_is_ingested_once(home, entry) -> None:
    day, manifest = write_day(home, DAY_1, 40, seed=5)
    renamed = _rename_items(home, day, 3)
    first = _run(entry, manifest, home, h3_resolution=1)
    assert first.id_mismatches == 3
    assert len(first.id_mismatch_examples) == 3
    assert all("renamed-" in example for example in first.id_mismatch_examples)

    # The next day's inventory lists the same keys again (a re-delivered object).
    day2 = generate_day(DAY_2, 30, source_root=home.source_root, seed=6)
    again = day.refs.filter(pa.array([k in renamed for k in day.refs["key"].to_pylist()]))
    manifest2 = write_inventory(home.inventory, DAY_2, pa.concat_tables([day2.refs, again]))
    second = _run(entry, manifest2, home)
    assert second.already_ingested == len(renamed)  # not fetched again
    assert second.id_mismatches == 0

    ids = Counter(item_id for item_id, _ in set(table_pairs(home)))
    for new_id in renamed.values():
        assert new_id in ids
    pairs = table_pairs(home)
    assert len(pairs) == len(set(pairs))  # each (id, cell) once


# --- full builds and commits without the lock ------------------------------------------------


def test_ingest_full_mode_over_an_existing_table_does_not_double_it(home) -> None:
    day1, manifest1 = write_day(home, DAY_1, 40, seed=7)
    ingest(manifest1, settings=home, h3_resolution=1)
    before = table_pairs(home)
    again = ingest(manifest1, settings=home, mode="full")
    assert again.mode == "full" and again.already_ingested == 0
    assert again.rows_already_registered == len(before)
    assert table_pairs(home) == before
    assert_pairs_match(table_pairs(home), day1)


def test_two_commits_without_the_lock_still_drop_each_others_rows(home, monkeypatch) -> None:
    """Both runs check the table before either registers; the loser's commit is refused by
    the catalog, and it redoes the check against the winner's table."""
    day1, manifest1 = write_day(home, DAY_1, 40, seed=9)
    ingest(manifest1, settings=home, h3_resolution=1, limit=5)  # the table exists
    day2 = generate_day(DAY_2, 30, source_root=home.source_root, seed=10)
    overlap = write_inventory(home.inventory, DAY_2, pa.concat_tables([day1.refs, day2.refs]))

    barrier = threading.Barrier(2, timeout=60)
    real = commit_module.iceberg.register_files
    first_attempts: set[int] = set()

    def register_together(table, uris, **kwargs):
        me = threading.get_ident()
        if me not in first_attempts:
            first_attempts.add(me)
            barrier.wait()  # both have computed their overlap against the same table
        return real(table, uris, **kwargs)

    monkeypatch.setattr(commit_module.iceberg, "register_files", register_together)
    errors: list[BaseException] = []

    def run(manifest: str) -> None:
        try:
            ingest(manifest, settings=home, use_lock=False, mode="full")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in (manifest1, overlap)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    pairs = table_pairs(home)
    assert len(pairs) == len(set(pairs)), "an (id, cell) pair was registered twice"
    assert_pairs_match(pairs, day1, day2)


# --- debris of killed writes ---------------------------------------------------------------


def test_half_written_files_of_a_killed_run_are_cleaned_on_the_rerun(home, monkeypatch) -> None:
    day, manifest = write_day(home, DAY_1, 30, seed=11)

    def dies(*args, **kwargs):
        raise SystemExit("killed before registering")

    monkeypatch.setattr(commit_module.iceberg, "register_files", dies)
    with pytest.raises(SystemExit):
        ingest(manifest, settings=home, h3_resolution=1)
    monkeypatch.undo()
    written = sorted(warehouse_files(home))
    debris = [Path(uri + "#1") for uri in written[:3]]  # what obstore leaves when killed
    for path in debris:
        path.write_bytes(b"half a parquet file")

    ingest(manifest, settings=home, h3_resolution=1)
    assert not [p for p in debris if p.exists()]
    catalog_holds_exactly(home, day)


def test_through_dagster_an_item_whose_id_differs_is_ingested_once(home) -> None:
    """The same guarantee on the asset path: reported in ``ndjson_items``' metadata, kept as
    an alias at commit, and left out of the next day's delta."""
    day, _ = write_day(home, DAY_1, 40, seed=12)
    renamed = _rename_items(home, day, 2)
    first = materialize_partition(home, DAY_1)
    assert first.success
    checks_pass(first)
    staged = metadata(first, "ndjson_items")
    assert staged["items whose id differs from their file name"] == 2
    assert all(new_id in staged["id ≠ file name examples"] for new_id in renamed.values())

    day2 = generate_day(DAY_2, 30, source_root=home.source_root, seed=13)
    again = day.refs.filter(pa.array([k in renamed for k in day.refs["key"].to_pylist()]))
    write_inventory(home.inventory, DAY_2, pa.concat_tables([day2.refs, again]))
    second = materialize_partition(home, DAY_2)
    assert second.success
    checks_pass(second)
    delta = storage.read_parquet(layout.delta_ingested(home.delta_prefix, DAY_2))
    assert not set(renamed) & set(delta["key"].to_pylist())  # not fetched again
    pairs = table_pairs(home)
    assert len(pairs) == len(set(pairs))
    assert set(renamed.values()) <= {item_id for item_id, _ in pairs}
