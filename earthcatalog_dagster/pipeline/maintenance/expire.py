"""Snapshot expiry, then deletion of the files only the expired snapshots read.

PyIceberg 0.12's ``table.maintenance.expire_snapshots()`` removes snapshots from the table
metadata and deletes no file. :func:`expire_snapshots` does the rest, under the catalog
lock (the catalog session every commit uses):

1. choose the snapshots to expire: older than ``expire_older_than_days``, except the newest
   ``retain_last``, the current snapshot and every branch or tag head;
2. compute what they read and what the retained snapshots read (:mod:`.references`): the
   candidates are the manifest lists, manifests and data files read by an expired snapshot
   and by no retained one;
3. commit the expiry (one metadata commit) and **publish the catalog** (upload) — so the
   shared catalog never points at a file about to be deleted;
4. delete the candidates.

A kill between 3 and 4 leaves unreferenced files behind and nothing else: the published
table is already correct, and :func:`~.orphans.remove_orphans` deletes them later (they
are older than its grace period by then). Nothing a retained snapshot reads is deleted, so
a reader holding any retained snapshot keeps working (invariant 9).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.options import MaintenanceOptions
from earthcatalog_dagster.pipeline.commit import current_table
from earthcatalog_dagster.pipeline.maintenance.references import (
    ManifestReader,
    locked_table,
    references,
    resolve_options,
    utcnow,
)

log = logging.getLogger(__name__)
OWNER = "earthcatalog-dagster expire-snapshots"


@dataclass
class ExpiryResult:
    """What one expiry did (or, with ``dry_run``, would do)."""

    snapshots_expired: int = 0
    snapshots_retained: int = 0
    data_files_deleted: int = 0
    manifests_deleted: int = 0
    manifest_lists_deleted: int = 0
    bytes_freed: int = 0
    dry_run: bool = False
    expired_snapshot_ids: list[int] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Counts for JSON and Dagster metadata (the paths as a count, not a list)."""
        out = asdict(self)
        out["deleted"] = len(self.deleted)
        return out

    def render(self) -> str:
        """A short report a person reads at a glance."""
        verb = "would expire" if self.dry_run else "expired"
        gone = "would delete" if self.dry_run else "deleted"
        return "\n".join(
            [
                f"{verb} {self.snapshots_expired} snapshot(s); {self.snapshots_retained} retained",
                f"{gone} {self.data_files_deleted} data file(s), {self.manifests_deleted} "
                f"manifest(s), {self.manifest_lists_deleted} manifest list(s): "
                f"{_human(self.bytes_freed)}",
            ]
        )


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def snapshots_to_expire(
    table: Table, *, older_than_days: float, retain_last: int, now: dt.datetime
) -> list[Snapshot]:
    """The snapshots an expiry removes: older than the cutoff, not among the newest
    ``retain_last``, not the current snapshot nor any branch or tag head."""
    cutoff_ms = int((now - dt.timedelta(days=older_than_days)).timestamp() * 1000)
    newest_first = sorted(table.snapshots(), key=lambda s: s.timestamp_ms, reverse=True)
    protected = {ref.snapshot_id for ref in table.metadata.refs.values()}
    current = table.current_snapshot()
    if current is not None:
        protected.add(current.snapshot_id)
    keep = {s.snapshot_id for s in newest_first[:retain_last]} | protected
    return [s for s in newest_first if s.snapshot_id not in keep and s.timestamp_ms < cutoff_ms]


@dataclass(frozen=True)
class ExpiryPlan:
    """The snapshots to expire and the files only they read, by kind, with sizes."""

    expired: list[Snapshot]
    retained: list[Snapshot]
    data_files: list[str]
    manifests: list[str]
    manifest_lists: list[str]
    sizes: dict[str, int]


