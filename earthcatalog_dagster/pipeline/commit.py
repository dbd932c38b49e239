"""The one commit path: ``ingest()``, ``bulk_ingest()`` Phase 4 and the Dagster assets
``iceberg_table``/``hash_index`` all publish their warehouse files through here.

:func:`plan_table` resolves the mode and the H3 resolution before any work, from a
read-only copy of the catalog. A commit then takes the catalog session (lock, download of
the remote copy, conditional upload), creates the table on the first commit that has
something to register, drops rows whose id the table already holds (another run, an
overlapping delta, a full build over an existing table), registers what is left in one
snapshot, publishes the catalog, and only then syncs the hash index. The same inputs give
the same catalog whichever entry point ran.

Without the lock (``use_lock=False``) two commits can race: a local catalog detects it
(PyIceberg's SQL catalog refuses a commit whose base metadata moved) and the loser redoes
its overlap check and registration against the new table, so it still drops the rows the
winner registered; a remote catalog refuses the loser's upload (``CatalogConflict``), and
rerunning it converges.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import pyarrow as pa
from pyiceberg.exceptions import CommitFailedException
from pyiceberg.table import Table

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core.geoparquet import KnownFile
from earthcatalog_dagster.core.hash_index import (
    HashIndex,
    load_aliases,
    load_hash_index,
    merge_aliases,
)
from earthcatalog_dagster.core.remote_catalog import CatalogSession, catalog_session, read_copy
from earthcatalog_dagster.options import IngestOptions
from earthcatalog_dagster.pipeline.hash_sync import HashSync, sync_hash_index
from earthcatalog_dagster.pipeline.overlap import drop_registered_rows, registered_ids

log = logging.getLogger(__name__)
COMMIT_ATTEMPTS = 5


class ResolutionError(ValueError):
    """The H3 resolution is missing for a first build, or differs from the table's."""


@dataclass(frozen=True)
class TablePlan:
    """What a run will do to the table: its resolved mode and H3 resolution."""

    mode: str
    resolution: int
    table_exists: bool

    @property
    def skips_indexed(self) -> bool:
        """Delta mode: items whose key the hash index holds are not fetched again."""
        return self.mode == "delta"


@dataclass
class CommitResult:
    """What one commit did to the table and the hash index."""

    snapshot_id: int | None = None
    files_registered: int = 0
    files_already_registered: int = 0
    rows_dropped: int = 0
    files_rewritten: list[str] = field(default_factory=list)
    files_removed: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    table_created: bool = False
    hashes_before: int | None = None
    hashes_after: int | None = None
    hash_files_read: int = 0


def readable_catalog(settings: Settings) -> str:
    """The catalog file to read the table from without the lock: the local catalog, or a
    fresh private copy of the shared remote one."""
    return read_copy(settings.catalog_remote) if settings.catalog_remote else settings.catalog


def current_table(settings: Settings) -> Table | None:
    """The table as it is now (read-only), or ``None`` before the first build."""
    return iceberg.load_table(iceberg.open_catalog(readable_catalog(settings), settings.warehouse))


def ingested_keys(table: Table | None, settings: Settings) -> HashIndex:
    """Every key already ingested, for the delta anti-join: the hash index, the ids of
    files registered since its last sync (a run killed before its sync counts too), and
    the aliases (key names of items whose id differs from them)."""
    aliases = load_aliases(settings.warehouse_hash)
    if table is None:
        return load_hash_index(settings.warehouse_hash).union(aliases)
    return registered_ids(table, settings.warehouse_hash).union(aliases)


def plan_table(table: Table | None, options: IngestOptions) -> TablePlan:
    """Resolve ``mode="auto"`` and the H3 resolution, or fail before any work.

    A first build needs an explicit resolution; a later one reads the table's, and a
    different request is refused: a table never holds two resolutions.
    """
    mode = options.mode if options.mode != "auto" else ("delta" if table is not None else "full")
    requested = options.h3_resolution
    if table is None:
        if requested is None:
            raise ResolutionError(
                f"there is no table {iceberg.TABLE_IDENTIFIER} yet, and a first build needs "
                "its H3 resolution: add --h3-resolution N (h3_resolution=N; the operators "
                "use 1)"
            )
        return TablePlan(mode, requested, table_exists=False)
    existing = iceberg.table_resolution(table)
    if requested is not None and requested != existing:
        raise ResolutionError(
            f"--h3-resolution {requested} differs from the table's resolution {existing}: "
            "a table never holds two resolutions. Leave the flag out, or build a new "
            "catalog at the new resolution (a new CATALOG and WAREHOUSE)"
        )
    return TablePlan(mode, existing, table_exists=True)


