"""Fan-out of item rows to H3 cells, and grouping into (cell, year) buckets.

An item becomes one row per cell its footprint overlaps; the warehouse stores one file per
(cell, year of ``datetime``). An item without a geometry goes to cell ``__none__``; one
without a ``datetime`` goes to year ``__none__`` (its ``datetime`` stays null, so Iceberg's
``year(datetime)`` partition of that file is null too): nothing is dropped or invented.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from earthcatalog_dagster.core.fanout import fan_out
from earthcatalog_dagster.core.items import ParsedItems
from earthcatalog_dagster.layout import NO_YEAR

BucketKey = tuple[str, str]


def explode_to_cells(parsed: ParsedItems, resolution: int) -> pa.Table:
    """One row per (item, overlapping cell), with ``grid_partition`` set."""
    cells = fan_out(parsed.geometries, resolution)
    counts = np.fromiter((len(c) for c in cells), dtype=np.int64, count=len(cells))
    rows = np.repeat(np.arange(len(cells), dtype=np.int64), counts)
    flat = [cell for item_cells in cells for cell in item_cells]
    exploded = parsed.table.take(pa.array(rows))
    return exploded.append_column("grid_partition", pa.array(flat, type=pa.string()))


def year_labels(table: pa.Table) -> pa.Array:
    """The bucket year of each row: the year of ``datetime``, or ``__none__``."""
    years = pc.cast(pc.year(table["datetime"]), pa.string())
    return pc.fill_null(years, NO_YEAR).combine_chunks()


def split_buckets(table: pa.Table) -> Iterator[tuple[BucketKey, pa.Table]]:
    """The rows of each (cell, year) bucket in key order, each in warehouse row order.

    One sort and one ``take`` for the whole table; buckets are zero-copy slices of it.
    """
    if table.num_rows == 0:
        return
    years = year_labels(table)
    keys = pa.table(
        {
            "cell": table["grid_partition"],
            "year": years,
            "platform": table["platform"],
            "datetime": table["datetime"],
            "id": table["id"],
        }
    )
    indices = pc.sort_indices(keys, sort_keys=[(name, "ascending") for name in keys.column_names])
    rows = table.take(indices)
    cells = rows["grid_partition"].combine_chunks()
    sorted_years = years.take(indices)
    change = np.zeros(rows.num_rows, dtype=bool)
    change[0] = True
    change[1:] = ~(
        pc.equal(cells[1:], cells[:-1]).to_numpy(zero_copy_only=False)
        & pc.equal(sorted_years[1:], sorted_years[:-1]).to_numpy(zero_copy_only=False)
    )
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], rows.num_rows)
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        key = (cells[start].as_py(), sorted_years[start].as_py())
        yield key, rows.slice(start, end - start)


def dedupe_latest(table: pa.Table) -> pa.Table:
    """One row per (id, grid_partition): the one with the latest ``updated`` wins.

    Rows keep their order, so a bucket already in warehouse order stays in it.
    """
    if table.num_rows <= 1 or pc.count_distinct(table["id"]).as_py() == table.num_rows:
        return table
    order = pc.sort_indices(
        table.select(["grid_partition", "id", "updated"]),
        sort_keys=[("grid_partition", "ascending"), ("id", "ascending"), ("updated", "descending")],
    )
    ids = table["id"].take(order).combine_chunks()
    cells = table["grid_partition"].take(order).combine_chunks()
    repeated = np.zeros(table.num_rows, dtype=bool)
    repeated[1:] = pc.equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False) & pc.equal(
        cells[1:], cells[:-1]
    ).to_numpy(zero_copy_only=False)
    keep = np.ones(table.num_rows, dtype=bool)
    keep[order.to_numpy()[repeated]] = False
    return table.filter(pa.array(keep))