def plan_expiry(table: Table, options: MaintenanceOptions, now: dt.datetime) -> ExpiryPlan:
    """What to expire and delete; reads the manifests of every snapshot once."""
    expired = snapshots_to_expire(
        table,
        older_than_days=options.expire_older_than_days,
        retain_last=options.retain_last,
        now=now,
    )
    gone = {s.snapshot_id for s in expired}
    retained = [s for s in table.snapshots() if s.snapshot_id not in gone]
    if not expired:
        return ExpiryPlan([], retained, [], [], [], {})
    reader = ManifestReader(table)
    kept = references(reader, retained)
    # Data files can only be unreferenced if some manifest is: read those manifests' entries.
    listed = references(reader, expired, only_manifests=set())
    only_expired = listed.manifests - kept.manifests
    dropped = references(reader, expired, only_manifests=only_expired)
    return ExpiryPlan(
        expired=expired,
        retained=retained,
        data_files=sorted(dropped.data_files - kept.data_files),
        manifests=sorted(only_expired),
        manifest_lists=sorted(dropped.manifest_lists - kept.manifest_lists),
        sizes={**dropped.sizes},
    )


def _list_sizes(paths: list[str]) -> dict[str, int]:
    """Sizes of manifest lists (their metadata records none): one listing of their folder."""
    folders = {p.rsplit("/", 1)[0] for p in paths}
    return {
        o.uri: o.size for folder in folders for o in storage.list_objects(folder) if o.uri in paths
    }


def delete_files(uris: list[str]) -> None:
    """Delete ``uris`` (missing ones are fine: a rerun after a kill), in bulk."""
    storage.delete_many(uris)


def expire_snapshots(
    options: MaintenanceOptions | None = None,
    *,
    settings: Settings | None = None,
    now: dt.datetime | None = None,
    **values: Any,
) -> ExpiryResult:
    """Expire old snapshots and delete the files that only they read.

    Args:
        options: the maintenance settings (default :data:`MAINTENANCE_DEFAULTS`); any field
            may be given as a keyword too (``expire_older_than_days=7``, ``retain_last=10``,
            ``dry_run=True``, ``use_lock=False``, ...).
        settings: the roots (default: the environment, then the embedded default).
        now: the clock (tests).

    With ``dry_run`` nothing changes (no lock taken: it reads the published catalog).
    Without a table it does nothing. A first run also sets the table's metadata retention
    properties (:data:`~earthcatalog_dagster.core.catalog.METADATA_RETENTION`).
    """
    options = resolve_options(options, values)
    settings = settings or Settings.from_env()
    now = now or utcnow()
    if options.dry_run:
        table = current_table(settings)
        if table is None:
            return ExpiryResult(dry_run=True)
        return _result(plan_expiry(table, options, now), dry_run=True)
    with locked_table(settings, options, OWNER) as (session, table):
        if table is None:
            return ExpiryResult()
        iceberg.ensure_metadata_retention(table)
        plan = plan_expiry(table, options, now)
        if plan.expired:
            table.maintenance.expire_snapshots().by_ids(
                [s.snapshot_id for s in plan.expired]
            ).commit()
            log.info("expired %d snapshot(s)", len(plan.expired))
        session.commit()  # published before any file goes: no reader meets a missing file
        result = _result(plan, dry_run=False)
        # Data files first, then the metadata that names them: a kill midway leaves only
        # unreferenced files, which remove_orphans deletes.
        delete_files(plan.data_files)
        delete_files(plan.manifests)
        delete_files(plan.manifest_lists)
    return result


def _result(plan: ExpiryPlan, *, dry_run: bool) -> ExpiryResult:
    sizes = {**plan.sizes, **_list_sizes(plan.manifest_lists)}
    deleted = [*plan.data_files, *plan.manifests, *plan.manifest_lists]
    return ExpiryResult(
        snapshots_expired=len(plan.expired),
        snapshots_retained=len(plan.retained),
        data_files_deleted=len(plan.data_files),
        manifests_deleted=len(plan.manifests),
        manifest_lists_deleted=len(plan.manifest_lists),
        bytes_freed=sum(sizes.get(uri, 0) for uri in deleted),
        dry_run=dry_run,
        expired_snapshot_ids=sorted(s.snapshot_id for s in plan.expired),
        deleted=deleted,
    )
