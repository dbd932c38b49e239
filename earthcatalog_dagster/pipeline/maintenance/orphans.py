"""Orphan cleanup: delete warehouse files that no snapshot of the table reads.

Files become orphans when a run dies between writing and registering (its warehouse
files, a metadata commit that lost), when an expiry is killed before its deletes, or when
old ``metadata.json`` versions were left by a table made before the metadata retention
properties. :func:`remove_orphans`, under the catalog lock, lists the warehouse once and
deletes each file that is

- a warehouse data file (``grid_partition=<c>/year=<y>/part_*.parquet``) or a file under
  the table's ``metadata/`` folder — nothing else under the warehouse is touched;
- read by no snapshot of the current metadata (its manifest lists, manifests, live data
  files; :mod:`.references`), and for a ``metadata.json``, neither the current version nor
  one of the metadata log;
- older than ``orphan_older_than_days``: a run in progress writes its files before it
  registers them, so they are younger than the grace period.

``dry_run`` lists the orphans and deletes nothing. Without a table, or with a table whose
location is not this warehouse (a wrong ``--catalog``/``--warehouse`` pair), it refuses:
every file would look unreferenced.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from pyiceberg.table import Table

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.options import MaintenanceOptions
from earthcatalog_dagster.pipeline.commit import current_table
from earthcatalog_dagster.pipeline.maintenance.expire import _human, delete_files
from earthcatalog_dagster.pipeline.maintenance.references import (
    ManifestReader,
    locked_table,
    normalize,
    references,
    resolve_options,
    utcnow,
)

log = logging.getLogger(__name__)
OWNER = "earthcatalog-dagster remove-orphans"


class WrongWarehouse(ValueError):
    """The table's location is not the warehouse being cleaned: nothing is deleted."""


@dataclass
class OrphanResult:
    """What one orphan cleanup deleted (or, with ``dry_run``, would delete)."""

    data_files_deleted: int = 0
    metadata_files_deleted: int = 0
    bytes_freed: int = 0
    too_young: int = 0
    files_listed: int = 0
    dry_run: bool = False
    orphans: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Counts and the orphans' paths."""
        return asdict(self)

    def render(self) -> str:
        """A short report; a dry run lists every orphan."""
        verb = "would delete" if self.dry_run else "deleted"
        lines = [
            f"{verb} {self.data_files_deleted} data file(s) and {self.metadata_files_deleted} "
            f"metadata file(s) no snapshot reads: {_human(self.bytes_freed)} "
            f"({self.files_listed} listed; {self.too_young} unreferenced but younger than "
            "the grace period, left alone)"
        ]
        if self.dry_run:
            lines += [f"  {uri}" for uri in self.orphans]
        return "\n".join(lines)


def referenced_files(table: Table) -> set[str]:
    """Every file the current metadata names: what its snapshots read, the current
    ``metadata.json`` and those of its metadata log."""
    reader = ManifestReader(table)
    out = references(reader, table.snapshots()).all()
    out.add(normalize(table.metadata_location))
    out.update(normalize(entry.metadata_file) for entry in table.metadata.metadata_log)
    return out


def find_orphans(
    table: Table, warehouse: str, *, older_than_days: float, now: dt.datetime
) -> OrphanResult:
    """The orphans under ``warehouse`` (nothing deleted)."""
    location = normalize(table.location()).rstrip("/")
    if location != normalize(warehouse).rstrip("/"):
        raise WrongWarehouse(
            f"the table's location is {table.location()}, not the warehouse {warehouse}: "
            "refusing to remove orphans (check --catalog and --warehouse)"
        )
    referenced = referenced_files(table)
    metadata_dir = layout.table_metadata_dir(warehouse) + "/"
    cutoff = now - dt.timedelta(days=older_than_days)
    result = OrphanResult()
    listing = storage.list_objects(warehouse)
    result.files_listed = len(listing)
    for obj in listing:
        is_metadata = obj.uri.startswith(metadata_dir)
        if not is_metadata and layout.parse_warehouse_file(obj.uri) is None:
            continue  # not the table's: left alone
        if obj.uri in referenced:
            continue
        if obj.last_modified > cutoff:
            result.too_young += 1
            continue
        result.orphans.append(obj.uri)
        result.bytes_freed += obj.size
        if is_metadata:
            result.metadata_files_deleted += 1
        else:
            result.data_files_deleted += 1
    return result


def remove_orphans(
    options: MaintenanceOptions | None = None,
    *,
    settings: Settings | None = None,
    now: dt.datetime | None = None,
    **values: Any,
) -> OrphanResult:
    """Delete the warehouse files no snapshot reads, older than ``orphan_older_than_days``.

    Args:
        options: the maintenance settings (default :data:`MAINTENANCE_DEFAULTS`); any field
            may be given as a keyword (``orphan_older_than_days=3``, ``dry_run=True``, ...).
        settings: the roots (default: the environment, then the embedded default).
        now: the clock (tests).

    Runs under the catalog lock, so no commit lands between the listing and the deletes;
    with ``dry_run`` it takes no lock and reads the published catalog. Without a table it
    does nothing. A first run also sets the table's metadata retention properties.
    """
    options = resolve_options(options, values)
    settings = settings or Settings.from_env()
    now = now or utcnow()
    older = options.orphan_older_than_days
    if options.dry_run:
        table = current_table(settings)
        if table is None:
            return OrphanResult(dry_run=True)
        result = find_orphans(table, settings.warehouse, older_than_days=older, now=now)
        result.dry_run = True
        return result
    with locked_table(settings, options, OWNER) as (session, table):
        if table is None:
            log.warning("no table in %s: no orphan removed", settings.catalog)
            return OrphanResult()
        if iceberg.ensure_metadata_retention(table):
            session.commit()  # the new metadata.json is published before anything goes
        result = find_orphans(table, settings.warehouse, older_than_days=older, now=now)
        delete_files(result.orphans)
        log.info("removed %d orphan file(s)", len(result.orphans))
    return result
