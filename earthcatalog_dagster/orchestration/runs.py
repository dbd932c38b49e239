"""What the instance knows about other runs: which dates are being ingested right now."""

from __future__ import annotations

import datetime as dt

from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

#: Runs that have not finished (queued ones included: a backfill queues all its dates at once).
UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
_HASH_INDEX = AssetKey("hash_index")
_MAX_DAYS = 3660  # a range tag spanning more than this is not expanded


def dates_being_ingested(instance: DagsterInstance, *, exclude_run_id: str | None) -> set[str]:
    """Partition dates of unfinished runs (other than ``exclude_run_id``) that end in
    ``hash_index``, i.e. will move their delta to ``ingested/``.

    A run's dates come from ``dagster/partition`` or, for asset backfill runs, from
    ``dagster/asset_partition_range_start`` / ``_end``.
    """
    dates: set[str] = set()
    for run in instance.get_runs(filters=RunsFilter(statuses=UNFINISHED)):
        if run.run_id == exclude_run_id:
            continue
        if run.asset_selection is not None and _HASH_INDEX not in run.asset_selection:
            continue
        tags = run.tags
        start = tags.get("dagster/partition") or tags.get("dagster/asset_partition_range_start")
        end = tags.get("dagster/partition") or tags.get("dagster/asset_partition_range_end")
        try:
            first, last = dt.date.fromisoformat(start or ""), dt.date.fromisoformat(end or "")
        except ValueError:
            continue
        days = (last - first).days
        if 0 <= days <= _MAX_DAYS:
            dates.update((first + dt.timedelta(days=i)).isoformat() for i in range(days + 1))
    return dates
