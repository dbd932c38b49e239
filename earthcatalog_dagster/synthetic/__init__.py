"""A realistic synthetic ITS_LIVE: STAC items, their objects, and the S3 Inventory listing them.

The demo, the tests and the benchmarks all run on this data instead of the real bucket, so
it imitates the real thing closely (see ``ITSLIVE.md``). One module per concern, each read
in one sitting:

- :mod:`.footprints` — the regions ITS_LIVE covers and the footprints drawn in them: a
  rectangle in the pair's projection (UTM, or polar stereographic EPSG:3413 / EPSG:3031)
  reprojected to lon/lat with five points per edge, exactly as ITS_LIVE builds it — so some
  footprints cross the antimeridian and a few encircle a pole. Spherical projections, no pyproj.
- :mod:`.missions` — which satellites acquired a pair, when, and their real-looking scene ids.
- :mod:`.items` — :func:`make_item` builds one STAC 1.1 item of a velocity image pair: a
  granule id made from its two scene ids, the ITS_LIVE properties, three assets, four links.
- :mod:`.bad` — the deliberately bad objects of a day (:data:`BAD_KINDS`).
- :mod:`.day` — :func:`generate_day` writes one day of new objects (plus the bad ones,
  listed in :attr:`GeneratedDay.expected`) under a source root, through
  :mod:`~earthcatalog_dagster.core.storage`, so the root may be a folder or ``s3://``.
- :mod:`.inventory` — :func:`write_inventory` writes the S3 Inventory of a date (Parquet or
  gzip CSV data files, ``manifest.json``, ``manifest.checksum``).
- :mod:`.demo` — :func:`generate_demo` ties both together under an ``$EARTHCATALOG_HOME``.

Everything is deterministic for a given seed: a seeded :class:`numpy.random.Generator`
draws every random choice, and no wall clock is read. Every public name is re-exported
here, so ``from earthcatalog_dagster.synthetic import make_item`` is the way to import.
"""

from __future__ import annotations

from earthcatalog_dagster.synthetic.bad import BAD_KINDS, GOOD_BAD_KINDS
from earthcatalog_dagster.synthetic.base import (
    COLLECTION,
    HTTPS_ROOT,
    INVENTORY_BUCKET,
    INVENTORY_PREFIX,
    INVENTORY_VERSION,
    ITEM_SUFFIX,
    SOURCE_BUCKET,
    STAC_API,
    STAC_EXTENSIONS,
    STAC_VERSION,
)
from earthcatalog_dagster.synthetic.day import RECENT_SHARE, GeneratedDay, generate_day
from earthcatalog_dagster.synthetic.demo import generate_demo
from earthcatalog_dagster.synthetic.footprints import REGIONS, Footprint, Region, region_tile
from earthcatalog_dagster.synthetic.inventory import (
    CSV_FILE_SCHEMA,
    INVENTORY_PARQUET_SCHEMA,
    PARQUET_FILE_SCHEMA,
    write_inventory,
)
from earthcatalog_dagster.synthetic.items import item_json, item_key, make_item
from earthcatalog_dagster.synthetic.missions import MISSIONS, Mission, rfc3339

__all__ = [
    "BAD_KINDS",
    "COLLECTION",
    "CSV_FILE_SCHEMA",
    "GOOD_BAD_KINDS",
    "HTTPS_ROOT",
    "INVENTORY_BUCKET",
    "INVENTORY_PARQUET_SCHEMA",
    "INVENTORY_PREFIX",
    "INVENTORY_VERSION",
    "ITEM_SUFFIX",
    "MISSIONS",
    "PARQUET_FILE_SCHEMA",
    "RECENT_SHARE",
    "REGIONS",
    "SOURCE_BUCKET",
    "STAC_API",
    "STAC_EXTENSIONS",
    "STAC_VERSION",
    "Footprint",
    "GeneratedDay",
    "Mission",
    "Region",
    "generate_day",
    "generate_demo",
    "item_json",
    "item_key",
    "make_item",
    "region_tile",
    "rfc3339",
    "write_inventory",
]
