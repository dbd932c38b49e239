"""STAC item JSON ⇄ Arrow rows of the warehouse schema.

``parse_items`` turns raw object bodies into one Arrow table in the schema of
:mod:`~earthcatalog_dagster.core.schema` (without ``grid_partition``: rows get their cell
when they are fanned out). A body that is not a usable STAC item becomes a :class:`Reject`
with a reason instead of an exception, so a run never loses track of it.
``table_to_items`` is the inverse: the exact source item, ``stac_extra`` merged back.

Geometry checks
---------------
Every non-null geometry is checked once per batch, vectorized over all its coordinates
(shapely on the WKB column), and the item is a :class:`Reject` naming the first offending
position when

* a coordinate is not finite (NaN, ±inf: JSON bodies cannot hold them, decoded dicts can);
* a latitude lies outside [-90, 90];
* a longitude lies outside [-180, 180] after antimeridian normalisation. The normalisation
  is the fan-out's (:mod:`~earthcatalog_dagster.core.partitioning`): a footprint may cross
  ±180 either with a jump (179.2 → -179.4) or written continuously past it
  (179.2 → 180.6), which the fan-out unwraps. So a longitude beyond ±180 is accepted only as
  such a continuation: within ±360, in a geometry that also has a position inside ±180. A
  geometry entirely beyond ±180 (e.g. projected metres, or 181..182) is rejected.

A ``bbox`` that does not contain the geometry is **recomputed**, not rejected: the geometry
is the item's truth and the bbox a summary of it, so the item is kept, its stored bbox (the
GeoParquet covering that readers prune with) is the recomputed one, and the fix is recorded
in :attr:`ParsedItems.fixes` (key, the source bbox and the new one) for the run's report.
The item as returned in :attr:`ParsedItems.items` (what the staged NDJSON holds) carries the
recomputed bbox too, so such an item reads back with it: the one deliberate exception to
"reads back exactly". Containment follows RFC 7946 (``xmin > xmax`` crosses the
antimeridian; a position may match the bbox shifted by ±360) with 1e-9° of slack for float
noise, and is checked on the positions (edges are straight in lon/lat, so for a bbox that
does not cross the antimeridian that is the geometry). The recomputed bbox is the tightest
in those terms: RFC 7946 style across the antimeridian, and ``[-180, lat, 180, ±90]`` for a
ring that winds round a pole (a cap). The check costs ~5 µs per item (one shapely decode of
the batch's WKB column and NumPy over all positions).

Cost: whole columns at once
---------------------------
Rows are built a column at a time: one Arrow conversion per column over the values of all
items (properties, assets and links straight from the dicts), WKB for all footprints at once
(:func:`~earthcatalog_dagster.core.wkb.polygons_to_wkb`), type and key checks as set
operations that run in C. An item those checks cannot vouch for (a number written as a
string, an unknown asset, a MultiPolygon, a wrong type anywhere...) takes the exact per-item
path instead, alone: the other items of its batch stay on the fast one, and every item ends
as that path makes it (same rows, rejects, reasons, fixes, same order). Values are assumed
to be JSON values (what a JSON decoder returns). About 2.5x less CPU than per-item code on
ITS_LIVE items; decoding the JSON (``orjson``) is then half of ``parse_items``.

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
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from earthcatalog_dagster.core.inventory import ids_of_keys
from earthcatalog_dagster.core.partitioning import ring_winding
from earthcatalog_dagster.core.schema import (
    ASSET_FIELDS,
    ASSET_KEYS,
    ASSETS_TYPE,
    BBOX_TYPE,
    LINK_FIELDS,
    LINK_TYPE,
    PROPERTIES,
    PROPERTY_NAMES,
    TIMESTAMP,
    TOP_LEVEL_FIELDS,
    WAREHOUSE_SCHEMA,
    Kind,
)
from earthcatalog_dagster.core.wkb import (
    GeometryError,
    geojson_to_wkb,
    geometry_bounds,
    polygons_to_wkb,
)

ITEM_SCHEMA = pa.schema([f for f in WAREHOUSE_SCHEMA if f.name != "grid_partition"])
_TIMESTAMP_NAMES = [p.name for p in PROPERTIES if p.kind is Kind.TIMESTAMP]
_ERROR_PAGE = re.compile(rb"<Code>([^<]*)</Code>")
#: Kept items whose id is not their key's file name without ``.stac.json``.
MISMATCH_SCHEMA = pa.schema([("key_id", pa.string()), ("item_id", pa.string())])
# Degrees a position may lie outside its bbox before the bbox counts as wrong: float noise
# of the ±360 shift only (0.1 mm), far below the 4 decimals ITS_LIVE writes.
_BBOX_SLACK = 1e-9


@dataclass(frozen=True)
class Reject:
    """An object that could not be ingested, and why."""

    key: str
    reason: str


@dataclass(frozen=True)
class Fix:
    """An item kept after a repair (a recomputed bbox), and what was repaired."""

    key: str
    reason: str


@dataclass
class ParsedItems:
    """Items of one batch as Arrow rows, aligned with their GeoJSON geometries.

    ``fixes``: kept items whose bbox was recomputed (see the module doc).
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


