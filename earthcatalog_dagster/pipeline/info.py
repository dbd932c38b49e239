"""The catalog summary the operators check after every ingest (``info``)."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow.compute as pc

from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import load_hash_index


@dataclass(frozen=True)
class CatalogInfo:
    """Counts read from the table's metadata and the hash index (no data file is read)."""

    unique_items: int
    unique_items_source: str
    total_files: int
    total_rows: int
    cells: int
    first_year: int | None
    last_year: int | None
    snapshot_id: int | None
    resolution: int | None

    def render(self) -> str:
        years = f"{self.first_year}–{self.last_year}" if self.first_year is not None else "none"
        return "\n".join(
            [
                f"Unique items : {self.unique_items:,} (from {self.unique_items_source})",
                f"Total files : {self.total_files:,}",
                f"Total rows : {self.total_rows:,} (one per item and H3 cell)",
                f"Cells : {self.cells:,} (H3 resolution {self.resolution})",
                f"Years : {years}",
                f"Snapshot : {self.snapshot_id}",
            ]
        )


def catalog_info(catalog_path: str, warehouse: str, hash_index: str | None = None) -> CatalogInfo:
    """Summarize the table registered in ``catalog_path`` and, if given, the hash index."""
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
        unique, source = len(load_hash_index(hash_index)), "hash index"
    else:
        unique, source = total_rows, "table rows; no hash index"
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
    )
