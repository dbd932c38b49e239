"""Snapshot expiry: exactly the files no retained snapshot reads are deleted, a reader of a
retained snapshot keeps working, a kill between the commit and the deletes converges."""

from __future__ import annotations

import os

import pytest

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.options import MAINTENANCE_DEFAULTS, MaintenanceOptions, OptionError
from earthcatalog_dagster.pipeline.maintenance import expire
from earthcatalog_dagster.pipeline.maintenance.expire import expire_snapshots
from earthcatalog_dagster.pipeline.maintenance.orphans import remove_orphans
from earthcatalog_dagster_tests.conftest import local_and_s3
from earthcatalog_dagster_tests.helpers import load_table, table_pairs
from earthcatalog_dagster_tests.pipeline.maintenance.history import (
    all_exist,
    build_history,
    scan_rows,
    snapshot_reads,
    unreferenced_after,
)


def _kept(settings: Settings) -> set[int]:
    return {s.snapshot_id for s in load_table(settings).snapshots()}


def _retained_files(before: dict[int, set[str]], kept: set[int]) -> set[str]:
    return set().union(*(before[sid] for sid in kept))


@pytest.mark.slow
@local_and_s3
def test_expiry_deletes_exactly_the_unreferenced_files_and_readers_keep_working(home) -> None:
    history = build_history(home)
    _s1, _s2, s3, s4, s5 = history.snapshots
    pairs = table_pairs(home)
    # A reader opens the table now and holds the pre-rewrite snapshot s3.
    reader = load_table(home)
    before = snapshot_reads(reader)

    # 1. Keep the newest three (s3 .. s5): only s1 and s2 go.
    first = expire_snapshots(settings=home, expire_older_than_days=0, retain_last=3)
    kept = _kept(home)
    assert kept == {s3, s4, s5}
    assert first.snapshots_expired == 2 and first.snapshots_retained == 3
    assert set(first.deleted) == unreferenced_after(before, kept)
    assert first.data_files_deleted == 0  # s1 and s2's files are all still in s3
    assert first.manifest_lists_deleted == 2
    assert all_exist(set(first.deleted)) == sorted(first.deleted)  # all gone
    assert all_exist(_retained_files(before, kept)) == []
    # ... and orphan removal, even with no grace period, touches nothing they read.
    orphans = remove_orphans(settings=home, orphan_older_than_days=0)
    assert orphans.orphans == []
    assert scan_rows(reader, s3) == history.rows[s3]  # the old reader still reads s3

    # 2. Keep the newest two: s3 goes, and with it the files the rewrite replaced.
    second = expire_snapshots(settings=home, expire_older_than_days=0, retain_last=2)
    kept = _kept(home)
    assert kept == {s4, s5}
    expected = unreferenced_after(before, kept) - set(first.deleted)
    assert set(second.deleted) == expected
    assert set(history.rewritten) <= set(second.deleted)
    assert second.data_files_deleted == len(history.rewritten)
    assert second.bytes_freed > 0
    assert all_exist(expected) == sorted(expected)
    assert all_exist(_retained_files(before, kept)) == []
    remove_orphans(settings=home, orphan_older_than_days=0)
    assert scan_rows(reader, s4) == history.rows[s4]
    assert scan_rows(load_table(home), s5) == history.rows[s5]
    assert table_pairs(home) == pairs

    # 3. Nothing left to expire: a no-op.
    again = expire_snapshots(settings=home, expire_older_than_days=0, retain_last=2)
    assert again.snapshots_expired == 0 and again.deleted == []


@pytest.mark.slow
def test_age_and_retain_last_both_protect_a_snapshot(home) -> None:
    history = build_history(home, days=2)
    # Nothing is older than a day: nothing expires, whatever retain_last says.
    young = expire_snapshots(settings=home, expire_older_than_days=1, retain_last=1)
    assert young.snapshots_expired == 0
    assert _kept(home) == set(history.snapshots)
    # Old enough, but the newest ten are kept: there are only four.
    assert expire_snapshots(settings=home, expire_older_than_days=0).snapshots_expired == 0
    # The current snapshot is always kept.
    expire_snapshots(settings=home, expire_older_than_days=0, retain_last=1)
    assert _kept(home) == {load_table(home).current_snapshot().snapshot_id}
    assert scan_rows(load_table(home), history.snapshots[-1]) == history.rows[history.snapshots[-1]]


