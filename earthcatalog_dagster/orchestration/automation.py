"""Schedules and the pending-delta sensor: the operators' daily loop, run by Dagster.

Every piece is **stopped by default**: turn it on in the UI (*Automation*), or with
``dagster schedule start`` / ``dagster sensor start``, on the one deployment that owns the
catalog (GitHub Actions' ``daily_delta.yml`` / ``ingest.yml`` do the same job; run one or
the other, not both).

- ``daily_delta_schedule`` — 02:00 UTC: job ``daily_delta_job`` materializes
  ``delta_inventory`` for yesterday's partition (``delta/pending/delta_<yesterday>.parquet``
  from the S3 Inventory delivered at 01:00Z).
- ``ingest_schedule`` — 04:00 UTC: job ``ingest_job`` materializes the six assets of group
  ``ingest`` for yesterday's partition (``delta_inventory`` reuses the pending delta).
- ``pending_delta_sensor`` — every ``$EARTHCATALOG_SENSOR_INTERVAL_S`` seconds (default
  300): lists ``DELTA_PREFIX/pending/`` and requests an ``ingest_job`` run for each
  ``delta_D.parquet`` that has no ``ingested/delta_D.done``: once per file (``run_key``
  ``ingest:<D>:<file's last-modified>``) and once per date while it stays pending (the
  cursor). A date that is not a partition yet (today, the future, before
  ``EARTHCATALOG_START_DATE``) is left for a later tick.

Runs of ``ingest_job`` carry the tag ``earthcatalog/lane=daily``; the project's
``dagster.yaml`` limits that tag to one run at a time, so automated ingests queue one
behind the other (the GitHub ``concurrency:`` group does the same in Actions), and a
delta that carries rows of an older one is pruned of whatever that one ingested first.
Partition backfills launched from the UI are not tagged and run side by side.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    PartitionsDefinition,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    build_schedule_from_partitioned_job,
    define_asset_job,
    partition_loading_context,
    sensor,
)

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.orchestration.assets import GROUP
from earthcatalog_dagster.orchestration.partitions import daily_partitions
from earthcatalog_dagster.orchestration.resources import DataPlaneS3, StorageRoots

#: Environment variable with the sensor's minimum interval, in seconds.
SENSOR_INTERVAL_ENV = "EARTHCATALOG_SENSOR_INTERVAL_S"
DEFAULT_SENSOR_INTERVAL_S = 300
#: Run tag of automated ingests; ``dagster.yaml`` allows one such run at a time.
LANE_TAG = "earthcatalog/lane"
LANE = "daily"

daily_delta_job = define_asset_job(
    "daily_delta_job",
    selection=AssetSelection.assets("delta_inventory"),
    description=(
        "Produce `delta/pending/delta_D.parquet` for partition D: the S3 Inventory of D "
        "anti-joined against the hash index, plus un-indexed rows of older pending deltas."
    ),
)

ingest_job = define_asset_job(
    "ingest_job",
    selection=AssetSelection.groups(GROUP),
    run_tags={LANE_TAG: LANE},
    description=(
        "Ingest partition D end to end (all six assets of group `ingest`): chunks, NDJSON, "
        "GeoParquet, Iceberg commit, hash index; the delta then moves to `ingested/`."
    ),
)

daily_delta_schedule = build_schedule_from_partitioned_job(
    daily_delta_job,
    name="daily_delta_schedule",
    hour_of_day=2,
    minute_of_hour=0,
    default_status=DefaultScheduleStatus.STOPPED,
    description="02:00 UTC: the delta of yesterday's partition (the 01:00Z S3 Inventory).",
)

ingest_schedule = build_schedule_from_partitioned_job(
    ingest_job,
    name="ingest_schedule",
    hour_of_day=4,
    minute_of_hour=0,
    default_status=DefaultScheduleStatus.STOPPED,
    description="04:00 UTC: ingest yesterday's partition (after the 02:00 delta).",
)


def sensor_interval_s(env: dict[str, str] | None = None) -> int:
    """The sensor's ``minimum_interval_seconds``: ``$EARTHCATALOG_SENSOR_INTERVAL_S`` or 300."""
    value = (os.environ if env is None else env).get(SENSOR_INTERVAL_ENV)
    if not value:
        return DEFAULT_SENSOR_INTERVAL_S
    try:
        seconds = int(value)
    except ValueError:
        raise ValueError(f"{SENSOR_INTERVAL_ENV}={value!r} is not a whole number") from None
    if seconds < 1:
        raise ValueError(f"{SENSOR_INTERVAL_ENV} must be at least 1, not {seconds}")
    return seconds


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _load_cursor(cursor: str | None) -> dict[str, str]:
    """Cursor: ``{"requested": {date: run_key}}`` — the dates requested and still pending."""
    if not cursor:
        return {}
    try:
        requested = json.loads(cursor).get("requested", {})
    except (ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in requested.items()} if isinstance(requested, dict) else {}


