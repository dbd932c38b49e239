"""One ITS_LIVE STAC 1.1 item of a velocity image pair, and the object key it is filed under.

:func:`make_item` builds a real-looking granule id made from its two scene ids, the
ITS_LIVE properties, three assets and four links, around a footprint from
:mod:`~earthcatalog_dagster.synthetic.footprints` and acquisitions from
:mod:`~earthcatalog_dagster.synthetic.missions`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import orjson

from earthcatalog_dagster.synthetic.base import (
    _UTC,
    COLLECTION,
    HTTPS_ROOT,
    ITEM_SUFFIX,
    SOURCE_BUCKET,
    STAC_API,
    STAC_EXTENSIONS,
    STAC_VERSION,
    _Draws,
)
from earthcatalog_dagster.synthetic.footprints import _footprint, _region_for, region_tile
from earthcatalog_dagster.synthetic.missions import _acquisitions, _scene, _scene_context, rfc3339


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
            created = dt.datetime(2020, 9, 1, tzinfo=_UTC) + dt.timedelta(days=draw.uniform(0, 900))
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
            {
                "rel": "self",
                "href": f"{STAC_API}/collections/{COLLECTION}/items/{item_id}",
                "type": "application/geo+json",
            },
            {
                "rel": "parent",
                "href": f"{STAC_API}/collections/{COLLECTION}",
                "type": "application/json",
            },
            {"rel": "root", "href": f"{STAC_API}/", "type": "application/json"},
            {
                "rel": "collection",
                "href": f"{STAC_API}/collections/{COLLECTION}",
                "type": "application/json",
            },
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
