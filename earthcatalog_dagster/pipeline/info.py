"""The catalog summary the operators check after every ingest (``info``)."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyiceberg.table import Table

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import load_hash_index

#: How :attr:`CatalogInfo.unique_items` was counted.
FROM_HASH_INDEX = "from hash index"
FROM_TABLE = "distinct ids counted in the table; no hash index"


@dataclass(frozen=True)
class CatalogInfo:
    """Counts read from the table's metadata and the hash index.

    Without a hash index, ``unique_items`` is the number of distinct ids in the table (its
    ``id`` column is read): the table holds one row per item and H3 cell, so its row count
    is not a count of items.
    """

    unique_items: int
    unique_items_source: str
    total_files: int
    total_rows: int
    cells: int
    first_year: int | None
    last_year: int | None
    snapshot_id: int | None
    resolution: int | None
    catalog: str | None = None
    hash_index: str | None = None
    health: TableHealth = field(default_factory=lambda: TableHealth())

    def render(self) -> str:
        years = f"{self.first_year}–{self.last_year}" if self.first_year is not None else "none"
        lines = [
            f"Unique items : {self.unique_items:,} ({self.unique_items_source})",
            f"Total files : {self.total_files:,}",
            f"Total rows : {self.total_rows:,} (one per item and H3 cell)",
            f"Cells : {self.cells:,} (H3 resolution {self.resolution})",
            f"Years : {years}",
            f"Snapshot : {self.snapshot_id}",
        ]
        if self.catalog:
            lines.append(f"Catalog : {self.catalog}")
        if self.hash_index:
            lines.append(f"Hash index : {self.hash_index}")
        if self.total_files:
            lines += self.health.lines(self.total_rows, self.total_files)
        return "\n".join(lines)


@dataclass(frozen=True)
class TableHealth:
    """What tells whether the table needs maintenance: small files, many files per
    (cell, year), a long history of snapshots and metadata."""

    files_per_bucket_max: int = 0
    files_per_bucket_p95: float = 0.0
    snapshots: int = 0
    oldest_snapshot: str | None = None
    metadata_bytes: int = 0
    last_maintenance: str | None = None

    def lines(self, rows: int, files: int) -> list[str]:
        return [
            f"Rows per file : {rows / files:,.1f} on average",
            f"Files per (cell, year) : max {self.files_per_bucket_max:,},"
            f" p95 {self.files_per_bucket_p95:,.1f}",
            f"Snapshots : {self.snapshots:,} (oldest {self.oldest_snapshot or 'none'})",
            f"Metadata : {self.metadata_bytes / 1e6:,.1f} MB (metadata.json, manifest lists,"
            " manifests)",
            f"Last maintenance : {self.last_maintenance or 'never'}",
        ]


def table_health(table: Table, files: pa.Table, warehouse: str) -> TableHealth:
    """Health figures from the file listing ``info`` already holds and the table metadata."""
    partition = files["partition"].combine_chunks()
    buckets = pa.table(
        {
            "cell": partition.field("grid_partition"),
            "year": partition.field("datetime_year"),
        }
    )
    per_bucket = buckets.group_by(["cell", "year"]).aggregate([([], "count_all")])
    counts = per_bucket.column("count_all").to_numpy()
    snapshots = table.metadata.snapshots
    oldest = min((s.timestamp_ms for s in snapshots), default=None)
    maintained = [
        s
        for s in snapshots
        if s.summary is not None and iceberg.OPERATION_PROPERTY in s.summary.additional_properties
    ]
    last = max(maintained, key=lambda s: s.timestamp_ms, default=None)
    metadata_dir = layout.table_metadata_dir(warehouse)
    return TableHealth(
        files_per_bucket_max=int(counts.max()) if len(counts) else 0,
        files_per_bucket_p95=float(np.percentile(counts, 95)) if len(counts) else 0.0,
        snapshots=len(snapshots),
        oldest_snapshot=_stamp(oldest) if oldest is not None else None,
        metadata_bytes=sum(o.size for o in storage.list_objects(metadata_dir)),
        last_maintenance=(
            f"{last.summary.additional_properties[iceberg.OPERATION_PROPERTY]} at "
            f"{_stamp(last.timestamp_ms)}"
            if last is not None
            else None
        ),
    )


def _stamp(timestamp_ms: int) -> str:
    return dt.datetime.fromtimestamp(timestamp_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def catalog_info(
    catalog_path: str,
    warehouse: str,
    hash_index: str | None = None,
    *,
    catalog_label: str | None = None,
) -> CatalogInfo:
    """Summarize the table registered in ``catalog_path`` and, if given, the hash index.

    ``catalog_label`` says where the catalog was read from (e.g. the remote URI of which
    ``catalog_path`` is a private copy); it defaults to ``catalog_path``. A catalog that
    does not exist raises :class:`FileNotFoundError` naming it: a summary never creates
    the catalog (nor its folder) it reports on.
    """
    label = catalog_label or catalog_path
    if not os.path.isfile(catalog_path):
        raise FileNotFoundError(
            f"no catalog at {label}: nothing has been ingested there yet, or the path is "
            "wrong (--catalog / CATALOG, EARTHCATALOG_HOME)"
        )
    table = iceberg.load_table(iceberg.open_catalog(catalog_path, warehouse))
    files = table.inspect.files() if table is not None and table.current_snapshot() else None
    total_files = files.num_rows if files is not None else 0
    total_rows = int(pc.sum(files["record_count"]).as_py() or 0) if files is not None else 0
    cells = first = last = None
    if files is not None and total_files:
        partition = files["partition"].combine_chunks()
        cells = len(pc.unique(partition.field("grid_partition")))
        years = partition.field("datetime_year").drop_null()
        if len(years):
            # Iceberg's year transform counts years since 1970.
            first, last = 1970 + pc.min(years).as_py(), 1970 + pc.max(years).as_py()
    if hash_index and storage.exists(hash_index):
        unique, source = len(load_hash_index(hash_index)), FROM_HASH_INDEX
    else:
        unique = _distinct_ids(table) if total_rows else 0
        source = FROM_TABLE
    return CatalogInfo(
        unique_items=unique,
        unique_items_source=source,
        total_files=total_files,
        total_rows=total_rows,
        cells=cells or 0,
        first_year=first,
        last_year=last,
        snapshot_id=table.current_snapshot().snapshot_id if files is not None else None,
        resolution=iceberg.table_resolution(table) if table is not None else None,
        catalog=label,
        hash_index=hash_index if source == FROM_HASH_INDEX else None,
        health=table_health(table, files, warehouse) if total_files else TableHealth(),
    )


def _distinct_ids(table: Table | None) -> int:
    """The number of distinct ``id`` values of the table, read batch by batch."""
    if table is None:
        return 0
    seen: set[str] = set()
    for batch in table.scan(selected_fields=("id",)).to_arrow_batch_reader():
        seen.update(pc.unique(batch.column("id")).to_pylist())
    return len(seen)
