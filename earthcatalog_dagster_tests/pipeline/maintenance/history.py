"""A table with a history, for the expiry and orphan tests, and an oracle of what each
snapshot reads.

:func:`build_history` ingests a few small days (one APPEND snapshot each), rewrites one
(cell, year) into a single file in an OVERWRITE snapshot (what compaction does, done here
with plain PyIceberg so these tests do not depend on the compaction code) and ingests one
more day. :func:`snapshot_reads` is the oracle: per snapshot, the files it reads, taken
from PyIceberg's ``inspect`` tables (``files(snapshot_id=)``, ``all_manifests()``) and the
snapshot's manifest list — not from the code under test.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.remote_catalog import catalog_session
from earthcatalog_dagster.layout import NO_CELL
from earthcatalog_dagster.pipeline.ingest import ingest
from earthcatalog_dagster_tests.helpers import load_table, write_day

FIRST_DAY = dt.date(2026, 4, 20)


@dataclass
class History:
    """The snapshot ids in commit order; ``rewritten``: the files the OVERWRITE removed."""

    snapshots: list[int]
    rewritten: list[str]
    merged: str
    rows: dict[int, int]


def _plain(uri: str) -> str:
    return uri.removeprefix("file://").removeprefix("file:")


def rewrite_bucket(settings: Settings) -> tuple[list[str], str]:
    """Merge the files of the (cell, year) with the most files into one, committed as one
    OVERWRITE snapshot under the catalog session (old files stay on storage)."""
    with catalog_session(settings.catalog, settings.catalog_remote) as session:
        table = iceberg.load_table(iceberg.open_catalog(session.local, settings.warehouse))
        tasks = list(table.scan().plan_files())
        by_bucket: dict[tuple[str, str], list[Any]] = {}
        for task in tasks:
            bucket = layout.parse_warehouse_file(_plain(task.file.file_path))
            by_bucket.setdefault(bucket, []).append(task.file)
        (cell, year), old = max(
            by_bucket.items(), key=lambda kv: (len(kv[1]) >= 2, kv[0][0] != NO_CELL, kv[0])
        )
        assert len(old) >= 2, "the history needs a bucket with two files"
        rows = pa.concat_tables(
            storage.read_parquet(_plain(f.file_path))
            for f in sorted(old, key=lambda f: f.file_path)
        )
        merged = layout.warehouse_file(settings.warehouse, cell, year, "rewritten", 0)
        storage.write_parquet(rows, merged)
        (new,) = iceberg._data_files(table, [merged], {})
        with table.transaction() as tx, tx.update_snapshot().overwrite() as overwrite:
            for data_file in old:
                overwrite.delete_data_file(data_file)
            overwrite.append_data_file(new)
    return sorted(_plain(f.file_path) for f in old), merged


def build_history(settings: Settings, *, days: int = 3, n: int = 12) -> History:
    """``days`` APPENDs, one OVERWRITE (a rewritten bucket), one more APPEND."""
    for i in range(days):
        _, manifest = write_day(settings, FIRST_DAY + dt.timedelta(days=i), n, seed=10 + i)
        ingest(manifest, settings=settings, h3_resolution=1, workers=1)
    rewritten, merged = rewrite_bucket(settings)
    _, manifest = write_day(settings, FIRST_DAY + dt.timedelta(days=days), n, seed=10 + days)
    ingest(manifest, settings=settings, h3_resolution=1, workers=1)
    table = load_table(settings)
    snapshots = [s.snapshot_id for s in sorted(table.snapshots(), key=lambda s: s.timestamp_ms)]
    rows = {sid: table.scan(snapshot_id=sid).to_arrow().num_rows for sid in snapshots}
    return History(snapshots, rewritten, merged, rows)


def snapshot_reads(table: Any) -> dict[int, set[str]]:
    """Oracle: per snapshot id, every file it reads (manifest list, manifests, data files)."""
    manifests = table.inspect.all_manifests()
    out: dict[int, set[str]] = {}
    for snapshot in table.snapshots():
        sid = snapshot.snapshot_id
        files = table.inspect.files(snapshot_id=sid).column("file_path").to_pylist()
        paths = [
            p
            for p, ref in zip(
                manifests.column("path").to_pylist(),
                manifests.column("reference_snapshot_id").to_pylist(),
                strict=True,
            )
            if ref == sid
        ]
        out[sid] = {_plain(p) for p in [snapshot.manifest_list, *paths, *files]}
    return out


def unreferenced_after(before: dict[int, set[str]], kept: set[int]) -> set[str]:
    """What the expired snapshots read and no kept one does: exactly what expiry deletes."""
    expired = set().union(*(files for sid, files in before.items() if sid not in kept))
    retained = set().union(*(files for sid, files in before.items() if sid in kept))
    return expired - retained


def all_exist(paths: set[str]) -> list[str]:
    """The paths of ``paths`` that are missing on storage."""
    return sorted(p for p in paths if not storage.exists(p))


def scan_rows(table: Any, snapshot_id: int) -> int:
    """Rows of one snapshot, read through every data file it names."""
    return table.scan(snapshot_id=snapshot_id).to_arrow().num_rows
