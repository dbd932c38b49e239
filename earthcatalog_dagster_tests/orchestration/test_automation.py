"""Schedules, the pending-delta sensor, delta carry-over through Dagster, overlapping deltas,
and a real ``dagster dev`` running a 3-date partition backfill launched over GraphQL."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    build_schedule_context,
    build_sensor_context,
)
from dagster._core.utils import make_new_run_id

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.definitions import build_definitions
from earthcatalog_dagster.orchestration.assets import ingest_assets
from earthcatalog_dagster.orchestration.automation import (
    LANE,
    LANE_TAG,
    SENSOR_INTERVAL_ENV,
    build_pending_delta_sensor,
    sensor_interval_s,
)
from earthcatalog_dagster.orchestration.resources import DaskCompute, DataPlaneS3, StorageRoots
from earthcatalog_dagster.orchestration.runs import dates_being_ingested
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2, roots_for
from earthcatalog_dagster_tests.helpers import (
    assert_pairs_match,
    catalog_holds_exactly,
    materialize_partition,
    metadata,
    table_pairs,
    write_day,
)

REPO = Path(__file__).resolve().parents[2]
ASSETS = [a.key.path[-1] for a in ingest_assets]


def _defs(home=None):
    if home is None:
        return build_definitions()
    roots, catalog = roots_for(home)
    return build_definitions(
        roots=roots, catalog=catalog, compute=DaskCompute(scheduler="synchronous")
    )


# --- schedules ---------------------------------------------------------------------------------


# Dagster's own partitioned-schedule code calls a deprecated helper.
@pytest.mark.filterwarnings("ignore:Function `JobDefinition.run_request_for_partition`")
@pytest.mark.parametrize(
    ("name", "hour", "assets"),
    [("daily_delta_schedule", 2, ["delta_inventory"]), ("ingest_schedule", 4, ASSETS)],
)
@pytest.mark.parametrize(
    ("tick", "yesterday"),
    [
        ((2026, 4, 29), "2026-04-28"),
        ((2026, 5, 1), "2026-04-30"),  # across a month
        ((2027, 1, 1), "2026-12-31"),  # across a year
    ],
)
def test_schedules_target_yesterday_at_their_hour(name, hour, assets, tick, yesterday) -> None:
    defs = _defs()
    schedule = defs.resolve_schedule_def(name)
    assert schedule.cron_schedule == f"0 {hour} * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == DefaultScheduleStatus.STOPPED
    job = defs.resolve_job_def(schedule.job_name)
    assert sorted(job.asset_layer.executable_asset_keys) == sorted(
        next(a.key for a in ingest_assets if a.key.path[-1] == name) for name in assets
    )
    when = dt.datetime(*tick, hour, 0, tzinfo=dt.UTC)
    with build_schedule_context(scheduled_execution_time=when) as context:
        data = schedule.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == [yesterday]


def test_ingest_runs_are_serialized_by_the_instance_config(tmp_path) -> None:
    job = _defs().resolve_job_def("ingest_job")
    assert job.run_tags[LANE_TAG] == LANE
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": LANE_TAG, "value": LANE, "limit": 1} in limits
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


# --- the pending-delta sensor ------------------------------------------------------------------


def _delta(home, date: str, ingested: bool = False) -> None:
    storage.write_bytes(layout.delta_pending(home.delta_prefix, date), b"PAR1 stand-in")
    if ingested:
        storage.write_bytes(layout.delta_ingested(home.delta_prefix, date), b"PAR1 stand-in")


def _tick(home, sensor, cursor: str | None):
    roots = StorageRoots(home=home.home, delta_prefix=home.delta_prefix)
    resources = {"roots": roots, "s3": DataPlaneS3()}
    with build_sensor_context(cursor=cursor, resources=resources) as ctx:
        result = sensor(ctx)
    return [r.partition_key for r in result.run_requests], result


def test_sensor_requests_each_uningested_delta_once(home) -> None:
    now = {"t": dt.datetime(2026, 4, 29, 10, 30, tzinfo=dt.UTC)}
    sensor = build_pending_delta_sensor(clock=lambda: now["t"])
    assert sensor.default_status == DefaultSensorStatus.STOPPED
    _delta(home, "2025-12-31")  # before the first partition: never
    _delta(home, "2026-04-25", ingested=True)  # done (a crash left the pending copy)
    for date in ("2026-04-26", "2026-04-27", "2026-04-28"):
        _delta(home, date)
    _delta(home, "2026-04-29")  # today: not a partition yet
    _delta(home, "2026-04-30")  # the future
    storage.write_bytes(layout.join(home.delta_prefix, "pending", "notes.txt"), b"")

    dates, first = _tick(home, sensor, None)
    assert dates == ["2026-04-26", "2026-04-27", "2026-04-28"]
    keys = [r.run_key for r in first.run_requests]
    assert len(set(keys)) == 3 and all(k.startswith("ingest:2026-04-2") for k in keys)
    assert all(r.tags[LANE_TAG] == LANE for r in first.run_requests)
    assert set(json.loads(first.cursor)["requested"]) == set(dates)

    # Same state, the returned cursor: nothing new, and the cursor stays.
    dates, second = _tick(home, sensor, first.cursor)
    assert dates == [] and second.cursor == first.cursor
    assert "2026-04-29" in second.skip_reason.skip_message

    # The next day: 04-26 was ingested, 04-29 became a partition; today (04-30) still waits.
    storage.move(
        layout.delta_pending(home.delta_prefix, "2026-04-26"),
        layout.delta_ingested(home.delta_prefix, "2026-04-26"),
    )
    now["t"] = dt.datetime(2026, 4, 30, 0, 5, tzinfo=dt.UTC)
    dates, third = _tick(home, sensor, second.cursor)
    assert dates == ["2026-04-29"]
    assert sorted(json.loads(third.cursor)["requested"]) == [
        "2026-04-27",
        "2026-04-28",
        "2026-04-29",
    ]
    assert _tick(home, sensor, third.cursor)[0] == []

    # A lost cursor re-requests under the same run keys: Dagster drops those as duplicates.
    dates, fresh = _tick(home, sensor, None)
    assert dates == ["2026-04-27", "2026-04-28", "2026-04-29"]
    assert {r.run_key for r in fresh.run_requests} <= set(keys) | {third.run_requests[0].run_key}


def test_sensor_on_the_real_clock_never_requests_today(home) -> None:
    today = dt.datetime.now(dt.UTC).date()
    for days in (-2, -1, 0, 1):
        _delta(home, (today + dt.timedelta(days=days)).isoformat())
    dates, _ = _tick(home, build_pending_delta_sensor(), None)
    expected = [(today + dt.timedelta(days=d)).isoformat() for d in (-2, -1)]
    assert dates == [d for d in expected if d >= "2026-01-01"]


def test_sensor_interval_from_the_environment(monkeypatch) -> None:
    assert sensor_interval_s({}) == 300
    assert sensor_interval_s({SENSOR_INTERVAL_ENV: "45"}) == 45
    with pytest.raises(ValueError, match=SENSOR_INTERVAL_ENV):
        sensor_interval_s({SENSOR_INTERVAL_ENV: "soon"})
    monkeypatch.setenv(SENSOR_INTERVAL_ENV, "30")
    assert build_pending_delta_sensor().minimum_interval_seconds == 30


# --- carry-over and overlapping deltas through Dagster -----------------------------------------


def test_dates_being_ingested_are_those_of_unfinished_ingest_runs() -> None:
    def add(instance, status, tags, selection=None) -> str:
        run = DagsterRun(
            job_name="__ASSET_JOB",
            run_id=make_new_run_id(),
            status=status,
            tags=tags,
            asset_selection=selection,
        )
        instance.add_run(run)
        return run.run_id

    with DagsterInstance.ephemeral() as instance:
        me = add(instance, DagsterRunStatus.STARTED, {"dagster/partition": "2026-04-20"})
        add(instance, DagsterRunStatus.NOT_STARTED, {"dagster/partition": "2026-04-21"})
        add(
            instance,
            DagsterRunStatus.STARTED,
            {
                "dagster/asset_partition_range_start": "2026-04-22",
                "dagster/asset_partition_range_end": "2026-04-23",
            },
        )
        add(instance, DagsterRunStatus.SUCCESS, {"dagster/partition": "2026-04-24"})
        add(instance, DagsterRunStatus.FAILURE, {"dagster/partition": "2026-04-25"})
        delta_only = {AssetKey("delta_inventory")}
        add(instance, DagsterRunStatus.STARTED, {"dagster/partition": "2026-04-26"}, delta_only)
        add(instance, DagsterRunStatus.STARTED, {})
        assert dates_being_ingested(instance, exclude_run_id=me) == {
            "2026-04-21",
            "2026-04-22",
            "2026-04-23",
        }


def _materialize(home, date, selection=None, **kwargs):
    result = materialize_partition(home, date, selection=selection, **kwargs)
    assert result.success
    return result


@pytest.mark.slow
def test_delta_inventory_carries_a_day_that_was_never_ingested(home) -> None:
    day1, day2 = write_day(home, DAY_1, 40, seed=11)[0], write_day(home, DAY_2, 40, seed=12)[0]
    delta_only = ["delta_inventory"]

    first = metadata(_materialize(home, DAY_1, selection=delta_only), "delta_inventory")
    assert first["carried from older pending deltas"] == 0
    # Day 1 is never ingested; day 2's delta carries its items.
    second = metadata(_materialize(home, DAY_2, selection=delta_only), "delta_inventory")
    day1_keys = set(day1.item_keys)
    assert second["carried from older pending deltas"] == len(day1_keys)
    delta2 = storage.read_parquet(layout.delta_pending(home.delta_prefix, DAY_2))
    assert set(delta2["key"].to_pylist()) == day1_keys | set(day2.item_keys)
    assert delta2.num_rows == len(day1_keys) + len(day2.item_keys)

    # Ingesting day 2 alone brings day 1's items in; day 1's run later finds nothing new.
    _materialize(home, DAY_2)
    catalog_holds_exactly(home, day1, day2)
    late = _materialize(home, DAY_1)
    reused = metadata(late, "delta_inventory")
    assert reused["reused"] is True
    assert reused["rows out"] == len(day1_keys) - len(day1.good_ids)  # only bad/missing ones
    catalog_holds_exactly(home, day1, day2)
    assert not storage.exists(layout.delta_pending(home.delta_prefix, DAY_1))


@pytest.mark.slow
def test_overlapping_deltas_staged_side_by_side_register_each_item_once(home) -> None:
    """Both runs stage the shared items before either commits (as in a UI backfill);
    the second commit drops them."""
    day1, day2 = write_day(home, DAY_1, 40, seed=21)[0], write_day(home, DAY_2, 40, seed=22)[0]
    staging = ["delta_inventory", "staged_chunks", "ndjson_items", "warehouse_parquets"]
    commit = ["iceberg_table", "hash_index"]
    _materialize(home, DAY_1, selection=staging)
    _materialize(home, DAY_2, selection=staging)  # carries all of day 1's rows

    second_first = metadata(_materialize(home, DAY_2, selection=commit), "iceberg_table")
    assert second_first["rows dropped (id registered by another run)"] == 0
    assert_pairs_match(table_pairs(home), day1, day2)
    late = _materialize(home, DAY_1, selection=commit)
    registered = metadata(late, "iceberg_table")
    assert registered["files registered"] == 0
    assert registered["rows dropped (id registered by another run)"] > 0
    assert registered["files removed (all rows registered elsewhere)"] > 0
    catalog_holds_exactly(home, day1, day2)
    assert all(c.passed for c in late.get_asset_check_evaluations())
    for date in (DAY_1, DAY_2):
        assert storage.exists(layout.delta_ingested(home.delta_prefix, date))


# --- end to end: dagster dev, a 3-date partition backfill over GraphQL -------------------------

E2E_TIMEOUT_S = 240
POOL_STEPS = ("iceberg_table", "hash_index")  # pool iceberg_commit, limit 1

LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions error { message } }
    ... on Error { message }
  }
}
"""
ASSET_NODES = "{ assetNodes { assetKey { path } } }"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(url: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert "errors" not in answer, answer["errors"]
    return answer["data"]


def _wait_for_assets(url: str, server: subprocess.Popen, log: Path, deadline: float) -> None:
    while time.monotonic() < deadline:
        assert server.poll() is None, f"dagster dev exited:\n{log.read_text()[-3000:]}"
        try:
            nodes = _graphql(url, ASSET_NODES)["assetNodes"]
            if {n["assetKey"]["path"][-1] for n in nodes} >= set(ASSETS):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, AssertionError):
            pass
        time.sleep(1)
    pytest.fail(f"dagster dev did not serve the code location in time:\n{log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM to dagster dev's process group (webserver, daemon, code server); then KILL."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=15)


