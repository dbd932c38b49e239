"""STAC item JSON ⇄ Arrow rows of the warehouse schema.

``parse_items`` turns raw object bodies into one Arrow table in the schema of
:mod:`~earthcatalog_dagster.core.schema` (without ``grid_partition``: rows get their cell
when they are fanned out). A body that is not a usable STAC item becomes a :class:`Reject`
with a reason instead of an exception, so a run never loses track of it.
``table_to_items`` is the inverse: the exact source item, ``stac_extra`` merged back.

This module holds the public API and puts a batch together; the rules live beside it:

* :mod:`~earthcatalog_dagster.core.item_rules`: the exact per-item path (decoding,
  coercion, what goes to ``stac_extra``), the reference every row must equal;
* :mod:`~earthcatalog_dagster.core.item_columns`: the column-wise fast path, same rows at
  about 2.5x less CPU, which leaves to the exact path each item it cannot vouch for;
* :mod:`~earthcatalog_dagster.core.item_geometry`: the geometry checks of a batch
  (impossible coordinates rejected, a bbox that does not contain the geometry recomputed
  and recorded as a :class:`Fix`).

Ids and file names
------------------
An item's id should be its key's file name without ``.stac.json``. When it is not,
ingesting it is fine (it is stored under its id), but the daily anti-joins hash key stems,
so it would be fetched again every day. :attr:`ParsedItems.mismatches` lists the kept items
whose id differs from their key's stem (``key_id``, ``item_id``), computed with one
vectorized compare; callers report it and record the ``key_id`` digests as aliases of the
hash index (:func:`~earthcatalog_dagster.core.hash_index.merge_aliases`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from earthcatalog_dagster.core.inventory import ids_of_keys
from earthcatalog_dagster.core.item_columns import _fast_columns
from earthcatalog_dagster.core.item_geometry import Fix, _check_geometries, _Positions
from earthcatalog_dagster.core.item_rules import _decode, _Rejected, _row
from earthcatalog_dagster.core.schema import (
    ASSETS_TYPE,
    BBOX_TYPE,
    LINK_TYPE,
    PROPERTIES,
    TIMESTAMP,
    TOP_LEVEL_FIELDS,
    WAREHOUSE_SCHEMA,
    Kind,
)

ITEM_SCHEMA = pa.schema([f for f in WAREHOUSE_SCHEMA if f.name != "grid_partition"])
_TIMESTAMP_NAMES = [p.name for p in PROPERTIES if p.kind is Kind.TIMESTAMP]
#: Kept items whose id is not their key's file name without ``.stac.json``.
MISMATCH_SCHEMA = pa.schema([("key_id", pa.string()), ("item_id", pa.string())])


@dataclass(frozen=True)
class Reject:
    """An object that could not be ingested, and why."""

    key: str
    reason: str


@dataclass
class ParsedItems:
    """Items of one batch as Arrow rows, aligned with their GeoJSON geometries.

    ``fixes``: kept items whose bbox was recomputed (see :mod:`.item_geometry`).
    ``mismatches``: kept items whose id differs from their key's stem, in
    :data:`MISMATCH_SCHEMA` (``key_id``, ``item_id``), for the report and the aliases.
    """

    table: pa.Table
    geometries: list[dict[str, Any] | None]
    keys: list[str]
    rejects: list[Reject]
    items: list[dict[str, Any]]
    fixes: list[Fix] = dataclasses.field(default_factory=list)
    mismatches: pa.Table = dataclasses.field(default_factory=MISMATCH_SCHEMA.empty_table)


def parse_items(bodies: Sequence[bytes], keys: Sequence[str]) -> ParsedItems:
    """Decode, validate and coerce raw item bodies into warehouse rows."""
    items: list[dict[str, Any]] = []
    item_keys: list[str] = []
    rejects: list[Reject] = []
    for body, key in zip(bodies, keys, strict=True):
        try:
            items.append(_decode(body))
            item_keys.append(key)
        except _Rejected as exc:
            rejects.append(Reject(key, str(exc)))
    return parse_decoded(items, item_keys, rejects)


def parse_decoded(
    items: Sequence[dict[str, Any]], keys: Sequence[str], rejects: list[Reject] | None = None
) -> ParsedItems:
    """Validate and coerce already decoded items (e.g. NDJSON lines) into warehouse rows.

    ``keys`` are the items' object keys (``.../<id>.stac.json``), aligned with ``items``.
    """
    table, geometries, kept, more_rejects, kept_items, fixes = _items_to_table(items, keys)
    return ParsedItems(
        table,
        geometries,
        kept,
        (rejects or []) + more_rejects,
        kept_items,
        fixes,
        mismatches(kept, table["id"]),
    )


def mismatches(keys: Sequence[str] | pa.Array, ids: pa.Array | pa.ChunkedArray) -> pa.Table:
    """``(key_id, item_id)`` of the rows whose item id is not their key's stem, vectorized.

    ``keys`` are object keys, ``ids`` the item ids in the same order; the stem is the file
    name without ``.stac.json`` (:func:`~earthcatalog_dagster.core.inventory.ids_of_keys`).
    """
    if not len(keys):
        return MISMATCH_SCHEMA.empty_table()
    key_ids = ids_of_keys(pa.array(keys, type=pa.string()) if isinstance(keys, list) else keys)
    item_ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    differ = pc.not_equal(key_ids, item_ids.cast(pa.string()))
    if not pc.any(differ).as_py():
        return MISMATCH_SCHEMA.empty_table()
    return pa.Table.from_arrays(
        [key_ids.filter(differ), item_ids.filter(differ)], schema=MISMATCH_SCHEMA
    )


def _items_to_table(
    items: Sequence[dict[str, Any]], keys: Sequence[str], *, exact: bool = False
) -> tuple[
    pa.Table, list[dict[str, Any] | None], list[str], list[Reject], list[dict[str, Any]], list[Fix]
]:
    """The rows of ``items``: whole columns at once where the batch checks pass, the exact
    per-item path (:func:`.item_rules._row`) for the rest; ``exact=True`` sends every item
    that way."""
    if len(keys) != len(items):
        raise ValueError(f"{len(items)} items but {len(keys)} keys")
    fast = [] if exact else _fast_columns(items)
    positions: list[int] = []  # the item each row comes from, rows in the order built
    bbox_given: list[bool] = []
    rejects: list[Reject] = []
    columns: dict[str, list[Any]] = {name: [] for name in ITEM_SCHEMA.names}
    fast_positions: list[int] = []
    arrays: dict[str, pa.Array] = {}
    coordinates: _Positions | None = None
    if fast:
        arrays, fast_positions, fast_given, coordinates = fast
        positions += fast_positions
        bbox_given += fast_given
    slow = _complement(fast_positions, len(items))
    slow_positions: list[int] = []
    for i in slow:
        try:
            row, given = _row(items[i])
        except _Rejected as exc:
            rejects.append(Reject(keys[i], str(exc)))
            continue
        for name, value in row.items():
            columns[name].append(value)
        slow_positions.append(i)
        bbox_given.append(given)
    positions += slow_positions

    if slow_positions or not arrays:
        coordinates = None
        slow_arrays = _row_arrays(columns)
        if arrays:
            order = pa.array(np.argsort(np.asarray(positions), kind="stable"))
            arrays = {
                name: pa.concat_arrays([arrays[name], slow_arrays[name]]).take(order)
                for name in ITEM_SCHEMA.names
            }
            bbox_given = [bbox_given[j] for j in order.to_pylist()]
            positions = sorted(positions)
        else:
            arrays = slow_arrays
    table, bad_rows = _build_table(arrays)
    geometries = [items[i].get("geometry") for i in positions]
    kept = [keys[i] for i in positions]
    kept_items = [items[i] for i in positions]
    table, fixes = _check_geometries(table, kept, kept_items, bbox_given, bad_rows, coordinates)
    if bad_rows:
        keep = [i for i in range(table.num_rows) if i not in bad_rows]
        rejects += [Reject(kept[i], reason) for i, reason in sorted(bad_rows.items())]
        table = table.take(pa.array(keep, type=pa.int64()))
        geometries = [geometries[i] for i in keep]
        kept = [kept[i] for i in keep]
        kept_items = [kept_items[i] for i in keep]
    return table, geometries, kept, rejects, kept_items, fixes


def _complement(positions: list[int], n: int) -> list[int]:
    """``range(n)`` without ``positions`` (sorted), in order."""
    if not positions:
        return list(range(n))
    if len(positions) == n:
        return []
    taken = set(positions)
    return [i for i in range(n) if i not in taken]


def _row_arrays(columns: dict[str, list[Any]]) -> dict[str, pa.Array]:
    """Row values (of :func:`_row`) → one array per column; timestamps stay strings."""
    arrays = {}
    for field in ITEM_SCHEMA:
        values = columns[field.name]
        if field.type == TIMESTAMP:
            arrays[field.name] = pa.array(values, type=pa.string())
        elif field.name == "assets":
            arrays[field.name] = pa.array(values, type=ASSETS_TYPE)
        elif field.name == "links":
            arrays[field.name] = pa.array(values, type=pa.list_(LINK_TYPE))
        elif field.name == "bbox":
            arrays[field.name] = pa.array(values, type=BBOX_TYPE)
        else:
            arrays[field.name] = pa.array(values, type=field.type)
    return arrays


def _build_table(arrays: dict[str, pa.Array]) -> tuple[pa.Table, dict[int, str]]:
    """Column arrays → table; timestamps parse in bulk, and rows Arrow cannot parse are named."""
    bad: dict[int, str] = {}
    columns = [
        _timestamps(field.name, arrays[field.name], bad)
        if field.type == TIMESTAMP
        else arrays[field.name]
        for field in ITEM_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=ITEM_SCHEMA), bad


def _timestamps(name: str, strings: pa.Array, bad: dict[int, str]) -> pa.Array:
    try:
        return strings.cast(TIMESTAMP)
    except pa.ArrowInvalid:
        pass
    parsed = []
    for row, value in enumerate(strings.to_pylist()):
        try:
            parsed.append(pa.scalar(value, pa.string()).cast(TIMESTAMP).as_py())
        except pa.ArrowInvalid:
            bad.setdefault(row, f"property {name!r} is not an RFC 3339 datetime: {value!r}")
            parsed.append(None)
    return pa.array(parsed, type=TIMESTAMP)


# --- reading back ----------------------------------------------------------------------------


def format_timestamps(table: pa.Table) -> pa.Table:
    """Timestamp columns as RFC 3339 strings with microseconds and ``Z``."""
    for name in _TIMESTAMP_NAMES:
        if name in table.column_names:
            index = table.column_names.index(name)
            text = pc.strftime(table[name], format="%Y-%m-%dT%H:%M:%SZ")
            table = table.set_column(index, name, text)
    return table


def table_to_items(table: pa.Table) -> Iterator[dict[str, Any]]:
    """The STAC items of warehouse rows, exactly as ingested (plus ``grid_partition``).

    Null values are left out (Parquet cannot tell an absent field from a null one),
    ``stac_extra`` is merged back, geometry returns to GeoJSON.
    """
    import shapely

    table = format_timestamps(table)
    geometries = shapely.from_wkb(table["geometry"].to_numpy(zero_copy_only=False))
    top_level = TOP_LEVEL_FIELDS - {"properties", "geometry", "bbox"}
    for row, geometry in zip(table.to_pylist(), geometries, strict=True):
        extra = orjson.loads(row.pop("stac_extra")) if row.get("stac_extra") else {}
        row.pop("stac_extra", None)
        item: dict[str, Any] = {k: row.pop(k) for k in list(row) if k in top_level}
        item = {k: v for k, v in item.items() if v is not None}
        bbox = row.pop("bbox")
        row.pop("geometry")
        item["geometry"] = (
            orjson.loads(shapely.to_geojson(geometry)) if geometry is not None else None
        )
        if bbox is not None:
            item["bbox"] = [bbox["xmin"], bbox["ymin"], bbox["xmax"], bbox["ymax"]]
        if "assets" in item:
            item["assets"] = {k: _drop_nulls(v) for k, v in item["assets"].items() if v}
        if "links" in item:
            item["links"] = [_drop_nulls(link) for link in item["links"]]
        item["properties"] = {k: v for k, v in row.items() if v is not None}
        item["properties"].update(extra.pop("properties", {}))
        if "assets" in extra:
            item.setdefault("assets", {}).update(extra.pop("assets"))
        item.update(extra)
        yield item


def _drop_nulls(value: dict[str, Any]) -> dict[str, Any]:
    return {
        k: _drop_nulls(v) if isinstance(v, dict) else v for k, v in value.items() if v is not None
    }
