"""The record of objects that did not reach the warehouse: rejected, missing or failed.

Every such row keeps its bucket, key and a reason, so a run loses track of nothing:
rejects are bad objects (never retried), missing ones were deleted after the inventory
(404), failed ones hit transient errors past their retries and are retryable.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from earthcatalog_dagster.core.items import Reject

#: How many id/key-name mismatches a summary or the metadata lists as examples.
MISMATCH_EXAMPLES = 5

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


class SourceUnreadable(RuntimeError):
    """Nothing (or too little) of a run's source could be read: the source root is wrong."""


def check_missing(
    *,
    fetched: int,
    missing: int,
    max_fraction: float,
    source_root: str | None,
    example_key: str | None,
) -> None:
    """Fail a run whose objects are all missing, or more than ``max_fraction`` of them.

    A handful of 404s is normal (objects deleted after the inventory); all of them, or
    most, means the run reads from the wrong place, and finishing "successfully" with
    every item missing would hide it.
    """
    attempted = fetched + missing
    if not missing or not attempted:
        return
    share = missing / attempted
    if missing < attempted and share <= max_fraction:
        return
    where = source_root if source_root is not None else "s3://<bucket>/<key> (each item's bucket)"
    raise SourceUnreadable(
        f"{missing:,} of {attempted:,} source objects are missing ({share:.0%}, more than the "
        f"allowed {max_fraction:.0%}): items were read from {where}; for example "
        f"{example_key!r} was not found. Check --source-root / SOURCE_ROOT and the roots, "
        "or raise max_missing_fraction"
    )


def describe_mismatches(mismatches: pa.Table) -> list[str]:
    """``"<key name>.stac.json holds id <id>"`` for each row of an id/key mismatch table."""
    return [
        f"{key_id}.stac.json holds id {item_id}"
        for key_id, item_id in zip(
            mismatches["key_id"].to_pylist(), mismatches["item_id"].to_pylist(), strict=True
        )
    ]