class _Rejected(Exception):
    pass


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


def _decode(body: bytes) -> dict[str, Any]:
    head = body.lstrip()[:64]
    if head.startswith((b"<?xml", b"<Error", b"<html", b"<!DOCTYPE")):
        code = _ERROR_PAGE.search(body)
        detail = code.group(1).decode(errors="replace") if code else "markup"
        raise _Rejected(f"S3 error page instead of JSON (Code: {detail})")
    try:
        item = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _Rejected(f"invalid JSON ({len(body)} bytes): {exc}") from None
    if not isinstance(item, dict):
        raise _Rejected(f"JSON is a {type(item).__name__}, not a STAC item object")
    if not isinstance(item.get("id"), str) or not item["id"]:
        raise _Rejected("STAC item has no string 'id'")
    if item.get("type", "Feature") != "Feature":
        raise _Rejected(f"type is {item.get('type')!r}, not 'Feature'")
    if not isinstance(item.get("properties", {}), dict):
        raise _Rejected("'properties' is not an object")
    return item


def _items_to_table(
    items: Sequence[dict[str, Any]], keys: Sequence[str], *, exact: bool = False
) -> tuple[
    pa.Table, list[dict[str, Any] | None], list[str], list[Reject], list[dict[str, Any]], list[Fix]
]:
    """The rows of ``items``: whole columns at once where the batch checks pass, the exact
    per-item path (:func:`_row`) for the rest; ``exact=True`` sends every item that way."""
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


