"""An ``$EARTHCATALOG_HOME`` ready to ingest: several days of objects and their inventories."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc

from earthcatalog_dagster import layout
from earthcatalog_dagster.synthetic.base import _as_date
from earthcatalog_dagster.synthetic.day import GeneratedDay, generate_day
from earthcatalog_dagster.synthetic.inventory import write_inventory


def generate_demo(
    home: str,
    dates: list[dt.date] | list[str],
    n_per_day: int,
    seed: int = 0,
    *,
    cumulative: bool = True,
) -> list[GeneratedDay]:
    """Source objects and daily inventories for ``dates`` under an ``$EARTHCATALOG_HOME``.

    Each date's objects go to ``<home>/source``; its inventory to ``<home>/inventory``,
    Parquet for the first date, CSV for the second, alternating. Like a real S3 Inventory,
    each day's inventory lists everything in the bucket so far (``cumulative=True``): the
    previous days' objects too, except the ``missing`` ones, which are gone by then. With
    ``cumulative=False`` each inventory lists only that day's new keys.
    """
    source_root = layout.join(home, "source")
    inventory_root = layout.join(home, "inventory")
    days: list[GeneratedDay] = []
    listed: list[pa.Table] = []
    for i, date in enumerate(map(_as_date, dates)):
        day = generate_day(date, n_per_day, source_root=source_root, seed=seed)
        days.append(day)
        refs = pa.concat_tables([*listed, day.refs]) if cumulative else day.refs
        write_inventory(inventory_root, date, refs, fmt="parquet" if i % 2 == 0 else "csv")
        if cumulative:
            gone = pa.array(day.expected["missing"], pa.string())
            listed.append(day.refs.filter(pc.invert(pc.is_in(day.refs.column("key"), gone))))
    return days