@pytest.mark.slow
def test_dry_run_reports_the_same_plan_and_changes_nothing(home) -> None:
    history = build_history(home, days=2)
    listing = {o.uri for o in storage.list_objects(home.warehouse)}
    with open(home.catalog, "rb") as f:
        catalog = f.read()
    options = MaintenanceOptions(expire_older_than_days=0, retain_last=1, dry_run=True)
    planned = expire_snapshots(options, settings=home)
    assert planned.dry_run and planned.snapshots_expired == len(history.snapshots) - 1
    assert {o.uri for o in storage.list_objects(home.warehouse)} == listing
    with open(home.catalog, "rb") as f:
        assert f.read() == catalog
    assert "would delete" in planned.render()
    done = expire_snapshots(options, settings=home, dry_run=False)
    assert sorted(done.deleted) == sorted(planned.deleted)
    assert done.bytes_freed == planned.bytes_freed


@pytest.mark.slow
@local_and_s3
def test_kill_after_the_commit_then_rerun_and_orphan_removal_converge(home, monkeypatch) -> None:
    history = build_history(home, days=2)
    before = snapshot_reads(load_table(home))
    current = history.snapshots[-1]

    real_delete, kills = expire.delete_files, []

    def killed_once(uris: list[str]) -> None:
        if not kills:
            kills.append(uris)
            raise KeyboardInterrupt("killed between the expiry commit and the deletes")
        real_delete(uris)

    monkeypatch.setattr(expire, "delete_files", killed_once)
    with pytest.raises(KeyboardInterrupt):
        expire_snapshots(settings=home, expire_older_than_days=0, retain_last=1)
    # The expiry was committed and published; its files are all still there.
    kept = _kept(home)
    assert kept == {current}
    if home.catalog_remote:
        with open(home.catalog, "rb") as f:
            assert storage.read_bytes(home.catalog_remote) == f.read()
    leftovers = unreferenced_after(before, kept)
    assert leftovers and all_exist(leftovers) == []

    rerun = expire_snapshots(settings=home, expire_older_than_days=0, retain_last=1)
    assert rerun.snapshots_expired == 0
    # Within the grace period they stay; past it, remove_orphans deletes exactly them.
    assert remove_orphans(settings=home).orphans == []
    swept = remove_orphans(settings=home, orphan_older_than_days=0)
    assert set(swept.orphans) == leftovers
    assert all_exist(leftovers) == sorted(leftovers)
    assert all_exist(_retained_files(before, kept)) == []
    assert scan_rows(load_table(home), current) == history.rows[current]


def test_metadata_versions_are_bounded(home) -> None:
    catalog = iceberg.open_catalog(home.catalog, home.warehouse)
    table = iceberg.create_table(
        catalog, warehouse=home.warehouse, resolution=1, hash_index_path=home.warehouse_hash
    )
    assert {k: table.properties[k] for k in iceberg.METADATA_RETENTION} == (
        iceberg.METADATA_RETENTION
    )
    keep = int(iceberg.METADATA_RETENTION["write.metadata.previous-versions-max"])
    for i in range(keep + 8):
        with table.transaction() as tx:
            tx.set_properties(**{"test.version": str(i)})
    versions = [
        o.uri for o in storage.list_objects(home.warehouse) if o.uri.endswith(".metadata.json")
    ]
    assert len(versions) == keep + 1  # the log plus the current version


def test_an_existing_table_gets_the_retention_properties_on_its_first_maintenance(home) -> None:
    catalog = iceberg.open_catalog(home.catalog, home.warehouse)
    table = iceberg.create_table(
        catalog, warehouse=home.warehouse, resolution=1, hash_index_path=home.warehouse_hash
    )
    with table.transaction() as tx:
        tx.remove_properties(*iceberg.METADATA_RETENTION)
    assert iceberg.ensure_metadata_retention(load_table(home)) is True
    assert iceberg.ensure_metadata_retention(load_table(home)) is False
    with load_table(home).transaction() as tx:
        tx.remove_properties(*iceberg.METADATA_RETENTION)
    result = expire_snapshots(settings=home)
    assert result.snapshots_expired == 0
    properties = load_table(home).properties
    assert all(properties[k] == v for k, v in iceberg.METADATA_RETENTION.items())


def test_no_table_is_a_no_op(home) -> None:
    assert expire_snapshots(settings=home).snapshots_expired == 0
    assert expire_snapshots(settings=home, dry_run=True).dry_run
    assert not os.path.exists(home.warehouse)


def test_options_come_from_the_maintenance_defaults() -> None:
    assert MAINTENANCE_DEFAULTS.expire_older_than_days == 7.0
    assert MAINTENANCE_DEFAULTS.retain_last == 10
    with pytest.raises(OptionError, match="retain_last"):
        expire_snapshots(retain_last=0)
    with pytest.raises(OptionError, match="unknown"):
        expire_snapshots(older_than="7d")
    result = expire.ExpiryResult(snapshots_expired=2, bytes_freed=3 * 1024 * 1024)
    assert "expired 2 snapshot(s)" in result.render() and "3.0 MiB" in result.render()
    assert result.as_dict()["deleted"] == 0