def _row(item: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The warehouse row of one item, and whether its bbox came from the item itself."""
    extra: dict[str, Any] = {k: v for k, v in item.items() if k not in TOP_LEVEL_FIELDS}
    properties = item.get("properties") or {}
    unknown = {k: v for k, v in properties.items() if k not in PROPERTY_NAMES}
    if unknown:
        extra["properties"] = unknown

    geometry = item.get("geometry")
    given = False
    if geometry is None:
        wkb, bbox = None, None
    else:
        try:
            wkb = geojson_to_wkb(geometry)
            bbox, given = _bbox(item.get("bbox"), geometry, extra)
        except GeometryError as exc:
            raise _Rejected(str(exc)) from None

    row: dict[str, Any] = {
        "type": _text(item, "type", extra),
        "stac_version": _text(item, "stac_version", extra),
        "stac_extensions": _string_list(item, "stac_extensions", extra),
        "id": item["id"],
        "geometry": wkb,
        "bbox": bbox,
        "links": _links(item.get("links"), extra),
        "assets": _assets(item.get("assets"), extra),
        "collection": _text(item, "collection", extra),
    }
    for prop in PROPERTIES:
        row[prop.name] = _coerce(prop.name, prop.kind, properties.get(prop.name))
    row["stac_extra"] = orjson.dumps(extra).decode() if extra else None
    return row, given


def _text(item: dict[str, Any], name: str, extra: dict[str, Any]) -> str | None:
    value = item.get(name)
    if value is None or isinstance(value, str):
        return value
    extra[name] = value
    return None


def _string_list(item: dict[str, Any], name: str, extra: dict[str, Any]) -> list[str] | None:
    value = item.get(name)
    if value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        return value
    extra[name] = value
    return None


def _bbox(
    bbox: Any, geometry: dict[str, Any], extra: dict[str, Any]
) -> tuple[dict[str, float], bool]:
    """The bbox column value, and whether it is the item's own (checked later)."""
    if (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        return dict(zip(_BBOX_AXES, map(float, bbox), strict=True)), True
    if bbox is not None:
        extra["bbox"] = bbox
    return dict(zip(_BBOX_AXES, geometry_bounds(geometry), strict=True)), False


_BBOX_AXES = ("xmin", "ymin", "xmax", "ymax")
_BBOX_FIELDS = list(BBOX_TYPE)


# --- the fast path: whole columns at once ------------------------------------------------


class _Unfit(Exception):
    """A column's batch check failed: some of its values need the exact per-item path."""


_NONE = type(None)
_STRINGS = frozenset({str, _NONE})
_NUMBERS = frozenset({int, float, _NONE})
_COORDINATE = frozenset({int, float})
_LISTS = frozenset({list, _NONE})
_DICTS = frozenset({dict, _NONE})
_S3_KEYS = frozenset({"href", "alternate:name"})
_ASSET_ALLOWED = {
    key: frozenset(ASSET_FIELDS) | ({"alternate"} if key == "data" else frozenset())
    for key in ASSET_KEYS
}
_STRING_PROPERTIES = [p.name for p in PROPERTIES if p.kind in (Kind.STRING, Kind.TIMESTAMP)]
_STRING_PROPERTIES_TYPE = pa.struct([(name, pa.string()) for name in _STRING_PROPERTIES])
_NUMBER_PROPERTIES = [p for p in PROPERTIES if p.kind in (Kind.INTEGER, Kind.FLOAT)]
# What Arrow raises on a value it cannot convert (its own errors subclass these too).
_BUILD_ERRORS = (_Unfit, pa.ArrowException, TypeError, ValueError, OverflowError)


def _fast_columns(
    items: Sequence[dict[str, Any]],
) -> tuple[dict[str, pa.Array], list[int], list[bool], _Positions | None] | list[Any]:
    """The columns of the items whose every field the batch checks can vouch for.

    Each column is built with one Arrow conversion from the values of all items, after
    checks that run in C (type sets, key sets, counts). When a column's checks or
    conversion fail, :func:`_column` finds the items at fault with the exact per-item
    predicate (what :func:`_row` accepts unchanged) and leaves them to :func:`_row`. So an
    item here gives exactly the row :func:`_row` gives. Returns ``(arrays, item indices,
    bbox_given, geometry positions or None)`` with timestamps still strings, or ``[]`` when
    no item is left.
    """
    n = len(items)
    if not n:
        return []
    unfit: set[int] = set()
    arrays: dict[str, pa.Array] = {}
    for name in ("type", "stac_version", "collection"):
        arrays[name] = _column([item.get(name) for item in items], _strings, _is_text, unfit)
    arrays["id"] = _column([item.get("id") for item in items], _strings, _is_text, unfit)
    arrays["stac_extensions"] = _column(
        [item.get("stac_extensions") for item in items],
        _string_lists,
        _is_string_list,
        unfit,
    )
    arrays["links"] = _column([item.get("links") for item in items], _links_array, _is_links, unfit)
    arrays["assets"] = _column(
        [item.get("assets") for item in items], _assets_array, _is_assets, unfit
    )
    geometries = [item.get("geometry") for item in items]
    has_geometry = [g is not None for g in geometries]
    pairs = [
        (g, item.get("bbox")) if g is not None else None
        for g, item in zip(geometries, items, strict=True)
    ]
    arrays["geometry"], arrays["bbox"], positions = _column(
        pairs, _footprints, _is_footprint, unfit
    )

    properties = [item.get("properties") for item in items]
    strings = _column(properties, _string_properties, _is_string_properties, unfit)
    arrays.update(zip(_STRING_PROPERTIES, strings, strict=True))
    for prop in _NUMBER_PROPERTIES:
        values = [p.get(prop.name) if type(p) is dict else None for p in properties]
        build = _integers if prop.kind is Kind.INTEGER else _floats
        arrays[prop.name] = _column(
            values, build, lambda v, prop=prop: _is_number(prop.name, prop.kind, v), unfit
        )
    arrays["stac_extra"] = _extras(items, properties)

    if len(unfit) == n:
        return []
    if unfit:
        keep = [j for j in range(n) if j not in unfit]
        indices = pa.array(keep, type=pa.int64())
        arrays = {name: array.take(indices) for name, array in arrays.items()}
        has_geometry = [has_geometry[j] for j in keep]
        positions = None  # rows of the positions no longer match
    else:
        keep = list(range(n))
    return arrays, keep, has_geometry, positions


def _column(values: list[Any], build: Any, fits: Any, unfit: set[int]) -> Any:
    """``build(values)``; when it fails, the values ``fits`` rejects go to the exact path.

    Those values become ``None`` placeholders (rows dropped later) and the column is built
    again. ``fits`` is the exact per-item acceptance; should it find no culprit, or the
    second build fail anyway, every item takes the exact path: never a wrong row.
    """
    try:
        return build(values)
    except _BUILD_ERRORS:
        pass
    bad = [j for j, v in enumerate(values) if v is not None and not fits(v)]
    if not bad:
        bad = list(range(len(values)))
    unfit.update(bad)
    clean = list(values)
    for j in bad:
        clean[j] = None
    try:
        return build(clean)
    except _BUILD_ERRORS:
        unfit.update(range(len(values)))
        return build([None] * len(values))


def _types(values: list[Any]) -> set[type]:
    return set(map(type, values))


def _strings(values: list[Any]) -> pa.Array:
    if not _types(values) <= _STRINGS:
        raise _Unfit
    return pa.array(values, type=pa.string())


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _string_lists(values: list[Any]) -> pa.Array:
    if not _types(values) <= _LISTS:
        raise _Unfit
    array = pa.array(values, type=pa.list_(pa.string()))
    if array.flatten().null_count:
        raise _Unfit
    return array


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _links_array(values: list[Any]) -> pa.Array:
    """``links``: the link structs of all items converted at once, then listed by offsets."""
    if not _types(values) <= _LISTS:
        raise _Unfit
    lists = [v or () for v in values]
    flat = list(chain.from_iterable(lists))
    if flat and _types(flat) != {dict}:
        raise _Unfit
    structs = pa.array(flat, type=LINK_TYPE)
    # As many non-null fields as keys: no key beyond the schema and no explicit null.
    present = sum(len(structs) - structs.field(i).null_count for i in range(len(LINK_FIELDS)))
    if present != sum(map(len, flat)):
        raise _Unfit
    offsets = np.zeros(len(values) + 1, dtype=np.int32)
    np.cumsum(list(map(len, lists)), out=offsets[1:])
    mask = pa.array([v is None for v in values]) if None in values else None
    return pa.ListArray.from_arrays(pa.array(offsets), structs, type=pa.list_(LINK_TYPE), mask=mask)


def _is_links(value: Any) -> bool:
    return _links(value, {}) is value


def _assets_array(values: list[Any]) -> pa.Array:
    if not all(v is None or _plain_assets(v) for v in values):
        raise _Unfit
    return pa.array(values, type=ASSETS_TYPE)


def _plain_assets(assets: Any) -> bool:
    """The structure :func:`_asset_fits` accepts; leaf types are left to Arrow's conversion."""
    if type(assets) is not dict:
        return False
    for key, asset in assets.items():
        allowed = _ASSET_ALLOWED.get(key)
        if allowed is None or type(asset) is not dict or not allowed.issuperset(asset):
            return False
        roles = asset.get("roles")
        if roles is not None and (type(roles) is not list or None in roles):
            return False
        alternate = asset.get("alternate")
        if alternate is not None:
            if type(alternate) is not dict or len(alternate) != 1:
                return False
            s3 = alternate.get("s3")
            if type(s3) is not dict or not _S3_KEYS.issuperset(s3) or None in s3.values():
                return False
    return True


def _is_assets(value: Any) -> bool:
    return isinstance(value, dict) and all(
        key in ASSET_KEYS and _asset_fits(key, asset) for key, asset in value.items()
    )


def _string_properties(values: list[Any]) -> list[pa.Array]:
    if not _types(values) <= _DICTS:
        raise _Unfit
    return pa.array(values, type=_STRING_PROPERTIES_TYPE).flatten()


def _is_string_properties(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(name), (str, _NONE)) for name in _STRING_PROPERTIES
    )


def _number_array(values: list[Any]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    if not _types(values) <= _NUMBERS:  # no bool, no numbers written as strings
        raise _Unfit
    array = pa.array(values, type=pa.float64())  # raises beyond ±2**53: rejected either way
    x = array.to_numpy(zero_copy_only=False)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return array, x, valid


def _integers(values: list[Any]) -> pa.Array:
    array, x, valid = _number_array(values)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(x) & (x == np.trunc(x)) & (x >= -(2.0**31)) & (x < 2.0**31)
    if (valid & ~ok).any():
        raise _Unfit
    return array.cast(pa.int32())


def _floats(values: list[Any]) -> pa.Array:
    array, x, valid = _number_array(values)
    if (valid & ~np.isfinite(x)).any():
        raise _Unfit
    return array


def _is_number(name: str, kind: Kind, value: Any) -> bool:
    if type(value) not in (int, float):
        return False
    try:
        _coerce(name, kind, value)
    except _Rejected:
        return False
    return True


def _extras(items: Sequence[dict[str, Any]], properties: list[Any]) -> pa.Array:
    """``stac_extra`` of the items whose only oddity is fields beyond the schema."""
    top = all(map(TOP_LEVEL_FIELDS.issuperset, items))
    props = all(map(PROPERTY_NAMES.issuperset, (p for p in properties if type(p) is dict)))
    if top and props:
        return pa.nulls(len(items), type=pa.string())
    values: list[str | None] = []
    for item, p in zip(items, properties, strict=True):
        extra = {k: v for k, v in item.items() if k not in TOP_LEVEL_FIELDS}
        if type(p) is dict:
            unknown = {k: v for k, v in p.items() if k not in PROPERTY_NAMES}
            if unknown:
                extra["properties"] = unknown
        values.append(orjson.dumps(extra).decode() if extra else None)
    return pa.array(values, type=pa.string())


#: Every position of a batch's geometries as ``(x, y, row)``, as ``shapely.get_coordinates``
#: of the WKB column gives them.
_Positions = tuple[np.ndarray, np.ndarray, np.ndarray]


def _footprints(pairs: list[Any]) -> tuple[pa.Array, pa.Array, _Positions | None]:
    """``geometry`` (WKB) and ``bbox`` of all footprints: Polygons with a 4-number bbox.

    The WKB is :func:`~earthcatalog_dagster.core.wkb.polygons_to_wkb` of all positions at
    once (byte for byte what :func:`geojson_to_wkb` writes), the bbox the item's own. Also
    returns the positions for the geometry checks when shapely is sure to read the WKB back
    (every ring closed, of 4 positions or more), so they need not be decoded again.
    """
    present = [p for p in pairs if p is not None]
    geometries = [g for g, _ in present]
    bboxes = [b for _, b in present]
    if present:
        if _types(geometries) != {dict} or {g.get("type") for g in geometries} != {"Polygon"}:
            raise _Unfit
        polygons = [g.get("coordinates") for g in geometries]
        if _types(polygons) != {list} or _types(bboxes) != {list}:
            raise _Unfit
        if set(map(len, bboxes)) != {4}:
            raise _Unfit
        corners = list(chain.from_iterable(bboxes))
        if not _types(corners) <= _COORDINATE:
            raise _Unfit
        rings = list(chain.from_iterable(polygons))
        if rings and _types(rings) != {list}:
            raise _Unfit
        points = list(chain.from_iterable(rings))
        if points and set(map(len, points)) != {2}:  # also: no empty ring, no 3-D position
            raise _Unfit
        values = list(chain.from_iterable(points))
        if values and not _types(values) <= _COORDINATE:
            raise _Unfit
        ring_counts = np.fromiter(map(len, polygons), dtype=np.int64, count=len(polygons))
        ring_sizes = np.fromiter(map(len, rings), dtype=np.int64, count=len(rings))
        if ring_sizes.size and not ring_sizes.min():
            raise _Unfit
        xy = np.array(values, dtype=np.float64).reshape(-1, 2)
        box = np.array(corners, dtype=np.float64).reshape(-1, 4)
        wkb = polygons_to_wkb(ring_counts, ring_sizes, xy)
    else:
        ring_counts = ring_sizes = np.zeros(0, dtype=np.int64)
        xy = np.zeros((0, 2))
        box = np.zeros((0, 4))
        wkb = pa.array([], type=pa.binary())

    rows = np.flatnonzero([p is not None for p in pairs])
    positions: _Positions | None = None
    ends = np.cumsum(ring_sizes)
    starts = ends - ring_sizes
    if not ring_sizes.size or (
        ring_sizes.min() >= 4 and (xy[starts] == xy[ends - 1]).all()  # NaN: not closed
    ):
        ring_owner = np.repeat(np.arange(len(rows)), ring_counts)
        sizes = np.bincount(ring_owner, weights=ring_sizes, minlength=len(rows))
        positions = (xy[:, 0], xy[:, 1], np.repeat(rows, sizes.astype(np.int64)))
    if len(present) == len(pairs):
        return (
            wkb,
            pa.StructArray.from_arrays(
                [pa.array(box[:, j]) for j in range(4)], fields=_BBOX_FIELDS
            ),
            positions,
        )
    missing = np.ones(len(pairs), dtype=bool)
    missing[rows] = False
    index = np.zeros(len(pairs), dtype=np.int64)
    index[rows] = np.arange(len(rows))
    full = np.zeros((len(pairs), 4))
    full[rows] = box
    bbox = pa.StructArray.from_arrays(
        [pa.array(full[:, j], mask=missing) for j in range(4)],
        fields=_BBOX_FIELDS,
        mask=pa.array(missing),
    )
    return wkb.take(pa.array(index, mask=missing)), bbox, positions


def _is_footprint(pair: tuple[Any, Any]) -> bool:
    geometry, bbox = pair
    if not (
        isinstance(geometry, dict)
        and geometry.get("type") == "Polygon"
        and isinstance(geometry.get("coordinates"), list)
        and isinstance(bbox, list)
        and len(bbox) == 4
        and all(type(v) in _COORDINATE for v in bbox)
    ):
        return False
    return all(
        type(ring) is list
        and ring
        and all(
            type(point) is list and len(point) == 2 and all(type(v) in _COORDINATE for v in point)
            for point in ring
        )
        for ring in geometry["coordinates"]
    )


def _complement(positions: list[int], n: int) -> list[int]:
    """``range(n)`` without ``positions`` (sorted), in order."""
    if not positions:
        return list(range(n))
    if len(positions) == n:
        return []
    taken = set(positions)
    return [i for i in range(n) if i not in taken]


# --- geometry checks (vectorized over a batch) ----------------------------------------------


def _check_geometries(
    table: pa.Table,
    keys: list[str],
    items: list[dict[str, Any]],
    bbox_given: list[bool],
    bad: dict[int, str],
    positions: _Positions | None = None,
) -> tuple[pa.Table, list[Fix]]:
    """Reject impossible coordinates (into ``bad``) and recompute wrong bboxes.

    Returns the table with the recomputed bboxes and the fixes; the fixed items in
    ``items`` are replaced by copies carrying the new bbox. See the module doc.
    ``positions``: the coordinates of the geometry column when the caller has them already
    (the fast path), else the column is decoded here.
    """
    column = table["geometry"]
    if column.null_count == len(column):
        return table, []
    if positions is None:
        geometries = _decode_geometries(column, bad)
        coords, owner = shapely.get_coordinates(geometries, return_index=True)
        x, y = coords[:, 0], coords[:, 1]
    else:
        x, y, owner = positions
        geometries = None
    if not len(x):
        return table, []
    n = table.num_rows

    finite = np.isfinite(x) & np.isfinite(y)
    _first_offence(~finite, owner, x, y, bad, "non-finite coordinate")
    _first_offence(np.abs(y) > 90.0, owner, x, y, bad, "latitude outside [-90, 90]")
    inside = np.abs(x) <= 180.0
    has_inside = np.bincount(owner, weights=inside, minlength=n) > 0
    wild = (np.abs(x) > 360.0) | (~inside & ~has_inside[owner])
    _first_offence(
        wild & finite,
        owner,
        x,
        y,
        bad,
        "longitude outside [-180, 180] (beyond it only as a footprint continued across the"
        " antimeridian from inside)",
    )

    given = np.asarray(bbox_given, dtype=bool)
    if not given.any():
        return table, []
    bbox = table["bbox"].combine_chunks()
    xmin, ymin, xmax, ymax = (
        bbox.field(axis).to_numpy(zero_copy_only=False) for axis in _BBOX_AXES
    )
    contained = _in_bbox(x, y, xmin[owner], ymin[owner], xmax[owner], ymax[owner])
    outside = np.bincount(owner, weights=~contained, minlength=n) > 0
    checked = given & outside
    if bad:
        checked[list(bad)] = False
    rows = np.flatnonzero(checked)
    if not len(rows):
        return table, []

    starts = np.searchsorted(owner, rows, side="left")
    ends = np.searchsorted(owner, rows, side="right")
    new_values = [xmin.copy(), ymin.copy(), xmax.copy(), ymax.copy()]
    fixes: list[Fix] = []
    for row, start, end in zip(rows.tolist(), starts.tolist(), ends.tolist(), strict=True):
        first = start + int(np.argmin(contained[start:end]))
        old = [float(xmin[row]), float(ymin[row]), float(xmax[row]), float(ymax[row])]
        geometry = (
            geometries[row] if geometries is not None else shapely.from_wkb(column[row].as_py())
        )
        new = _recomputed_bbox(x[start:end], y[start:end], geometry)
        for values, value in zip(new_values, new, strict=True):
            values[row] = value
        items[row] = {**items[row], "bbox": list(new)}
        fixes.append(
            Fix(
                keys[row],
                f"bbox {old} does not contain the geometry (position"
                f" [{float(x[first])!r}, {float(y[first])!r}] lies outside it): recomputed"
                f" from the geometry as {list(new)}",
            )
        )
    fixed = pa.StructArray.from_arrays(
        [pa.array(v, type=pa.float64()) for v in new_values],
        names=list(_BBOX_AXES),
        mask=bbox.is_null(),
    )
    index = table.column_names.index("bbox")
    return table.set_column(index, table.schema.field(index), fixed.cast(BBOX_TYPE)), fixes


def _decode_geometries(column: pa.ChunkedArray, bad: dict[int, str]) -> np.ndarray:
    """The WKB column as shapely geometries; a geometry GEOS cannot build (a polygon ring
    that is not closed or has fewer than 4 positions, RFC 7946 §3.1.6) is recorded in
    ``bad`` with GEOS's reason, and left out of the coordinate checks."""
    wkb = column.to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):  # NaN coordinates: reported later, not warned
        geometries = shapely.from_wkb(wkb, on_invalid="ignore")
    for row in np.flatnonzero(shapely.is_missing(geometries) & (wkb != None)).tolist():  # noqa: E711
        try:
            shapely.from_wkb(wkb[row])
            reason = "GEOS could not build it"
        except shapely.errors.GEOSException as exc:
            reason = str(exc).removeprefix("IllegalArgumentException: ").strip()
        bad.setdefault(row, f"invalid geometry: {reason}")
    return geometries


def _first_offence(
    mask: np.ndarray,
    owner: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    bad: dict[int, str],
    what: str,
) -> None:
    """Record ``what`` and the first offending position of each row with one in ``mask``."""
    positions = np.flatnonzero(mask)
    if not len(positions):
        return
    rows, first = np.unique(owner[positions], return_index=True)
    for row, j in zip(rows.tolist(), positions[first].tolist(), strict=True):
        position = f"[{float(x[j])}, {float(y[j])}]"
        bad.setdefault(row, f"invalid geometry: {what}: position {position}")


def _in_bbox(
    x: np.ndarray,
    y: np.ndarray,
    xmin: np.ndarray,
    ymin: np.ndarray,
    xmax: np.ndarray,
    ymax: np.ndarray,
) -> np.ndarray:
    """Per position: inside its bbox, RFC 7946 style (``xmin > xmax`` crosses ±180).

    A position written past ±180 matches once shifted by 360; NaN bounds match nothing.
    """
    lat = (y >= ymin - _BBOX_SLACK) & (y <= ymax + _BBOX_SLACK)
    plain = xmin <= xmax
    lon = np.zeros(len(x), dtype=bool)
    for shifted in (x, x - 360.0, x + 360.0):
        low = shifted >= xmin - _BBOX_SLACK
        high = shifted <= xmax + _BBOX_SLACK
        lon |= np.where(plain, low & high, False)
    wrapped = np.where(x > 180.0, x - 360.0, np.where(x < -180.0, x + 360.0, x))
    crossing = (wrapped >= xmin - _BBOX_SLACK) | (wrapped <= xmax + _BBOX_SLACK)
    lon |= np.where(plain, False, crossing)
    return lat & lon & np.isfinite(xmin) & np.isfinite(xmax)


def _recomputed_bbox(
    x: np.ndarray, y: np.ndarray, geometry: shapely.Geometry
) -> tuple[float, float, float, float]:
    """The tightest RFC 7946 bbox of one geometry's positions (see the module doc)."""
    south, north = float(y.min()), float(y.max())
    for part in shapely.get_parts(geometry):
        if isinstance(part, shapely.Polygon):
            ring = part.exterior.coords
            winding = ring_winding(ring)
            if winding:
                if sum(lat for _lon, lat, *_z in ring) >= 0.0:
                    return -180.0, south, 180.0, 90.0
                return -180.0, -90.0, 180.0, north
    wrapped = np.where(x > 180.0, x - 360.0, np.where(x < -180.0, x + 360.0, x))
    lons = np.unique(wrapped)
    gaps = np.diff(np.append(lons, lons[0] + 360.0))
    widest = int(np.argmax(gaps))
    if gaps[-1] >= gaps[widest]:  # the widest gap is at ±180: no crossing
        return float(lons[0]), south, float(lons[-1]), north
    return float(lons[widest + 1]), south, float(lons[widest]), north


def _links(links: Any, extra: dict[str, Any]) -> list[dict[str, Any]] | None:
    if links is None:
        return None
    if isinstance(links, list) and all(
        isinstance(link, dict)
        and set(link) <= set(LINK_FIELDS)
        and all(isinstance(v, str) for v in link.values())
        for link in links
    ):
        return links
    extra["links"] = links
    return None


def _assets(assets: Any, extra: dict[str, Any]) -> dict[str, Any] | None:
    if assets is None:
        return None
    if not isinstance(assets, dict):
        extra["assets"] = assets
        return None
    known: dict[str, Any] = {}
    odd: dict[str, Any] = {}
    for key, asset in assets.items():
        if key in ASSET_KEYS and _asset_fits(key, asset):
            known[key] = asset
        else:
            odd[key] = asset
    if odd:
        extra["assets"] = odd
    return known


def _asset_fits(key: str, asset: Any) -> bool:
    if not isinstance(asset, dict):
        return False
    allowed = set(ASSET_FIELDS) | ({"alternate"} if key == "data" else set())
    if not set(asset) <= allowed:
        return False
    roles = asset.get("roles")
    if roles is not None and not (
        isinstance(roles, list) and all(isinstance(r, str) for r in roles)
    ):
        return False
    if not all(isinstance(asset.get(f), (str, type(None))) for f in ("href", "type", "title")):
        return False
    alternate = asset.get("alternate")
    if alternate is None:
        return True
    s3 = alternate.get("s3") if isinstance(alternate, dict) else None
    return (
        set(alternate) == {"s3"}
        and isinstance(s3, dict)
        and set(s3) <= {"href", "alternate:name"}
        and all(isinstance(v, str) for v in s3.values())
    )


def _coerce(name: str, kind: Kind, value: Any) -> Any:
    """A value of the schema's type, when the conversion loses nothing; else reject."""
    if value is None:
        return None
    if kind is Kind.STRING or kind is Kind.TIMESTAMP:
        if isinstance(value, str):
            return value
        raise _Rejected(f"property {name!r} should be a string, got {value!r}")
    if isinstance(value, bool):
        raise _Rejected(f"property {name!r} should be a number, got {value!r}")
    if kind is Kind.INTEGER:
        number = _number(name, value)
        if isinstance(number, float):
            if not number.is_integer():
                raise _Rejected(f"property {name!r} should be a whole number, got {value!r}")
            number = int(number)
        if not -(2**31) <= number < 2**31:
            raise _Rejected(f"property {name!r} is out of the int32 range: {value!r}")
        return number
    number = _number(name, value)
    if isinstance(number, int) and abs(number) > 2**53:
        raise _Rejected(f"property {name!r} cannot be stored as a double exactly: {value!r}")
    return float(number)


def _number(name: str, value: Any) -> int | float:
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise _Rejected(f"property {name!r} is not finite: {value!r}")
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise _Rejected(f"property {name!r} should be a number, got {value!r}") from None
        if math.isfinite(number):
            return number
    raise _Rejected(f"property {name!r} should be a number, got {value!r}")


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
