"""The record of objects that did not reach the warehouse: rejected, missing or failed.

Every such row keeps its bucket, key and a reason, so a run loses track of nothing:
rejects are bad objects (never retried), missing ones were deleted after the inventory
(404), failed ones hit transient errors past their retries and are retryable.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from earthcatalog_dagster.core.items import Reject

OUTCOME_SCHEMA = pa.schema(
    [("key", pa.string()), ("outcome", pa.string()), ("reason", pa.string())]
)


def outcome_table(rejects: Sequence[Reject], missing: pa.Table, failed: pa.Table) -> pa.Table:
    """One row per object that was rejected, missing or failed, with why."""
    keys = [r.key for r in rejects] + missing["key"].to_pylist() + failed["key"].to_pylist()
    outcome = (
        ["rejected"] * len(rejects) + ["missing"] * missing.num_rows + ["failed"] * failed.num_rows
    )
    reasons = (
        [r.reason for r in rejects]
        + ["object not found (404): deleted after the inventory"] * missing.num_rows
        + failed["error"].to_pylist()
    )
    return pa.table({"key": keys, "outcome": outcome, "reason": reasons}, schema=OUTCOME_SCHEMA)
