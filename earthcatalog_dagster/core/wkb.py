"""GeoJSON geometry ↔ ISO WKB, fast for the footprints we see (2-D Polygons).

Writing WKB directly from coordinate lists is several times faster than building a
shapely object per item; anything unusual (3-D coordinates, collections) goes through
shapely, so every valid GeoJSON geometry is supported.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import shapely

_POLYGON = 3
_MULTIPOLYGON = 6
_HEADER = struct.Struct("<BI")
_COUNT = struct.Struct("<I")


class GeometryError(ValueError):
    """A geometry that is not valid GeoJSON."""


def _ring_bytes(ring: Any) -> bytes:
    coords = np.asarray(ring, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise _NotSimple
    return _COUNT.pack(len(coords)) + coords.tobytes()


def _polygon_bytes(rings: Any) -> bytes:
    return _HEADER.pack(1, _POLYGON) + _COUNT.pack(len(rings)) + b"".join(map(_ring_bytes, rings))


class _NotSimple(Exception):
    pass


def geojson_to_wkb(geometry: dict[str, Any]) -> bytes:
    """ISO WKB (little endian) of a GeoJSON geometry dict."""
    kind = geometry.get("type") if isinstance(geometry, dict) else None
    try:
        if kind == "Polygon":
            return _polygon_bytes(geometry["coordinates"])
        if kind == "MultiPolygon":
            parts = geometry["coordinates"]
            return (
                _HEADER.pack(1, _MULTIPOLYGON)
                + _COUNT.pack(len(parts))
                + b"".join(map(_polygon_bytes, parts))
            )
    except (_NotSimple, KeyError, TypeError, ValueError):
        pass
    try:
        return shapely.to_wkb(shapely.geometry.shape(geometry), flavor="iso")
    except Exception as exc:  # shapely raises a zoo of types for bad input
        raise GeometryError(f"invalid GeoJSON geometry ({kind!r}): {exc}") from exc


def geometry_bounds(geometry: dict[str, Any]) -> tuple[float, float, float, float]:
    """``(xmin, ymin, xmax, ymax)`` of a GeoJSON geometry's coordinates."""
    coords = _flatten(geometry.get("coordinates"))
    if coords.size == 0:
        raise GeometryError("geometry has no coordinates")
    xs, ys = coords[:, 0], coords[:, 1]
    return float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())


def _flatten(coordinates: Any) -> np.ndarray:
    points: list[Any] = []

    def walk(node: Any) -> None:
        if node and isinstance(node[0], (int, float)):
            points.append(node[:2])
        else:
            for child in node or ():
                walk(child)

    walk(coordinates)
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)
