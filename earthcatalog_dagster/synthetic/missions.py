"""Missions and scenes: which satellites acquired a pair, when, and their scene ids.

ITS_LIVE pairs Landsat 4–9, Sentinel-1 and Sentinel-2 scenes; each mission flew for its own
years with its own repeat cycle, and names its scenes its own way. :func:`_acquisitions`
draws both acquisitions of a pair, :func:`_scene` a real-looking scene id for each.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from earthcatalog_dagster.synthetic.base import _EPOCH_FLOOR, _LATEST, _UTC, _Draws

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


# fmt: off
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
# fmt: on
_SAR_ONLY = ("S1A", "S1B")  # beyond ~82° only Sentinel-1 sees the ice
#: Sentinel-2 processing baselines: (acquired before this year, baseline).
_S2_BASELINES = (
    (2018, "N0204"),
    (2021, "N0206"),
    (2022, "N0300"),
    (2023, "N0400"),
    (2024, "N0509"),
    (10_000, "N0510"),
)


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
    return _SceneContext(lon, lat, path, row, level, tier, mgrs, draw.integer(1, 175), polarisation)


def _scene(
    draw: _Draws, mission: Mission, ctx: _SceneContext, when: dt.datetime
) -> tuple[str, str]:
    """A real-looking scene id of ``mission`` acquired at ``when``, and its frame id."""
    if mission.family == "landsat":
        if when.date() < dt.date(2020, 6, 1):  # Collection 2 reprocessing
            processed = dt.date(2020, 8, 20) + dt.timedelta(days=draw.integer(0, 160))
        else:
            processed = when.date() + dt.timedelta(days=draw.integer(6, 20))
        frame = f"{ctx.path:03d}{ctx.row:03d}"
        scene = f"{mission.code}_{ctx.level}_{frame}_{_ymd(when)}_{_ymd(processed)}_02_{ctx.tier}"
        return scene, frame
    if mission.family == "sentinel2":
        year = when.year
        baseline = next(name for until, name in _S2_BASELINES if year < until)
        discriminator = when + dt.timedelta(seconds=draw.integer(1, 7200))
        frame = f"T{ctx.mgrs}"
        scene = (
            f"{mission.code}_MSIL1C_{_compact(when)}_{baseline}_R{ctx.rel_orbit:03d}"
            f"_{frame}_{_compact(discriminator)}"
        )
        return scene, frame
    launch = MISSIONS[mission.code].first
    absolute = (when.date() - launch).days * 175 // 12 + ctx.rel_orbit % 12 + 1
    datatake = draw.integer(0x010000, 0xFFFFFF)
    stop = when + dt.timedelta(seconds=27)
    scene = (
        f"{mission.code}_IW_SLC__1S{ctx.polarisation}_{_compact(when)}_{_compact(stop)}"
        f"_{absolute:06d}_{datatake:06X}_{draw.integer(0, 0xFFFF):04X}"
    )
    return scene, f"{absolute:06d}_{datatake:06X}"


def rfc3339(t: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: UTC, always exactly six fractional digits."""
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:"
        f"{t.second:02d}.{t.microsecond:06d}Z"
    )


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
    pool = tuple(
        c
        for c in pool
        if max(MISSIONS[c].first, _EPOCH_FLOOR) + dt.timedelta(days=2 * MISSIONS[c].repeat_days)
        < latest
    )
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
    local = (
        draw.uniform(9.8, 11.2)
        if mission.family != "sentinel1"
        else draw.choice((6.0, 18.0)) + draw.uniform(-0.5, 0.5)
    )
    seconds = ((local - lon / 15.0) * 3600.0) % 86400.0
    start = dt.datetime(start_day.year, start_day.month, start_day.day, tzinfo=_UTC)
    start += dt.timedelta(seconds=seconds, microseconds=draw.integer(0, 999_999))
    end = start + dt.timedelta(days=days) + jitter
    if not partner.first <= end.date() <= partner.last:
        partner = mission
    return mission, partner, start, end, days
