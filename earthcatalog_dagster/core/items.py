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
from earthcatalog_dagster.core.wkb import GeometryError, geojson_to_wkb, geometry_bounds

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
    items: Sequence[dict[str, Any]], keys: Sequence[str]
) -> tuple[
    pa.Table, list[dict[str, Any] | None], list[str], list[Reject], list[dict[str, Any]], list[Fix]
]:
    columns: dict[str, list[Any]] = {name: [] for name in ITEM_SCHEMA.names}
    geometries: list[dict[str, Any] | None] = []
    kept: list[str] = []
    kept_items: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    bbox_given: list[bool] = []
    for item, key in zip(items, keys, strict=True):
        try:
            row, given = _row(item)
        except _Rejected as exc:
            rejects.append(Reject(key, str(exc)))
            continue
        for name, value in row.items():
            columns[name].append(value)
        geometries.append(item.get("geometry"))
        kept.append(key)
        kept_items.append(item)
        bbox_given.append(given)

    table, bad_rows = _build_table(columns)
    table, fixes = _check_geometries(table, kept, kept_items, bbox_given, bad_rows)
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


# --- geometry checks (vectorized over a batch) ----------------------------------------------


def _check_geometries(
    table: pa.Table,
    keys: list[str],
    items: list[dict[str, Any]],
    bbox_given: list[bool],
    bad: dict[int, str],
) -> tuple[pa.Table, list[Fix]]:
    """Reject impossible coordinates (into ``bad``) and recompute wrong bboxes.

    Returns the table with the recomputed bboxes and the fixes; the fixed items in
    ``items`` are replaced by copies carrying the new bbox. See the module doc.
    """
    column = table["geometry"]
    if column.null_count == len(column):
        return table, []
    with np.errstate(invalid="ignore"):  # NaN coordinates: reported below, not warned
        geometries = shapely.from_wkb(column.to_numpy(zero_copy_only=False))
    coords, owner = shapely.get_coordinates(geometries, return_index=True)
    if not len(coords):
        return table, []
    x, y = coords[:, 0], coords[:, 1]
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
        new = _recomputed_bbox(x[start:end], y[start:end], geometries[row])
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


def _build_table(columns: dict[str, list[Any]]) -> tuple[pa.Table, dict[int, str]]:
    """Columns → table; timestamps parse in bulk, and rows Arrow cannot parse are named."""
    bad: dict[int, str] = {}
    arrays = []
    for field in ITEM_SCHEMA:
        values = columns[field.name]
        if field.type == TIMESTAMP:
            arrays.append(_timestamps(field.name, values, bad))
        elif field.name == "assets":
            arrays.append(pa.array(values, type=ASSETS_TYPE))
        elif field.name == "links":
            arrays.append(pa.array(values, type=pa.list_(LINK_TYPE)))
        elif field.name == "bbox":
            arrays.append(pa.array(values, type=BBOX_TYPE))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=ITEM_SCHEMA), bad


def _timestamps(name: str, values: list[str | None], bad: dict[int, str]) -> pa.Array:
    strings = pa.array(values, type=pa.string())
    try:
        return strings.cast(TIMESTAMP)
    except pa.ArrowInvalid:
        pass
    parsed = []
    for row, value in enumerate(values):
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
