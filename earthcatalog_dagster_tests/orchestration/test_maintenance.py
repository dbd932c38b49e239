"""Group ``maintenance`` in Dagster: a real materialization after two ingested days (the
daily ``iceberg_table`` never materialized in this instance), its metadata, the table it
leaves, the health checks, the weekly schedule and the freshness policy."""

from __future__ import annotations

import datetime as dt

import pytest
from dagster import AssetKey, AssetSelection, DagsterInstance, DefaultScheduleStatus, materialize

from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.definitions import defs
from earthcatalog_dagster.orchestration import maintenance
from earthcatalog_dagster.orchestration.assets import ingest_assets
from earthcatalog_dagster.pipeline.ingest import ingest
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2
from earthcatalog_dagster_tests.helpers import (
    load_table,
    metadata,
    resources_for,
    table_pairs,
    write_day,
)
from earthcatalog_dagster_tests.pipeline.maintenance.history import all_exist

RUN_CONFIG = {
    "ops": {
        "expired_snapshots": {"config": {"expire_older_than_days": 0.0, "retain_last": 1}},
        "orphans_removed": {"config": {"orphan_older_than_days": 0.0}},
    }
}


def _materialize_group(settings, run_config=RUN_CONFIG):
    return materialize(
        [*ingest_assets, *maintenance.maintenance_assets, *maintenance.maintenance_checks],
        selection=AssetSelection.groups(maintenance.GROUP),
        resources=resources_for(settings),
        instance=DagsterInstance.ephemeral(),
        run_config=run_config,
    )


@pytest.mark.slow
def test_maintenance_group_after_two_days(home) -> None:
    for seed, date in enumerate((DAY_1, DAY_2)):
        _, manifest = write_day(home, date, 25, seed=40 + seed)
        ingest(manifest, settings=home, h3_resolution=1, workers=1)
    pairs = table_pairs(home)
    files_before = iceberg.registered_files(load_table(home))

    result = _materialize_group(home)
    assert result.success

    compacted = metadata(result, "compacted_table")
    assert compacted["buckets compacted"] > 0
    assert compacted["files after"] < compacted["files before"]
    assert compacted["rows out"] == compacted["rows in"] - compacted["duplicates dropped"]
    expired = metadata(result, "expired_snapshots")
    assert expired["snapshots expired"] == 2  # two appends; the compaction is kept
    assert expired["data files deleted"] == compacted["files before"]
    assert expired["bytes freed"] > 0
    orphans = metadata(result, "orphans_removed")
    assert orphans["data files deleted"] == 0 and orphans["metadata files deleted"] == 0
    for name in ("buckets compacted", "files before", "bytes freed", "snapshots expired"):
        value = {**compacted, **expired, **orphans}[name]
        assert isinstance(value, int), name  # numeric: the UI plots it

    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    assert set(checks) == {
        maintenance.FILES_PER_BUCKET,
        maintenance.SMALL_FILES,
        maintenance.FILES_PRESENT,
    }
    assert all(c.passed for c in checks.values()), {n: c.metadata for n, c in checks.items()}

    table = load_table(home)
    assert len(table.snapshots()) == 1
    assert table_pairs(home) == pairs
    after = iceberg.registered_files(table)
    assert all_exist(after) == []
    assert len(after) < len(files_before)
    assert all_exist(files_before - after) == sorted(files_before - after)  # freed

    # A second run finds nothing to do.
    again = _materialize_group(home)
    assert metadata(again, "compacted_table")["buckets compacted"] == 0
    assert metadata(again, "expired_snapshots")["snapshots expired"] == 0


def test_the_checks_fail_on_a_fragmented_table_with_a_missing_file(home) -> None:
    files = [
        {"path": f"{home.warehouse}/grid_partition=c/year=2020/part_x_{i:05d}.parquet"}
        | {"bucket": ("c", 2020), "rows": 10, "bytes": 100}
        for i in range(6)
    ]
    assert not maintenance.files_per_bucket(files).passed
    assert not maintenance.small_file_ratio(files).passed
    present = maintenance.registered_files_present(files, home.warehouse)
    assert not present.passed and present.metadata["missing"].value == 6
    single = files[:1]
    assert maintenance.files_per_bucket(single).passed
    assert maintenance.small_file_ratio(single).passed


def test_weekly_schedule_stopped_by_default() -> None:
    schedules = {s.name: s for s in defs.get_repository_def().schedule_defs}
    schedule = schedules["maintenance_schedule"]
    assert schedule.cron_schedule == "0 6 * * 0"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    assert schedule.job_name == "maintenance_job"
    job = defs.resolve_job_def("maintenance_job")
    assert job.asset_layer.executable_asset_keys == {
        AssetKey(name) for name in ("compacted_table", "expired_snapshots", "orphans_removed")
    }
    assert {key.name for key in job.asset_layer.asset_graph.asset_check_keys} >= {
        maintenance.FILES_PER_BUCKET,
        maintenance.SMALL_FILES,
        maintenance.FILES_PRESENT,
    }


def test_maintenance_assets_depend_on_the_table_and_share_the_commit_pool() -> None:
    graph = defs.resolve_asset_graph()
    for name in ("compacted_table", "expired_snapshots", "orphans_removed"):
        node = graph.get(AssetKey(name))
        assert AssetKey("iceberg_table") in node.parent_keys
        assert node.group_name == "maintenance" and node.partitions_def is None
        assert node.pools == {"iceberg_commit"}
    # Daily checks do not include the weekly health checks.
    ingest_job = defs.resolve_job_def("ingest_job")
    assert not {key.name for key in ingest_job.asset_layer.asset_graph.asset_check_keys} & {
        maintenance.FILES_PER_BUCKET,
        maintenance.FILES_PRESENT,
    }


def test_iceberg_table_freshness_policy() -> None:
    node = defs.resolve_asset_graph().get(AssetKey("iceberg_table"))
    policy = node.freshness_policy
    assert policy is not None
    assert dt.timedelta(days=1) < policy.fail_window.to_timedelta() <= dt.timedelta(hours=36)
