"""The exact per-item rules: one STAC item dict → one warehouse row, or a rejection.

This is the reference path of :func:`~earthcatalog_dagster.core.items.parse_items`: every
item the column-wise fast path (:mod:`~earthcatalog_dagster.core.item_columns`) cannot
vouch for is parsed here, alone, and the fast path must give exactly the rows this path
gives. The rules:

* a body that is an S3 error page, not JSON, not an object, without a string ``id``, not
  a ``Feature`` or with non-object ``properties`` is rejected (:func:`_decode`);
* a schema property of the wrong type is converted when nothing is lost (``"85"`` → 85,
  ``16.0`` → 16), else the item is rejected with a reason naming it (:func:`_coerce`);
* anything beyond the schema (extra properties, unknown assets, odd links, top-level
  members, a top-level value of the wrong type) is kept as JSON in ``stac_extra``;
* a geometry GeoJSON cannot turn into WKB rejects the item; a ``bbox`` that is not four
  numbers is computed from the geometry (the original kept in ``stac_extra``).
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from earthcatalog_dagster.core.schema import (
    ASSET_FIELDS,
    ASSET_KEYS,
    LINK_FIELDS,
    PROPERTIES,
    PROPERTY_NAMES,
    TOP_LEVEL_FIELDS,
    Kind,
)
from earthcatalog_dagster.core.wkb import GeometryError, geojson_to_wkb, geometry_bounds

_ERROR_PAGE = re.compile(rb"<Code>([^<]*)</Code>")
_BBOX_AXES = ("xmin", "ymin", "xmax", "ymax")


class _Rejected(Exception):
    """An item that cannot be ingested; the message is the reject's reason."""


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