def register(
    session: CatalogSession,
    settings: Settings,
    plan: TablePlan,
    files: Sequence[str],
    *,
    footers: Mapping[str, KnownFile] | None = None,
    known_ids: Mapping[str, pa.Array] | None = None,
) -> tuple[Table | None, CommitResult]:
    """Register ``files`` in one snapshot, inside an open catalog session.

    Rows whose id the table holds already are dropped first (files rewritten or removed,
    see :mod:`.overlap`). With nothing to register and no table, nothing is created:
    an empty run fixes no resolution.
    """
    result = CommitResult()
    known = dict(known_ids or {})
    footers = dict(footers or {})
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        sql_catalog = iceberg.open_catalog(session.local, settings.warehouse)
        table = iceberg.load_table(sql_catalog)
        if table is None and not files:
            return None, result
        if table is None:
            table = iceberg.create_table(
                sql_catalog,
                warehouse=settings.warehouse,
                resolution=plan.resolution,
                hash_index_path=settings.warehouse_hash,
            )
            result.table_created = True
        elif iceberg.table_resolution(table) != plan.resolution:
            raise ResolutionError(
                f"the table was built at H3 resolution {iceberg.table_resolution(table)} "
                f"while this run fanned out at {plan.resolution}; rerun it"
            )
        overlap = drop_registered_rows(
            files,
            registered_ids(table, settings.warehouse_hash),
            iceberg.registered_by_runs(table, files),
            known_ids=known,
        )
        result.rows_dropped += overlap.rows_dropped
        result.files_rewritten += [u for u in overlap.rewritten if u not in result.files_rewritten]
        result.files_removed += overlap.removed
        for uri in (*overlap.rewritten, *overlap.removed):  # their ids and footers changed
            known.pop(uri, None)
            footers.pop(uri, None)
        files = overlap.files  # what a retry starts from
        try:
            registration = iceberg.register_files(table, overlap.files, footers=footers)
        except CommitFailedException:
            if attempt == COMMIT_ATTEMPTS:
                raise
            log.warning("the table changed under this commit (no lock?): checking again")
            continue
        result.snapshot_id = registration.snapshot_id
        result.files_registered = registration.added
        result.files_already_registered = registration.skipped
        result.files = overlap.files
        return table, result
    raise AssertionError("unreachable")


def sync_index(
    table: Table,
    settings: Settings,
    *,
    known_ids: Mapping[str, pa.Array] | None = None,
    rebuild: bool = False,
) -> HashSync:
    """Merge the ids of every file registered since the last sync into the hash index."""
    return sync_hash_index(table, settings.warehouse_hash, known_ids=known_ids, rebuild=rebuild)


def session_for(
    settings: Settings, options: IngestOptions, owner: str
) -> AbstractContextManager[CatalogSession]:
    """The catalog session of one commit, with the run's lock and upload switches."""
    return catalog_session(
        settings.catalog,
        settings.catalog_remote,
        use_lock=options.use_lock,
        skip_upload=options.skip_upload,
        owner=owner,
        lock_timeout=options.lock_timeout,
    )


def commit(
    settings: Settings,
    options: IngestOptions,
    plan: TablePlan,
    files: Sequence[str],
    *,
    owner: str,
    footers: Mapping[str, KnownFile] | None = None,
    known_ids: Mapping[str, pa.Array] | None = None,
    aliases: pa.Array | None = None,
) -> CommitResult:
    """Register ``files`` and sync the hash index, holding the catalog once.

    The catalog is published (uploaded) before the index follows it, so the index never
    runs ahead of the table others read. ``aliases`` (key names of items whose id
    differs from them) join the alias file beside the index, so those keys are never
    fetched again.
    """
    with session_for(settings, options, owner) as session:
        table, result = register(
            session, settings, plan, files, footers=footers, known_ids=known_ids
        )
        session.commit()
        if table is not None and options.update_hash_index:
            synced = sync_index(table, settings, known_ids=known_ids, rebuild=result.table_created)
            result.hashes_before, result.hashes_after = synced.before, synced.after
            result.hash_files_read = synced.files_read
        if table is not None and aliases is not None and len(aliases):
            merge_aliases(settings.warehouse_hash, aliases)
    return result
