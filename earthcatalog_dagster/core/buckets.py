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

from earthcatalog_dagster.core.items import ParsedItems
from earthcatalog_dagster.core.partitioning import fan_out
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
    """The rows of each (cell, year) bucket, bucket by bucket, in sorted key order."""
    if table.num_rows == 0:
        return
    keys = (
        pc.binary_join_element_wise(table["grid_partition"], year_labels(table), "\x00")
        .combine_chunks()
        .dictionary_encode()
    )
    codes = keys.indices.to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    for group in np.split(order, bounds):
        cell, year = keys.dictionary[codes[group[0]]].as_py().split("\x00")
        yield (cell, year), table.take(pa.array(group))


def dedupe_latest(table: pa.Table) -> pa.Table:
    """One row per (id, grid_partition): the one with the latest ``updated`` wins."""
    if table.num_rows <= 1:
        return table
    ordered = table.sort_by(
        [("grid_partition", "ascending"), ("id", "ascending"), ("updated", "descending")]
    )
    ids = ordered["id"].combine_chunks()
    cells = ordered["grid_partition"].combine_chunks()
    same_as_previous = np.zeros(ordered.num_rows, dtype=bool)
    same_as_previous[1:] = pc.equal(ids[1:], ids[:-1]).to_numpy(zero_copy_only=False) & pc.equal(
        cells[1:], cells[:-1]
    ).to_numpy(zero_copy_only=False)
    if not same_as_previous.any():
        return table
    return ordered.filter(pa.array(~same_as_previous))
