"""GeoJSON geometry ↔ ISO WKB, fast for the footprints we see (2-D Polygons).

Writing WKB directly from coordinate lists is several times faster than building a
shapely object per item; anything unusual (3-D coordinates, collections) goes through
shapely, so every valid GeoJSON geometry is supported.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pyarrow as pa
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


def polygons_to_wkb(
    ring_counts: np.ndarray, ring_sizes: np.ndarray, xy: np.ndarray
) -> pa.BinaryArray:
    """ISO WKB of many 2-D Polygons at once, byte for byte what :func:`geojson_to_wkb` writes.

    ``ring_counts[i]`` is the number of rings of polygon ``i``, ``ring_sizes`` the number of
    positions of each ring (polygons in order, rings in order), ``xy`` all positions
    (``float64``, shape ``(n, 2)``). The bytes are laid out with NumPy in one buffer: no
    Python per polygon.
    """
    ring_counts = np.asarray(ring_counts, dtype=np.int64)
    ring_sizes = np.asarray(ring_sizes, dtype=np.int64)
    n = len(ring_counts)
    owner = np.repeat(np.arange(n), ring_counts)  # polygon of each ring
    ring_bytes = 4 + 16 * ring_sizes
    sizes = 9 + np.bincount(owner, weights=ring_bytes, minlength=n).astype(np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    ring_ends = np.cumsum(ring_bytes)
    first_ring = np.cumsum(ring_counts) - ring_counts
    ring_base = np.concatenate(([0], ring_ends))[first_ring]  # bytes of rings before
    ring_offsets = offsets[:-1][owner] + 9 + (ring_ends - ring_bytes) - ring_base[owner]

    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    header = np.zeros(len(data), dtype=bool)
    _put_u32(data, header, offsets[:-1] + 1, np.full(n, _POLYGON))
    _put_u32(data, header, offsets[:-1] + 5, ring_counts)
    _put_u32(data, header, ring_offsets, ring_sizes)
    data[offsets[:-1]] = 1  # little endian
    header[offsets[:-1]] = True
    data[~header] = np.ascontiguousarray(xy, dtype="<f8").view(np.uint8).reshape(-1)
    if offsets[-1] >= 2**31:
        raise ValueError("WKB of the batch exceeds 2 GiB")
    return pa.Array.from_buffers(
        pa.binary(),
        n,
        [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)],
    )


def _put_u32(data: np.ndarray, header: np.ndarray, at: np.ndarray, values: np.ndarray) -> None:
    """Write little-endian uint32 ``values`` at byte offsets ``at`` and mark them header."""
    where = (np.asarray(at, dtype=np.int64)[:, None] + np.arange(4)).reshape(-1)
    data[where] = np.asarray(values, dtype="<u4").view(np.uint8)
    header[where] = True


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