def pending_delta_requests(
    delta_prefix: str,
    partitions_def: PartitionsDefinition,
    cursor: str | None,
    now: dt.datetime,
) -> tuple[list[RunRequest], str, list[str]]:
    """The sensor's decision, without Dagster's context: run requests, new cursor, dates
    left for later (not partitions yet).

    The cursor only ever grows by the dates it requested, and forgets a date once its delta
    is no longer waiting (ingested or gone), so a delta written again later for that date
    is requested again (under a new ``run_key``).
    """
    pending = {
        date: obj
        for obj in storage.list_objects(layout.deltas_pending_dir(delta_prefix), suffix=".parquet")
        if (date := layout.parse_delta_date(obj.uri)) is not None
    }
    ingested = {
        date
        for obj in storage.list_objects(layout.deltas_ingested_dir(delta_prefix), suffix=".done")
        if (date := layout.parse_delta_date(obj.uri)) is not None
    }
    waiting = sorted(date for date in pending if date not in ingested)
    requested = {d: key for d, key in _load_cursor(cursor).items() if d in waiting}
    today = now.astimezone(dt.UTC).date().isoformat()
    requests: list[RunRequest] = []
    later: list[str] = []
    with partition_loading_context(effective_dt=now):
        for date in waiting:
            if date in requested:
                continue
            if date >= today or not partitions_def.has_partition_key(date):
                later.append(date)
                continue
            stamp = pending[date].last_modified.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
            run_key = f"ingest:{date}:{stamp}"
            requests.append(
                RunRequest(
                    run_key=run_key,
                    partition_key=date,
                    tags={LANE_TAG: LANE, "earthcatalog/delta": pending[date].uri},
                )
            )
            requested[date] = run_key
    new_cursor = json.dumps({"requested": dict(sorted(requested.items()))})
    return requests, new_cursor, later


def build_pending_delta_sensor(
    job=ingest_job,
    *,
    name: str = "pending_delta_sensor",
    minimum_interval_seconds: int | None = None,
    partitions_def: PartitionsDefinition = daily_partitions,
    clock: Callable[[], dt.datetime] = _utcnow,
) -> SensorDefinition:
    """The pending-delta sensor (stopped by default); tests pass their own ``clock``."""

    @sensor(
        job=job,
        name=name,
        minimum_interval_seconds=minimum_interval_seconds or sensor_interval_s(),
        default_status=DefaultSensorStatus.STOPPED,
        description=(
            "Lists DELTA_PREFIX/pending/ and requests an ingest_job run for each "
            "delta_D.parquet without ingested/delta_D.done (once per file: run_key and "
            "cursor); dates that are not partitions yet wait for a later tick."
        ),
    )
    def pending_delta_sensor(
        context: SensorEvaluationContext, roots: StorageRoots, s3: DataPlaneS3
    ) -> SensorResult | SkipReason:
        delta_prefix = roots.settings().delta_prefix
        requests, cursor, later = pending_delta_requests(
            delta_prefix, partitions_def, context.cursor, clock()
        )
        if requests:
            return SensorResult(run_requests=requests, cursor=cursor)
        reason = "no pending delta without an ingested marker"
        if later:
            reason = f"pending deltas of dates that are not partitions (yet): {', '.join(later)}"
        return SensorResult(skip_reason=reason, cursor=cursor)

    return pending_delta_sensor


pending_delta_sensor = build_pending_delta_sensor()

automation_jobs = [daily_delta_job, ingest_job]
automation_schedules = [daily_delta_schedule, ingest_schedule]
automation_sensors = [pending_delta_sensor]
