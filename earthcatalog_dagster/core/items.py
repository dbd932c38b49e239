"""STAC item JSON ⇄ Arrow rows of the warehouse schema.

``parse_items`` turns raw object bodies into one Arrow table in the schema of
:mod:`~earthcatalog_dagster.core.schema` (without ``grid_partition``: rows get their cell
when they are fanned out). A body that is not a usable STAC item becomes a :class:`Reject`
with a reason instead of an exception, so a run never loses track of it.
``table_to_items`` is the inverse: the exact source item, ``stac_extra`` merged back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

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


@dataclass(frozen=True)
class Reject:
    """An object that could not be ingested, and why."""

    key: str
    reason: str


@dataclass
class ParsedItems:
    """Items of one batch as Arrow rows, aligned with their GeoJSON geometries."""

    table: pa.Table
    geometries: list[dict[str, Any] | None]
    keys: list[str]
    rejects: list[Reject]
    items: list[dict[str, Any]]


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
    """Validate and coerce already decoded items (e.g. NDJSON lines) into warehouse rows."""
    table, geometries, kept, more_rejects, kept_items = _items_to_table(items, keys)
    return ParsedItems(table, geometries, kept, (rejects or []) + more_rejects, kept_items)


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
) -> tuple[pa.Table, list[dict[str, Any] | None], list[str], list[Reject], list[dict[str, Any]]]:
    columns: dict[str, list[Any]] = {name: [] for name in ITEM_SCHEMA.names}
    geometries: list[dict[str, Any] | None] = []
    kept: list[str] = []
    kept_items: list[dict[str, Any]] = []
    rejects: list[Reject] = []
    for item, key in zip(items, keys, strict=True):
        try:
            row = _row(item)
        except _Rejected as exc:
            rejects.append(Reject(key, str(exc)))
            continue
        for name, value in row.items():
            columns[name].append(value)
        geometries.append(item.get("geometry"))
        kept.append(key)
        kept_items.append(item)

    table, bad_rows = _build_table(columns)
    if bad_rows:
        keep = [i for i in range(table.num_rows) if i not in bad_rows]
        rejects += [Reject(kept[i], reason) for i, reason in sorted(bad_rows.items())]
        table = table.take(pa.array(keep, type=pa.int64()))
        geometries = [geometries[i] for i in keep]
        kept = [kept[i] for i in keep]
        kept_items = [kept_items[i] for i in keep]
    return table, geometries, kept, rejects, kept_items


def _row(item: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = {k: v for k, v in item.items() if k not in TOP_LEVEL_FIELDS}
    properties = item.get("properties") or {}
    unknown = {k: v for k, v in properties.items() if k not in PROPERTY_NAMES}
    if unknown:
        extra["properties"] = unknown

    geometry = item.get("geometry")
    if geometry is None:
        wkb, bbox = None, None
    else:
        try:
            wkb = geojson_to_wkb(geometry)
            bbox = _bbox(item.get("bbox"), geometry, extra)
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
    return row


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


def _bbox(bbox: Any, geometry: dict[str, Any], extra: dict[str, Any]) -> dict[str, float]:
    if (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)
    ):
        return dict(zip(("xmin", "ymin", "xmax", "ymax"), map(float, bbox), strict=True))
    if bbox is not None:
        extra["bbox"] = bbox
    return dict(zip(("xmin", "ymin", "xmax", "ymax"), geometry_bounds(geometry), strict=True))


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
