"""The one partitioning of the asset graph: a UTC day = one delta date."""

from __future__ import annotations

import os

from dagster import BackfillPolicy, DailyPartitionsDefinition

#: First delta date offered in the UI; ``EARTHCATALOG_START_DATE`` overrides it.
DEFAULT_START_DATE = "2026-01-01"

daily_partitions = DailyPartitionsDefinition(
    start_date=os.environ.get("EARTHCATALOG_START_DATE", DEFAULT_START_DATE),
    timezone="UTC",
    end_offset=0,
)

#: Every asset of the graph carries the same policy, so a UI backfill runs each date as
#: one run through all six assets.
backfill_policy = BackfillPolicy.multi_run(max_partitions_per_run=1)