def _windows(instance: DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """Start and end time of each step of a run, from the instance's event log."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    events = {DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS}
    for record in instance.get_records_for_run(run_id, of_type=events, limit=1000).records:
        entry = record.event_log_entry
        kind = entry.dagster_event.event_type
        (starts if kind == DagsterEventType.STEP_START else ends)[entry.step_key] = entry.timestamp
    return {step: (starts[step], ends[step]) for step in starts if step in ends}


def _launched_to_done(instance: DagsterInstance, run_id: str) -> tuple[float, float]:
    """When a run was launched (its process start-up included) and when it succeeded. The
    steps of a 60-item day take ~2 s, so their spans tell more about speed than overlap."""
    events = {DagsterEventType.RUN_STARTING, DagsterEventType.RUN_SUCCESS}
    records = instance.get_records_for_run(run_id, of_type=events).records
    at = {r.event_log_entry.dagster_event.event_type: r.event_log_entry.timestamp for r in records}
    return at[DagsterEventType.RUN_STARTING], at[DagsterEventType.RUN_SUCCESS]


@pytest.mark.slow
def test_dagster_dev_backfills_three_dates_side_by_side(home, tmp_path) -> None:
    dates = [DAY_1, DAY_2, DAY_2 + dt.timedelta(days=1)]
    days = [write_day(home, date, 60, seed=30 + i)[0] for i, date in enumerate(dates)]
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/graphql"
    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "EARTHCATALOG_HOME": home.home,
        "EARTHCATALOG_SCHEDULER": "synchronous",
    }
    log = tmp_path / "dagster_dev.log"
    deadline = time.monotonic() + E2E_TIMEOUT_S
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "dagster", "dev"),
                *("-m", "earthcatalog_dagster.definitions", "-h", "127.0.0.1", "-p", str(port)),
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_assets(url, server, log, deadline)
        params = {
            "assetSelection": [{"path": [name]} for name in ASSETS],
            "partitionNames": [d.isoformat() for d in dates],
            "runConfigData": {"ops": {"staged_chunks": {"config": {"chunk_size": 25}}}},
            "title": "e2e: three dates",
        }
        launched = _graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill_id = launched["backfillId"]
        status = None
        while time.monotonic() < deadline:
            state = _graphql(url, BACKFILL_STATUS, {"id": backfill_id})
            backfill = state["partitionBackfillOrError"]
            assert backfill["__typename"] == "PartitionBackfill", backfill
            status = backfill["status"]
            if status not in ("REQUESTED", "CANCELING", "FAILING"):
                break
            time.sleep(2)
        assert status == "COMPLETED_SUCCESS", (status, log.read_text()[-3000:])
    finally:
        _stop(server)
    assert server.returncode is not None

    # Every good item of the three days, exactly once; files all registered; deltas done.
    catalog_holds_exactly(home, *days)
    for date in dates:
        assert storage.exists(layout.delta_ingested(home.delta_prefix, date))
        assert not storage.exists(layout.delta_pending(home.delta_prefix, date))

    # One run per date, all six assets each; the catalog commits never overlapped.
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = [r for r in instance.get_runs() if r.tags.get("dagster/backfill") == backfill_id]
        # Asset backfills tag each run with its partition range (here one date per run).
        ranges = sorted(
            (
                r.tags["dagster/asset_partition_range_start"],
                r.tags["dagster/asset_partition_range_end"],
            )
            for r in runs
        )
        assert ranges == [(d.isoformat(), d.isoformat()) for d in dates]
        windows = {r.run_id: _windows(instance, r.run_id) for r in runs}
        in_progress = sorted(_launched_to_done(instance, r.run_id) for r in runs)
    for steps in windows.values():
        assert set(steps) >= set(ASSETS)
    commits = sorted(steps[name] for steps in windows.values() for name in POOL_STEPS)
    for (_, end), (start, _) in itertools.pairwise(commits):
        assert end <= start, "two catalog commits (pool iceberg_commit) overlapped"
    table = iceberg.load_table(iceberg.open_catalog(home.catalog, home.warehouse))
    assert len(table.snapshots()) == 3  # one commit per date
    # The dates ran side by side: some run was launched before another had finished (run
    # by run, each would wait for the one before).
    assert any(b[0] < a[1] for a, b in itertools.pairwise(in_progress)), in_progress
