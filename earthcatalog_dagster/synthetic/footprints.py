"""Footprints: the regions ITS_LIVE covers and the projected rectangles drawn in them.

A footprint is a rectangle in the pair's projection (UTM, or polar stereographic
EPSG:3413 / EPSG:3031) reprojected to lon/lat with five points per edge, exactly as ITS_LIVE
builds it, so some footprints cross the antimeridian and a few encircle a pole. The
projections are the spherical forms written out here: no pyproj needed.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass

import numpy as np

from earthcatalog_dagster.synthetic.base import _Draws

_R = 6_371_008.8  # mean Earth radius (m): spherical projections are plenty for footprints
_DEG = 111_195.0  # metres per degree of great-circle arc


# --- regions --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """Where footprints are drawn: a lat/lon box, a weight, a projection and a footprint kind.

    ``crs`` is ``"utm"`` (zone of the footprint centre), ``"3413"`` or ``"3031"``.
    ``kind``: ``"box"`` (ordinary), ``"antimeridian"`` (always crosses ±180°),
    ``"near_pole"`` (centre at |lat| 84–89, pole outside) or ``"pole"`` (encircles it).
    """

    lat: tuple[float, float]
    lon: tuple[float, float]
    weight: float
    crs: str
    kind: str = "box"


REGIONS: dict[str, Region] = {
    "greenland": Region((60.5, 81.5), (-72.0, -20.0), 0.22, "3413"),
    "antarctica": Region((-82.0, -63.0), (-180.0, 180.0), 0.17, "3031"),
    "alaska_yukon": Region((58.0, 64.0), (-156.0, -132.0), 0.16, "utm"),
    "arctic_canada": Region((66.0, 81.0), (-95.0, -62.0), 0.08, "utm"),
    "svalbard": Region((77.0, 80.3), (10.0, 28.0), 0.05, "utm"),
    "iceland": Region((63.6, 65.8), (-23.5, -14.5), 0.04, "utm"),
    "patagonia": Region((-54.5, -46.5), (-75.5, -71.5), 0.07, "utm"),
    "high_mountain_asia": Region((27.5, 44.5), (70.0, 98.0), 0.12, "utm"),
    "alps": Region((45.5, 47.5), (6.0, 14.0), 0.03, "utm"),
    "chukotka_aleutians": Region((51.5, 66.5), (179.0, -179.0), 0.02, "utm", "antimeridian"),
    "north_near_pole": Region((84.0, 89.0), (-180.0, 180.0), 0.01, "3413", "near_pole"),
    "south_near_pole": Region((-89.0, -84.0), (-180.0, 180.0), 0.01, "3031", "near_pole"),
    "north_pole": Region((88.0, 90.0), (-180.0, 180.0), 0.002, "3413", "pole"),
    "south_pole": Region((-90.0, -88.0), (-180.0, 180.0), 0.002, "3031", "pole"),
}
_POLAR_REGIONS = {
    "north": "north_near_pole",
    "south": "south_near_pole",
    "north_pole": "north_pole",
    "south_pole": "south_pole",
}
_REGION_NAMES = tuple(REGIONS)
_REGION_CUM = list(np.cumsum([r.weight for r in REGIONS.values()]))
#: Footprints forced into every generated day (when ``n`` allows), so the demo and the tests
#: always exercise the awkward geometries: (region name, how many).
_SPECIALS = (
    ("north_pole", 1),
    ("south_pole", 1),
    ("chukotka_aleutians", 2),
    ("north_near_pole", 1),
    ("south_near_pole", 1),
)


# --- projections (spherical; footprints only need to look like their real counterparts) -----


def _tm_forward(lon: float, lat: float, lon0: float) -> tuple[float, float]:
    """Spherical transverse Mercator (a UTM zone without its scale factor and offsets)."""
    lam = math.radians(lon - lon0)
    phi = math.radians(lat)
    b = math.cos(phi) * math.sin(lam)
    return _R * math.atanh(b), _R * math.atan2(math.tan(phi), math.cos(lam))


def _tm_inverse(x: float, y: float, lon0: float) -> tuple[float, float]:
    d = y / _R
    lon = lon0 + math.degrees(math.atan2(math.sinh(x / _R), math.cos(d)))
    return lon, math.degrees(math.asin(math.sin(d) / math.cosh(x / _R)))


def _ps_forward(lon: float, lat: float, south: bool) -> tuple[float, float]:
    """Spherical polar stereographic in the axes of EPSG:3413 (north) or EPSG:3031 (south)."""
    if south:
        rho = 2 * _R * math.tan(math.pi / 4 + math.radians(lat) / 2)
        lam = math.radians(lon)
        return rho * math.sin(lam), rho * math.cos(lam)
    rho = 2 * _R * math.tan(math.pi / 4 - math.radians(lat) / 2)
    lam = math.radians(lon + 45.0)
    return rho * math.sin(lam), -rho * math.cos(lam)


def _ps_inverse(x: float, y: float, south: bool) -> tuple[float, float]:
    colat = 90.0 - math.degrees(2 * math.atan(math.hypot(x, y) / (2 * _R)))
    if south:
        return math.degrees(math.atan2(x, y)), -colat
    return math.degrees(math.atan2(x, -y)) - 45.0, colat


def _wrap(lon: float) -> float:
    """Longitude in [-180, 180), never exactly ±180 once rounded to 4 decimals."""
    if not -179.99995 <= lon < 179.99995:
        lon = (lon + 180.0) % 360.0 - 180.0
        if lon < -179.99995:
            return -179.9999
        if lon >= 179.99995:
            return 179.9999
    return lon


@dataclass
class Footprint:
    """A footprint in lon/lat: the closed ring, its RFC 7946 bbox and its centre."""

    ring: list[list[float]]
    bbox: list[float]
    center: tuple[float, float]  # (lon, lat)
    epsg: int
    crosses_antimeridian: bool
    encircles_pole: bool


_FRACS = (0.0, 0.25, 0.5, 0.75)


def _unit_ring() -> list[tuple[float, float]]:
    """The densified ring of the square [-1, 1]², counter-clockwise from LL, then its centre."""
    corners = ((-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0))
    points = [
        (xa + f * (xb - xa), ya + f * (yb - ya))
        for (xa, ya), (xb, yb) in zip(corners, corners[1:] + corners[:1], strict=True)
        for f in _FRACS
    ]
    return [*points, (0.0, 0.0)]


_UNIT = _unit_ring()


def _footprint(draw: _Draws, region: Region) -> Footprint:
    """Draw a projected rectangle in ``region`` and reproject it, ITS_LIVE style.

    The ring runs LL → LR → UR → UL → LL in the projection (counter-clockwise), with the
    corners and three points between them on each edge, rounded to 4 decimals.
    """
    kind = region.kind
    south = region.lat[0] < 0
    if region.crs == "utm":
        lat_c = draw.uniform(*region.lat)
        # An antimeridian box is centred on 180° here and shifted once its width is known.
        lon_c = 180.0 if kind == "antimeridian" else draw.uniform(*region.lon)
        width = _DEG * draw.uniform(1.0, 2.5)
        height = _DEG * draw.uniform(1.0, 2.5)
        if kind == "antimeridian":
            half_deg = width / 2 / (_DEG * math.cos(math.radians(lat_c)))
            lon_c = _wrap(180.0 + draw.uniform(-0.7, 0.7) * half_deg)
        zone = int((lon_c + 180.0) // 6.0) % 60 + 1
        lon0 = zone * 6.0 - 183.0
        epsg = (32700 if lat_c < 0 else 32600) + zone
        x0, y0 = _tm_forward(lon_c, lat_c, lon0)
    else:
        epsg = 3031 if south else 3413
        if kind == "pole":
            # Centre within 50 km of the pole, half sizes so that the pole is inside and every
            # corner stays within 215 km of it (|lat| > 88.06 all around).
            rho_c = draw.uniform(5_000.0, 50_000.0)
            theta = draw.uniform(0.0, 2 * math.pi)
            x0, y0 = rho_c * math.cos(theta), rho_c * math.sin(theta)
            top = (215_000.0 - rho_c) / math.sqrt(2.0)
            width = 2 * draw.uniform(abs(x0) + 8_000.0, top)
            height = 2 * draw.uniform(abs(y0) + 8_000.0, top)
        else:
            lat_c = draw.uniform(*region.lat)
            lon_c = draw.uniform(*region.lon)
            x0, y0 = _ps_forward(lon_c, lat_c, south)
            width = _DEG * draw.uniform(1.0, 2.5)
            height = _DEG * draw.uniform(1.0, 2.5)
            if kind == "near_pole":  # keep the pole outside the box
                limit = 2 * 0.7 * math.hypot(x0, y0) / math.sqrt(2.0)
                width, height = min(width, limit), min(height, limit)

    # The 16 ring points (LL → LR → UR → UL, three between corners), then the centre.
    # Plain floats: for 17 points this beats numpy's per-call overhead by about 40 %.
    hw, hh = width / 2, height / 2
    points = [(x0 + hw * ux, y0 + hh * uy) for ux, uy in _UNIT]
    if region.crs == "utm":
        lonlat = [_tm_inverse(x, y, lon0) for x, y in points]
    else:
        lonlat = [_ps_inverse(x, y, south) for x, y in points]
    ring = [[round(_wrap(lon), 4), round(lat, 4)] for lon, lat in lonlat]
    center = ring.pop()
    ring.append(list(ring[0]))

    # Unwrap the longitudes to see what the ring does at ±180°.
    unwrapped = [ring[0][0]]
    for (a, _), (b, _) in itertools.pairwise(ring):
        d = b - a
        d -= 360.0 if d > 180.0 else (-360.0 if d < -180.0 else 0.0)
        unwrapped.append(unwrapped[-1] + d)
    lats = [p[1] for p in ring]
    encircles = abs(unwrapped[-1] - unwrapped[0]) > 180.0  # ±360 round a pole, else 0
    west, east = min(unwrapped), max(unwrapped)
    crosses = not encircles and (west < -180.0 or east > 180.0)
    if encircles:
        bbox = [-180.0, -90.0, 180.0, max(lats)] if south else [-180.0, min(lats), 180.0, 90.0]
    elif crosses:
        bbox = [round(_wrap(west), 4), min(lats), round(_wrap(east), 4), max(lats)]
    else:
        lons = [p[0] for p in ring]
        bbox = [min(lons), min(lats), max(lons), max(lats)]
    return Footprint(ring, bbox, (center[0], center[1]), epsg, crosses, encircles)


def region_tile(lat: float, lon: float) -> str:
    """The ITS_LIVE 10° directory of a footprint centre, e.g. ``N60W140`` (truncated, as theirs)."""
    ns = "N" if lat >= 0.0 else "S"
    ew = "E" if lon >= 0.0 else "W"
    rlat = min(int(10 * math.trunc(abs(lat) / 10.0)), 80)
    rlon = min(int(10 * math.trunc(abs(lon) / 10.0)), 170)
    return f"{ns}{rlat:02d}{ew}{rlon:03d}"


def _region_for(draw: _Draws, region: str | None, polar: str | None, antimeridian: bool) -> Region:
    """The region asked for (``polar``, ``antimeridian``, ``region``), else one drawn by weight."""
    if polar is not None:
        try:
            return REGIONS[_POLAR_REGIONS[polar]]
        except KeyError:
            raise ValueError(
                f"polar must be one of {sorted(_POLAR_REGIONS)}, not {polar!r}"
            ) from None
    if antimeridian:
        return REGIONS["chukotka_aleutians"]
    if region is not None:
        try:
            return REGIONS[region]
        except KeyError:
            raise ValueError(f"unknown region {region!r}; one of {_REGION_NAMES}") from None
    i = bisect.bisect_right(_REGION_CUM, draw() * _REGION_CUM[-1])
    return REGIONS[_REGION_NAMES[min(i, len(_REGION_NAMES) - 1)]]
