"""A realistic synthetic ITS_LIVE: STAC items, their objects, and the S3 Inventory listing them.

The demo, the tests and the benchmarks all run on this data instead of the real bucket, so
it imitates the real thing closely (see ``ITSLIVE.md``):

- :func:`make_item` builds one STAC 1.1 item of a velocity image pair: a real-looking
  granule id made from its two scene ids, the ITS_LIVE properties, three assets and four
  links. Its footprint is a rectangle in the pair's projection (UTM, or polar stereographic
  EPSG:3413 / EPSG:3031) reprojected to lon/lat with five points per edge, exactly as
  ITS_LIVE builds it — so some footprints cross the antimeridian and a few encircle a pole.
  The projections are the spherical forms written out here: no pyproj needed.
- :func:`generate_day` writes one day of new objects (plus a few deliberately bad ones,
  listed in :attr:`GeneratedDay.expected`) under a source root, through
  :mod:`~earthcatalog_dagster.core.storage`, so the root may be a folder or ``s3://``.
- :func:`write_inventory` writes the S3 Inventory of a date (Parquet or gzip CSV data files,
  ``manifest.json``, ``manifest.checksum``), and :func:`generate_demo` ties both together
  under an ``$EARTHCATALOG_HOME``.

Everything is deterministic for a given seed: a seeded :class:`numpy.random.Generator`
draws every random choice, and no wall clock is read.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import gc
import gzip
import hashlib
import io
import itertools
import math
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from earthcatalog_dagster import layout
from earthcatalog_dagster.core.storage import write_bytes

SOURCE_BUCKET = "its-live-data"
COLLECTION = "itslive-granules"
INVENTORY_BUCKET = "its-live-inventory"
#: ``<source bucket>/<inventory configuration id>``: the destination prefix of the inventory.
INVENTORY_PREFIX = f"{SOURCE_BUCKET}/daily"
INVENTORY_VERSION = "2016-11-30"

HTTPS_ROOT = f"https://{SOURCE_BUCKET}.s3.amazonaws.com"
STAC_API = "https://stac.itslive.cloud"
STAC_VERSION = "1.1.0"
STAC_EXTENSIONS = (
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/alternate-assets/v1.2.0/schema.json",
    "https://stac-extensions.github.io/version/v1.2.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
)
ITEM_SUFFIX = ".stac.json"

#: The kinds of bad objects :func:`generate_day` adds, in :attr:`GeneratedDay.expected`.
BAD_KINDS = (
    "null_geometry",
    "coercible",
    "uncoercible",
    "truncated",
    "error_page",
    "missing",
    "no_id",
)
#: Bad kinds whose items are still valid and belong in the warehouse.
GOOD_BAD_KINDS = ("null_geometry", "coercible")

PARQUET_FILE_SCHEMA = (
    "message s3.inventory { required binary bucket (UTF8); required binary key (UTF8); "
    "optional int64 size; optional int64 last_modified_date (TIMESTAMP_MILLIS); "
    "optional binary e_tag (UTF8);}"
)
CSV_FILE_SCHEMA = "Bucket, Key, Size, LastModifiedDate, ETag"
INVENTORY_PARQUET_SCHEMA = pa.schema(
    [
        pa.field("bucket", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=False),
        pa.field("size", pa.int64()),
        pa.field("last_modified_date", pa.timestamp("ms", tz="UTC")),
        pa.field("e_tag", pa.string()),
    ]
)

_R = 6_371_008.8  # mean Earth radius (m): spherical projections are plenty for footprints
_DEG = 111_195.0  # metres per degree of great-circle arc
_UTC = dt.UTC
_EPOCH_FLOOR = dt.date(1985, 1, 1)
RECENT_SHARE = 0.9  # share of a day's new pairs acquired in the two years before it
_LATEST = dt.date(2026, 12, 31)
_UINTS = 64  # uniform draws per make_item call (one numpy call per item keeps it fast)
_WRITE_WORKERS = 8  # small objects on a local disk: more threads only fight for the GIL
_WRITE_BATCH = 256


# --- missions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mission:
    """A satellite whose scenes ITS_LIVE pairs: where it is filed, when it flew, its repeat."""

    code: str
    directory: str
    family: str  # "landsat" | "sentinel1" | "sentinel2"
    first: dt.date
    last: dt.date
    weight: float
    repeat_days: int
    partners: tuple[str, ...]


MISSIONS: dict[str, Mission] = {
    m.code: m
    for m in (
        Mission("LT04", "landsatOLI", "landsat", dt.date(1982, 8, 22), dt.date(1993, 12, 14),
                0.6, 16, ("LT04", "LT05")),
        Mission("LT05", "landsatOLI", "landsat", dt.date(1984, 3, 16), dt.date(2011, 11, 18),
                4.0, 16, ("LT05",)),
        Mission("LE07", "landsatOLI", "landsat", dt.date(1999, 5, 28), dt.date(2022, 4, 6),
                8.0, 16, ("LE07",)),
        Mission("LC08", "landsatOLI", "landsat", dt.date(2013, 3, 18), _LATEST,
                30.0, 16, ("LC08", "LC09")),
        Mission("LC09", "landsatOLI", "landsat", dt.date(2021, 10, 31), _LATEST,
                10.0, 16, ("LC09", "LC08")),
        Mission("S1A", "sentinel1", "sentinel1", dt.date(2014, 10, 3), _LATEST,
                12.0, 12, ("S1A", "S1B")),
        Mission("S1B", "sentinel1", "sentinel1", dt.date(2016, 9, 26), dt.date(2021, 12, 23),
                5.0, 12, ("S1B", "S1A")),
        Mission("S2A", "sentinel2", "sentinel2", dt.date(2015, 7, 4), _LATEST,
                12.0, 10, ("S2A", "S2B")),
        Mission("S2B", "sentinel2", "sentinel2", dt.date(2017, 3, 17), _LATEST,
                10.0, 10, ("S2B", "S2A")),
    )
}
_SAR_ONLY = ("S1A", "S1B")  # beyond ~82° only Sentinel-1 sees the ice


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


class _Draws:
    """Uniform [0, 1) numbers drawn in one numpy call, handed out one at a time."""

    __slots__ = ("_buf", "_rng")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._buf: list[float] = []

    def __call__(self) -> float:
        if not self._buf:
            self._buf = self._rng.random(_UINTS).tolist()
        return self._buf.pop()

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self()

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``[lo, hi]`` (both ends included)."""
        return lo + min(int(self() * (hi - lo + 1)), hi - lo)

    def choice(self, seq: Sequence[Any]) -> Any:
        return seq[min(int(self() * len(seq)), len(seq) - 1)]


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


