"""What a table's snapshots reference, and the catalog session maintenance runs in.

Snapshot expiry and orphan cleanup both decide what may be deleted from the same question:
which files does a snapshot *read*? A snapshot reads its manifest list, the manifests the
list names, and the data files those manifests hold as live entries (``ADDED`` or
``EXISTING``; a ``DELETED`` entry records a removal, which no reader of that snapshot
opens). :func:`references` answers it for a set of snapshots, reading each distinct
manifest once (manifests are shared between consecutive snapshots), concurrently.

This reads every manifest of the snapshots asked about: its cost grows with the table,
which is why only the weekly maintenance calls it, never the daily path (invariant 8).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

from pyiceberg.manifest import ManifestFile
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core.remote_catalog import CatalogSession, catalog_session
from earthcatalog_dagster.options import MAINTENANCE_DEFAULTS, MaintenanceOptions

_READ_THREADS = 16


def normalize(uri: str) -> str:
    """A file path as :func:`storage.list_objects` spells it: Iceberg may write local
    paths as ``file:///x`` or ``file:/x`` where a listing gives ``/x``."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if uri.startswith("file:"):
        return uri[len("file:") :]
    return uri


@dataclass
class References:
    """Files some snapshots read, by kind, with the sizes their metadata records."""

    manifest_lists: set[str] = field(default_factory=set)
    manifests: set[str] = field(default_factory=set)
    data_files: set[str] = field(default_factory=set)
    sizes: dict[str, int] = field(default_factory=dict)

    def all(self) -> set[str]:
        return self.manifest_lists | self.manifests | self.data_files


class ManifestReader:
    """Reads manifest lists and manifests of one table, each at most once."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._lists: dict[str, list[ManifestFile]] = {}
        self._entries: dict[str, list[tuple[str, int]]] = {}

    def manifests_of(self, snapshots: Iterable[Snapshot]) -> dict[int, list[ManifestFile]]:
        """Each snapshot's manifests (its manifest list read once)."""
        todo = [s for s in snapshots if s.manifest_list not in self._lists]
        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            for snapshot, listed in zip(
                todo, pool.map(lambda s: s.manifests(self.table.io), todo), strict=True
            ):
                self._lists[snapshot.manifest_list] = listed
        return {s.snapshot_id: self._lists[s.manifest_list] for s in snapshots}

    def live_files(self, manifests: Iterable[ManifestFile]) -> dict[str, list[tuple[str, int]]]:
        """``(path, size)`` of the live data files of each manifest (each read once)."""
        wanted = {m.manifest_path: m for m in manifests}
        todo = [m for path, m in wanted.items() if path not in self._entries]

        def read(manifest: ManifestFile) -> list[tuple[str, int]]:
            return [
                (normalize(e.data_file.file_path), e.data_file.file_size_in_bytes)
                for e in manifest.fetch_manifest_entry(self.table.io, discard_deleted=True)
            ]

        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            for manifest, files in zip(todo, pool.map(read, todo), strict=True):
                self._entries[manifest.manifest_path] = files
        return {path: self._entries[path] for path in wanted}


def references(
    reader: ManifestReader,
    snapshots: Iterable[Snapshot],
    *,
    only_manifests: set[str] | None = None,
) -> References:
    """What ``snapshots`` read. ``only_manifests``: read the data files of these manifests
    only (the others still count as referenced manifests)."""
    snapshots = list(snapshots)
    out = References()
    listed = reader.manifests_of(snapshots)
    chosen: list[ManifestFile] = []
    for snapshot in snapshots:
        out.manifest_lists.add(normalize(snapshot.manifest_list))
        for manifest in listed[snapshot.snapshot_id]:
            path = normalize(manifest.manifest_path)
            out.manifests.add(path)
            out.sizes[path] = manifest.manifest_length
            if only_manifests is None or path in only_manifests:
                chosen.append(manifest)
    for files in reader.live_files(chosen).values():
        for path, size in files:
            out.data_files.add(path)
            out.sizes[path] = size
    return out


def resolve_options(options: MaintenanceOptions | None, values: dict) -> MaintenanceOptions:
    """``options`` (default: :data:`MAINTENANCE_DEFAULTS`) with keyword overrides."""
    return (options or MAINTENANCE_DEFAULTS).with_values(**values)


@contextmanager
def maintenance_session(
    settings: Settings, options: MaintenanceOptions, owner: str
) -> Iterator[CatalogSession]:
    """The catalog session of one maintenance operation: the same lock, download and
    conditional upload as every commit (:func:`.remote_catalog.catalog_session`)."""
    with catalog_session(
        settings.catalog,
        settings.catalog_remote,
        use_lock=options.use_lock,
        skip_upload=options.skip_upload,
        owner=owner,
        lock_timeout=options.lock_timeout,
    ) as session:
        yield session


@contextmanager
def locked_table(
    settings: Settings, options: MaintenanceOptions, owner: str
) -> Iterator[tuple[CatalogSession, Table | None]]:
    """The maintenance session and the table as its catalog holds it (``None`` before the
    first build): what an operation that changes the table works on, under the lock."""
    with maintenance_session(settings, options, owner) as session:
        yield session, iceberg.load_table(iceberg.open_catalog(session.local, settings.warehouse))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
