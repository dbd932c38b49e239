"""Fan-out of item rows to H3 cells, and grouping into (cell, year) buckets.

An item becomes one row per cell its footprint overlaps; the warehouse stores one file per
(cell, year of ``datetime``). An item without a geometry goes to cell ``__none__``; one
without a ``datetime`` goes to year ``__none__`` (its ``datetime`` stays null, so Iceberg's
``year(datetime)`` partition of that file is null too): nothing is dropped or invented.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

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


#: The columns :func:`bucket_order` reads: the bucket (cell, year of ``datetime``) and the
#: warehouse row order within it (``platform``, ``datetime``, ``id``).
KEY_COLUMNS = ("grid_partition", "platform", "datetime", "id")


@dataclass(frozen=True)
class BucketOrder:
    """Rows in warehouse order, cut into (cell, year) buckets, in key order.

    ``indices[starts[i]:ends[i]]`` are the row positions of bucket ``keys[i]``, in
    warehouse order. Rows equal on every key keep their input order (the sort is stable).
    """

    indices: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    keys: list[BucketKey]

    def __len__(self) -> int:
        return len(self.keys)


def bucket_order(table: pa.Table) -> BucketOrder:
    """Where each row of ``table`` goes: its bucket and its place in warehouse order.

    Reads only :data:`KEY_COLUMNS`, so it can be computed from those columns alone (kept
    apart from the rows, which can then be gathered a few buckets at a time).
    """
    if table.num_rows == 0:
        empty = np.zeros(0, dtype=np.int64)
        return BucketOrder(empty, empty, empty, [])
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
    cells = table["grid_partition"].take(indices).combine_chunks()
    sorted_years = years.take(indices)
    change = np.zeros(table.num_rows, dtype=bool)
    change[0] = True
    change[1:] = ~(
        pc.equal(cells[1:], cells[:-1]).to_numpy(zero_copy_only=False)
        & pc.equal(sorted_years[1:], sorted_years[:-1]).to_numpy(zero_copy_only=False)
    )
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], table.num_rows)
    first = pa.array(starts)
    keys_of = zip(cells.take(first).to_pylist(), sorted_years.take(first).to_pylist(), strict=True)
    return BucketOrder(indices.to_numpy().astype(np.int64), starts, ends, list(keys_of))


def split_buckets(table: pa.Table) -> Iterator[tuple[BucketKey, pa.Table]]:
    """The rows of each (cell, year) bucket in key order, each in warehouse row order.

    One sort and one ``take`` for the whole table; buckets are zero-copy slices of it.
    """
    if table.num_rows == 0:
        return
    order = bucket_order(table)
    rows = table.take(pa.array(order.indices))
    for key, start, end in zip(order.keys, order.starts.tolist(), order.ends.tolist(), strict=True):
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