# --- scenes ---------------------------------------------------------------------------------

_MGRS_BANDS = "CDEFGHJKLMNPQRSTUVWX"
_MGRS_COLS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_MGRS_ROWS = "ABCDEFGHJKLMNPQRSTUV"


def _compact(t: dt.datetime) -> str:
    return f"{t.year:04d}{t.month:02d}{t.day:02d}T{t.hour:02d}{t.minute:02d}{t.second:02d}"


def _ymd(d: dt.date) -> str:
    return f"{d.year:04d}{d.month:02d}{d.day:02d}"


@dataclass(frozen=True)
class _SceneContext:
    """What every scene of a pair shares: where it is and how it is framed."""

    lon: float
    lat: float
    path: int
    row: int
    level: str
    tier: str
    mgrs: str
    rel_orbit: int
    polarisation: str


def _scene_context(draw: _Draws, lon: float, lat: float) -> _SceneContext:
    path = int(((-lon + 180.0 + 64.6) % 360.0) / 360.0 * 233) + 1  # WRS-2, near enough
    row = max(1, min(248, round(60 - lat * 59.0 / 80.1)))
    level, tier = draw.choice((("L1TP", "T1"), ("L1TP", "T1"), ("L1GT", "T2"), ("L1GS", "T2")))
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    band = _MGRS_BANDS[max(0, min(19, int((lat + 80.0) // 8.0)))]
    mgrs = f"{zone:02d}{band}{draw.choice(_MGRS_COLS)}{draw.choice(_MGRS_ROWS)}"
    polarisation = "SH" if abs(lat) > 59.0 else "DV"
    return _SceneContext(lon, lat, path, row, level, tier, mgrs, draw.integer(1, 175),
                         polarisation)


def _scene(draw: _Draws, mission: Mission, ctx: _SceneContext, when: dt.datetime) -> tuple[
    str, str
]:
    """A real-looking scene id of ``mission`` acquired at ``when``, and its frame id."""
    if mission.family == "landsat":
        if when.date() < dt.date(2020, 6, 1):  # Collection 2 reprocessing
            processed = dt.date(2020, 8, 20) + dt.timedelta(days=draw.integer(0, 160))
        else:
            processed = when.date() + dt.timedelta(days=draw.integer(6, 20))
        frame = f"{ctx.path:03d}{ctx.row:03d}"
        scene = (f"{mission.code}_{ctx.level}_{frame}_{_ymd(when)}_{_ymd(processed)}"
                 f"_02_{ctx.tier}")
        return scene, frame
    if mission.family == "sentinel2":
        year = when.year
        baseline = ("N0204" if year < 2018 else "N0206" if year < 2021 else "N0300"
                    if year < 2022 else "N0400" if year < 2023 else "N0509" if year < 2024
                    else "N0510")
        discriminator = when + dt.timedelta(seconds=draw.integer(1, 7200))
        frame = f"T{ctx.mgrs}"
        scene = (f"{mission.code}_MSIL1C_{_compact(when)}_{baseline}_R{ctx.rel_orbit:03d}"
                 f"_{frame}_{_compact(discriminator)}")
        return scene, frame
    launch = MISSIONS[mission.code].first
    absolute = (when.date() - launch).days * 175 // 12 + ctx.rel_orbit % 12 + 1
    datatake = draw.integer(0x010000, 0xFFFFFF)
    stop = when + dt.timedelta(seconds=27)
    scene = (f"{mission.code}_IW_SLC__1S{ctx.polarisation}_{_compact(when)}_{_compact(stop)}"
             f"_{absolute:06d}_{datatake:06X}_{draw.integer(0, 0xFFFF):04X}")
    return scene, f"{absolute:06d}_{datatake:06X}"


def rfc3339(t: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: UTC, always exactly six fractional digits."""
    return (f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
            f"{t.second:02d}.{t.microsecond:06d}Z")


def _pick_mission(draw: _Draws, candidates: tuple[str, ...]) -> Mission:
    weights = [MISSIONS[c].weight for c in candidates]
    target = draw() * sum(weights)
    for code, w in zip(candidates, weights, strict=True):
        target -= w
        if target < 0:
            return MISSIONS[code]
    return MISSIONS[candidates[-1]]


@functools.lru_cache(maxsize=4096)
def _pool(polar: bool, on: dt.date | None, latest: dt.date | None) -> tuple[str, ...]:
    """Missions that flew on ``on``, or that could complete a pair before ``latest``."""
    pool = _SAR_ONLY if polar else tuple(MISSIONS)
    if on is not None:
        active = tuple(c for c in pool if MISSIONS[c].first <= on <= MISSIONS[c].last)
        return active or ("LT05" if on.year < 2013 else "LC08",)
    assert latest is not None
    pool = tuple(c for c in pool if max(MISSIONS[c].first, _EPOCH_FLOOR)
                 + dt.timedelta(days=2 * MISSIONS[c].repeat_days) < latest)
    if not pool:
        raise ValueError(f"no mission acquired pairs before {latest}")
    return pool


def _acquisitions(
    draw: _Draws,
    lat: float,
    lon: float,
    when: dt.datetime | None,
    before: dt.date | None,
    after: dt.date | None = None,
) -> tuple[Mission, Mission, dt.datetime, dt.datetime, int]:
    """Missions of both scenes, both acquisition times, and the whole days between them."""
    polar = abs(lat) > 82.0
    if when is not None:
        pool = _pool(polar, when.date(), None)
    else:
        latest = min(before or _LATEST, _LATEST)
        pool = _pool(polar, None, latest)
    mission = _pick_mission(draw, pool)
    partner = MISSIONS[draw.choice(mission.partners)]
    base = mission.repeat_days // (2 if partner is not mission else 1)
    days = base * (1 + int(draw() ** 3 * (546 // base)))
    jitter = dt.timedelta(microseconds=2 * draw.integer(-60_000_000, 60_000_000))
    if when is not None:
        half = (dt.timedelta(days=days) + jitter) / 2
        start = when - half
        end = start + dt.timedelta(days=days) + jitter
        if not partner.first <= end.date() <= partner.last:
            partner = mission
        return mission, partner, start, end, days

    first = max(mission.first, _EPOCH_FLOOR)
    last = min(mission.last, latest)
    if after is not None and after < last:
        first = max(first, after)
    span = (last - first).days
    days = min(days, max(base, span - 1))
    start_day = first + dt.timedelta(days=draw.integer(0, max(0, span - days)))
    # Local solar time of the overpass: ~10:30 for optical, dawn/dusk for Sentinel-1.
    local = draw.uniform(9.8, 11.2) if mission.family != "sentinel1" else draw.choice(
        (6.0, 18.0)) + draw.uniform(-0.5, 0.5)
    seconds = ((local - lon / 15.0) * 3600.0) % 86400.0
    start = dt.datetime(start_day.year, start_day.month, start_day.day, tzinfo=_UTC)
    start += dt.timedelta(seconds=seconds, microseconds=draw.integer(0, 999_999))
    end = start + dt.timedelta(days=days) + jitter
    if not partner.first <= end.date() <= partner.last:
        partner = mission
    return mission, partner, start, end, days


# --- items ----------------------------------------------------------------------------------


def _region_for(
    draw: _Draws, region: str | None, polar: str | None, antimeridian: bool
) -> Region:
    if polar is not None:
        try:
            return REGIONS[_POLAR_REGIONS[polar]]
        except KeyError:
            raise ValueError(f"polar must be one of {sorted(_POLAR_REGIONS)}, not {polar!r}") \
                from None
    if antimeridian:
        return REGIONS["chukotka_aleutians"]
    if region is not None:
        try:
            return REGIONS[region]
        except KeyError:
            raise ValueError(f"unknown region {region!r}; one of {_REGION_NAMES}") from None
    i = bisect.bisect_right(_REGION_CUM, draw() * _REGION_CUM[-1])
    return REGIONS[_REGION_NAMES[min(i, len(_REGION_NAMES) - 1)]]


def item_key(item: dict[str, Any]) -> str:
    """The object key of an item: ``velocity_image_pair/<mission>/v02/<tile>/<id>.stac.json``."""
    href = item["assets"]["data"]["alternate"]["s3"]["href"]
    return href.split("/", 3)[3][: -len(".nc")] + ITEM_SUFFIX


def make_item(
    rng: np.random.Generator,
    *,
    region: str | None = None,
    when: dt.datetime | None = None,
    polar: str | None = None,
    antimeridian: bool = False,
    created: dt.datetime | None = None,
    before: dt.date | None = None,
    after: dt.date | None = None,
) -> dict[str, Any]:
    """One ITS_LIVE STAC 1.1 item, every field as ``ITSLIVE.md`` describes it.

    ``region`` is a key of :data:`REGIONS` (default: drawn by weight). ``polar`` is
    ``"north"``/``"south"`` (a footprint at |lat| 84–89, pole outside) or
    ``"north_pole"``/``"south_pole"`` (a footprint encircling the pole); ``antimeridian``
    forces a footprint across ±180°. ``when`` fixes the pair's mid date (``datetime``);
    otherwise the pair is drawn within its missions' lifetimes, before ``before`` if given.
    ``created`` (and ``updated``, a few minutes later) default to a processing delay after
    the second acquisition. ``after`` keeps the first acquisition after that date (when
    the mission flew then). Every item has the same keys, so the warehouse schema is stable.
    """
    draw = _Draws(rng)
    reg = _region_for(draw, region, polar, antimeridian)
    fp = _footprint(draw, reg)
    lon_c, lat_c = fp.center
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=_UTC)
    mission, partner, start, end, days = _acquisitions(draw, lat_c, lon_c, when, before, after)
    mid = start + (end - start) / 2
    ctx = _scene_context(draw, lon_c, lat_c)
    scene_1, frame_1 = _scene(draw, mission, ctx, start)
    scene_2, frame_2 = _scene(draw, partner, ctx, end)
    percent = min(100, int(draw() ** 0.45 * 101))
    item_id = f"{scene_1}_X_{scene_2}_G0120V02_P{percent:03d}"

    if created is None:
        if end.date() < dt.date(2020, 9, 1):
            created = dt.datetime(2020, 9, 1, tzinfo=_UTC) + dt.timedelta(
                days=draw.uniform(0, 900))
        else:
            created = end + dt.timedelta(days=draw.uniform(1, 40))
    elif created.tzinfo is None:
        created = created.replace(tzinfo=_UTC)
    updated = created + dt.timedelta(seconds=draw.uniform(0, 600))
    if mission.family == "sentinel1":
        orbit_state = draw.choice(("ascending", "descending"))
    else:
        orbit_state = "descending"

    prefix = f"velocity_image_pair/{mission.directory}/v02/{region_tile(lat_c, lon_c)}/{item_id}"
    mid_text = rfc3339(mid)
    return {
        "type": "Feature",
        "stac_version": STAC_VERSION,
        "stac_extensions": list(STAC_EXTENSIONS),
        "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [fp.ring]},
        "bbox": fp.bbox,
        "properties": {
            "datetime": mid_text,
            "start_datetime": rfc3339(start),
            "end_datetime": rfc3339(end),
            "mid_datetime": mid_text,
            "created": rfc3339(created),
            "updated": rfc3339(updated),
            "platform": mission.code,
            "percent_valid_pixels": percent,
            "date_dt": float(days),
            "latitude": lat_c,
            "longitude": lon_c,
            "scene_1_id": scene_1,
            "scene_2_id": scene_2,
            "scene_1_frame": frame_1,
            "scene_2_frame": frame_2,
            "sat:orbit_state": orbit_state,
            "proj:code": f"EPSG:{fp.epsg}",
            "version": "002",
        },
        "links": [
            {"rel": "self", "href": f"{STAC_API}/collections/{COLLECTION}/items/{item_id}",
             "type": "application/geo+json"},
            {"rel": "parent", "href": f"{STAC_API}/collections/{COLLECTION}",
             "type": "application/json"},
            {"rel": "root", "href": f"{STAC_API}/", "type": "application/json"},
            {"rel": "collection", "href": f"{STAC_API}/collections/{COLLECTION}",
             "type": "application/json"},
        ],
        "assets": {
            "data": {
                "href": f"{HTTPS_ROOT}/{prefix}.nc",
                "type": "application/netcdf",
                "title": "Velocity image pair (NetCDF)",
                "roles": ["data"],
                "alternate": {
                    "s3": {"href": f"s3://{SOURCE_BUCKET}/{prefix}.nc", "alternate:name": "S3"}
                },
            },
            "overview": {
                "href": f"{HTTPS_ROOT}/{prefix}.png",
                "type": "image/png",
                "title": "Velocity overview",
                "roles": ["overview"],
            },
            "thumbnail": {
                "href": f"{HTTPS_ROOT}/{prefix}_thumb.png",
                "type": "image/png",
                "title": "Velocity thumbnail",
                "roles": ["thumbnail"],
            },
        },
        "collection": COLLECTION,
    }


def item_json(item: dict[str, Any]) -> bytes:
    """An item as the real objects are: pretty-printed JSON, two-space indent."""
    return orjson.dumps(item, option=orjson.OPT_INDENT_2)


# --- a day of objects -----------------------------------------------------------------------


@dataclass
class GeneratedDay:
    """What :func:`generate_day` wrote, and what a correct ingest must make of it.

    - ``items``: the items expected in the warehouse (normal, ``null_geometry`` and
      ``coercible`` ones, the latter as written, numbers still strings).
    - ``refs``: every key of the day as the inventory lists it — bucket, key,
      last_modified_date (timestamp[ms, UTC]), size, e_tag — including the bad and the
      missing objects and a few non-item keys (``.nc``, ``.png``: see ``other_keys``) that
      readers filter out; sorted by key.
    - ``expected``: bad kind (:data:`BAD_KINDS`) → keys of those objects.
    - ``good_ids``: the ids the warehouse must hold after ingesting the day.
    """

    date: dt.date
    items: list[dict[str, Any]]
    refs: pa.Table
    expected: dict[str, list[str]]
    good_ids: list[str]
    other_keys: list[str] = field(default_factory=list)

    @property
    def item_keys(self) -> list[str]:
        """Every ``.stac.json`` key of the day (good, bad and missing)."""
        return [k for k in self.refs.column("key").to_pylist() if k.endswith(ITEM_SUFFIX)]


def _as_date(date: dt.date | str) -> dt.date:
    """A date, or an ISO ``YYYY-MM-DD`` string made one."""
    if isinstance(date, dt.datetime):
        return date.date()
    return date if isinstance(date, dt.date) else dt.date.fromisoformat(date)


def _error_page(draw: _Draws) -> bytes:
    request_id = "".join(draw.choice("0123456789ABCDEF") for _ in range(16))
    host_id = "".join(draw.choice("abcdefghijklmnopqrstuvwxyz0123456789+/") for _ in range(76))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>InternalError</Code>"
        "<Message>We encountered an internal error. Please try again.</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>{host_id}=</HostId></Error>"
    ).encode()


def _coerce_to_strings(item: dict[str, Any]) -> None:
    """Numbers written as strings that convert back without loss ("85", "16.0", "61.2345")."""
    props = item["properties"]
    props["percent_valid_pixels"] = str(props["percent_valid_pixels"])
    props["date_dt"] = repr(props["date_dt"])
    props["latitude"] = repr(props["latitude"])
    props["longitude"] = repr(props["longitude"])


def _write_all(jobs: Iterable[tuple[str, bytes]], workers: int = _WRITE_WORKERS) -> None:
    """Write many small objects with a thread pool, in batches, a bounded number in flight."""

    def write_batch(batch: list[tuple[str, bytes]]) -> None:
        for uri, data in batch:
            write_bytes(uri, data)

    pending: list[Future[None]] = []
    batch: list[tuple[str, bytes]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for job in jobs:
            batch.append(job)
            if len(batch) >= _WRITE_BATCH:
                pending.append(pool.submit(write_batch, batch))
                batch = []
                if len(pending) >= 4 * workers:
                    for fut in pending:
                        fut.result()
                    pending = []
        if batch:
            pending.append(pool.submit(write_batch, batch))
        for fut in pending:
            fut.result()


def generate_day(
    date: dt.date | str,
    n: int,
    *,
    source_root: str,
    seed: int = 0,
    bad: bool = True,
    start_index: int = 0,
    bad_per_kind: int = 2,
) -> GeneratedDay:
    """Write one day of new ITS_LIVE objects under ``source_root`` and describe them.

    ``n`` good items (``len(good_ids) == n``; with ``bad=True`` up to ``bad_per_kind`` of
    them are ``null_geometry`` and as many ``coercible``), plus ``bad_per_kind`` objects of
    each other bad kind. Objects go to ``layout.source_object(SOURCE_BUCKET, key,
    source_root)``; their last-modified times fall within ``date`` (UTC), the items'
    ``created``/``updated`` a few hours before. ``seed``, ``date`` and ``start_index`` all
    feed the random stream, so days, seeds and batches of one day get different ids.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    date = _as_date(date)
    rng = np.random.default_rng([seed, date.toordinal(), start_index])
    draw = _Draws(rng)
    day_start = dt.datetime(date.year, date.month, date.day, tzinfo=_UTC)
    before = date - dt.timedelta(days=2)
    per_kind = bad_per_kind if bad else 0
    n_null = min(per_kind, n // 3)
    n_coercible = min(per_kind, n // 3)
    n_extra = per_kind * (len(BAD_KINDS) - len(GOOD_BAD_KINDS))
    specials = [name for name, count in _SPECIALS for _ in range(count)]
    if n < 4 * len(specials):
        specials = []

    seen: set[str] = set()
    keys: list[str] = []
    sizes: list[int] = []
    etags: list[str] = []
    modified: list[int] = []  # epoch seconds
    items: list[dict[str, Any]] = []
    expected: dict[str, list[str]] = {kind: [] for kind in BAD_KINDS}
    other_keys: list[str] = []
    other_sizes: list[int] = []
    other_etags: list[str] = []
    other_modified: list[int] = []
    extra_kinds = [k for k in BAD_KINDS if k not in GOOD_BAD_KINDS for _ in range(per_kind)]
    total = n + n_extra

    def new_item(i: int, last_modified: dt.datetime) -> dict[str, Any]:
        created = last_modified - dt.timedelta(seconds=draw.uniform(900, 12 * 3600))
        region = specials[i] if i < len(specials) else None
        while True:
            # Most pairs of a day's delta were acquired in the last two years; a few come
            # from reprocessing campaigns over the whole archive.
            after = before - dt.timedelta(days=730) if draw() < RECENT_SHARE else None
            item = make_item(rng, region=region, created=created, before=before, after=after)
            if item["id"] not in seen:
                seen.add(item["id"])
                return item

    def jobs() -> Iterator[tuple[str, bytes]]:
        for i in range(total):
            lm_seconds = draw.integer(0, 86_399)
            last_modified = day_start + dt.timedelta(seconds=lm_seconds)
            item = new_item(i, last_modified)
            key = item_key(item)
            kind: str | None = None
            if i >= n:
                kind = extra_kinds[i - n]
            elif i >= n - n_null:
                kind = "null_geometry"
            elif i >= n - n_null - n_coercible:
                kind = "coercible"

            if kind == "null_geometry":
                item["geometry"] = None
                del item["bbox"]
            elif kind == "coercible":
                _coerce_to_strings(item)
            elif kind == "uncoercible":
                item["properties"]["percent_valid_pixels"] = "high"
            elif kind == "no_id":
                del item["id"]
            if i < n:
                items.append(item)

            if kind == "error_page":
                body = _error_page(draw)
            else:
                body = item_json(item)
                if kind == "truncated":
                    body = body[: len(body) // 2]
            if kind is not None:
                expected[kind].append(key)
            keys.append(key)
            sizes.append(len(body))
            etags.append(hashlib.md5(body, usedforsecurity=False).hexdigest())
            modified.append(int(last_modified.timestamp()))
            if i < 2 and n > 0:  # the granule's other files, listed but not items
                stem = key[: -len(ITEM_SUFFIX)]
                for suffix, size in ((".nc", draw.integer(2_000_000, 40_000_000)),
                                     (".png", draw.integer(40_000, 400_000))):
                    other_keys.append(stem + suffix)
                    other_sizes.append(size)
                    other_etags.append(f"{draw.integer(0, 2**63 - 1):032x}")
                    other_modified.append(int(last_modified.timestamp()) - 60)
            if kind != "missing":
                yield layout.source_object(SOURCE_BUCKET, key, source_root), body

    # Tens of thousands of live dicts make the cyclic GC rescan them over and over (it
    # doubled the run time); nothing here builds cycles, so pause it while generating.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _write_all(jobs())
    finally:
        if gc_was_enabled:
            gc.enable()

    all_keys = keys + other_keys
    refs = pa.table(
        {
            "bucket": pa.array([SOURCE_BUCKET] * len(all_keys), pa.string()),
            "key": pa.array(all_keys, pa.string()),
            "last_modified_date": pa.array(
                np.array(modified + other_modified, dtype="datetime64[s]").astype(
                    "datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
            "size": pa.array(sizes + other_sizes, pa.int64()),
            "e_tag": pa.array(etags + other_etags, pa.string()),
        }
    ).sort_by("key")
    good_ids = [item["id"] for item in items]
    return GeneratedDay(date, items, refs, expected, good_ids, other_keys)


# --- S3 Inventory ---------------------------------------------------------------------------


def _uuid_like(*parts: object) -> str:
    return str(uuid.UUID(bytes=hashlib.md5("/".join(map(str, parts)).encode(),
                                           usedforsecurity=False).digest()))


def _inventory_columns(refs: pa.Table) -> pa.Table:
    """``refs`` in the inventory's columns; a missing size/e_tag is made up deterministically."""
    n = refs.num_rows
    keys = refs.column("key").cast(pa.string())
    if "size" in refs.column_names:
        size = refs.column("size").cast(pa.int64())
    else:
        size = pa.array([3_000 + len(k) * 7 for k in keys.to_pylist()], pa.int64())
    if "e_tag" in refs.column_names:
        etag = refs.column("e_tag").cast(pa.string())
    else:
        etag = pa.array([hashlib.md5(k.encode(), usedforsecurity=False).hexdigest()
                         for k in keys.to_pylist()], pa.string())
    bucket = (refs.column("bucket").cast(pa.string()) if "bucket" in refs.column_names
              else pa.array([SOURCE_BUCKET] * n, pa.string()))
    modified = refs.column("last_modified_date").cast(pa.timestamp("ms", tz="UTC"))
    return pa.Table.from_arrays([bucket, keys, size, modified, etag],
                                schema=INVENTORY_PARQUET_SCHEMA)


def _csv_bytes(table: pa.Table) -> bytes:
    """Headerless, every field quoted, keys URL-encoded, gzip (mtime 0: reproducible)."""
    keys = table.column("key")
    needs = pc.match_substring_regex(keys, r"[^A-Za-z0-9_.\-~/]")
    if pc.any(needs).as_py():  # rare: only those keys go through Python
        keys = pa.array(
            [urllib.parse.quote(k, safe="/") if n else k
             for k, n in zip(keys.to_pylist(), needs.to_pylist(), strict=True)],
            pa.string(),
        )
    modified = pc.strftime(table.column("last_modified_date"), format="%Y-%m-%dT%H:%M:%SZ")
    out = pa.table([table.column("bucket"), keys, table.column("size"), modified,
                    table.column("e_tag")], names=["Bucket", "Key", "Size", "LastModifiedDate",
                                                   "ETag"])
    buf = io.BytesIO()
    pacsv.write_csv(out, buf, pacsv.WriteOptions(include_header=False,
                                                 quoting_style="all_valid"))
    return gzip.compress(buf.getvalue(), mtime=0)


def write_inventory(
    inventory_root: str,
    date: dt.date | str,
    refs: pa.Table,
    *,
    fmt: str = "parquet",
    files: int = 2,
) -> str:
    """Write the S3 Inventory of ``date`` listing ``refs``; return the manifest URI.

    Data files go to ``layout.inventory_data_dir(inventory_root)`` named
    ``<uuid>.parquet`` (snappy; columns bucket, key, size, last_modified_date
    timestamp[ms, UTC], e_tag) or ``<uuid>.csv.gz`` (gzip, headerless, every field quoted,
    ``Bucket, Key, Size, LastModifiedDate, ETag`` order, keys URL-encoded with
    ``urllib.parse.quote(key, safe="/")``, times like ``2024-06-01T03:14:15.000Z``). The
    manifest's ``files[].key`` are relative to the destination bucket
    (``its-live-data/daily/data/<name>``), so a reader finds a local copy at
    ``<manifest dir>/../data/<name>``. ``manifest.checksum`` holds the manifest's MD5 (hex).
    ``refs`` needs ``key`` and ``last_modified_date``; bucket, size and e_tag are used if
    present. Names derive from the date, so rewriting a date overwrites the same files.
    """
    kind = fmt.lower()
    if kind not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', not {fmt!r}")
    date = _as_date(date)
    table = _inventory_columns(refs).sort_by("key")
    n_files = max(1, min(files, table.num_rows))
    bounds = np.linspace(0, table.num_rows, n_files + 1).astype(int).tolist()
    data_dir = layout.inventory_data_dir(inventory_root)
    entries: list[dict[str, Any]] = []
    for i in range(n_files):
        part = table.slice(bounds[i], bounds[i + 1] - bounds[i])
        if kind == "parquet":
            buf = io.BytesIO()
            pq.write_table(part, buf, compression="snappy")
            data, name = buf.getvalue(), f"{_uuid_like(layout.date_key(date), i, kind)}.parquet"
        else:
            data, name = _csv_bytes(part), f"{_uuid_like(layout.date_key(date), i, kind)}.csv.gz"
        write_bytes(layout.join(data_dir, name), data)
        entries.append({
            "key": f"{INVENTORY_PREFIX}/data/{name}",
            "size": len(data),
            "MD5checksum": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        })

    source_bucket = (table.column("bucket")[0].as_py() if table.num_rows else SOURCE_BUCKET)
    created = dt.datetime(date.year, date.month, date.day, tzinfo=_UTC)
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": f"arn:aws:s3:::{INVENTORY_BUCKET}",
        "version": INVENTORY_VERSION,
        "creationTimestamp": str(int(created.timestamp() * 1000)),
        "fileFormat": "Parquet" if kind == "parquet" else "CSV",
        "fileSchema": PARQUET_FILE_SCHEMA if kind == "parquet" else CSV_FILE_SCHEMA,
        "files": entries,
    }
    body = orjson.dumps(manifest, option=orjson.OPT_INDENT_2)
    manifest_uri = layout.inventory_manifest(inventory_root, date)
    write_bytes(manifest_uri, body)
    checksum_uri = manifest_uri.rsplit("/", 1)[0] + "/manifest.checksum"
    write_bytes(checksum_uri, hashlib.md5(body, usedforsecurity=False).hexdigest().encode())
    return manifest_uri


# --- the demo -------------------------------------------------------------------------------


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
