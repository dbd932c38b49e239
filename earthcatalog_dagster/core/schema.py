"""The one schema definition of a warehouse row; Arrow and Iceberg schemas derive from it.

A row is a STAC item laid out the stac-geoparquet way: top-level STAC fields, every
``properties.*`` field as a top-level column under its STAC name, ``assets`` as a struct of
per-asset structs, ``links`` as a list of structs, geometry as WKB with a ``bbox`` covering
struct, plus ``grid_partition`` (the H3 cell) as a real column for Iceberg's partitioning.

Types are stable across every file: datetimes of STAC common metadata are
``timestamp[us, UTC]`` (Iceberg ``timestamptz``), ``percent_valid_pixels`` and ``date_dt``
integers. Anything an item carries beyond this schema is kept losslessly as a JSON object
in ``stac_extra`` and merged back when the item is read.

``mid_datetime`` (an ITS_LIVE field, not STAC common metadata) stays the RFC 3339 string it
is in the source, because stac-geoparquet's reader only turns the common-metadata datetimes
back into strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import pyarrow as pa

TIMESTAMP = pa.timestamp("us", tz="UTC")

TABLE_NAMESPACE = "earthcatalog"
TABLE_NAME = "stac_items"
TABLE_IDENTIFIER = f"{TABLE_NAMESPACE}.{TABLE_NAME}"

GRID_TYPE_PROPERTY = "earthcatalog.grid.type"
GRID_RESOLUTION_PROPERTY = "earthcatalog.grid.resolution"
HASH_INDEX_PROPERTY = "earthcatalog.hash_index_path"

GEOPARQUET_VERSION = "1.1.0"
STAC_GEOPARQUET_VERSION = "1.0.0"


class Kind(Enum):
    """How a property value is checked and coerced on the way in."""

    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    TIMESTAMP = "timestamp"


@dataclass(frozen=True)
class PropertyField:
    name: str
    kind: Kind

    @property
    def arrow_type(self) -> pa.DataType:
        return {
            Kind.STRING: pa.string(),
            Kind.INTEGER: pa.int32(),
            Kind.FLOAT: pa.float64(),
            Kind.TIMESTAMP: TIMESTAMP,
        }[self.kind]


#: ``properties.*`` of an ITS_LIVE item, in column order.
PROPERTIES: tuple[PropertyField, ...] = (
    PropertyField("datetime", Kind.TIMESTAMP),
    PropertyField("start_datetime", Kind.TIMESTAMP),
    PropertyField("end_datetime", Kind.TIMESTAMP),
    PropertyField("mid_datetime", Kind.STRING),
    PropertyField("created", Kind.TIMESTAMP),
    PropertyField("updated", Kind.TIMESTAMP),
    PropertyField("platform", Kind.STRING),
    PropertyField("percent_valid_pixels", Kind.INTEGER),
    PropertyField("date_dt", Kind.INTEGER),
    PropertyField("latitude", Kind.FLOAT),
    PropertyField("longitude", Kind.FLOAT),
    PropertyField("scene_1_id", Kind.STRING),
    PropertyField("scene_2_id", Kind.STRING),
    PropertyField("scene_1_frame", Kind.STRING),
    PropertyField("scene_2_frame", Kind.STRING),
    PropertyField("sat:orbit_state", Kind.STRING),
    PropertyField("proj:code", Kind.STRING),
    PropertyField("version", Kind.STRING),
)
PROPERTY_NAMES = frozenset(p.name for p in PROPERTIES)

ASSET_KEYS: tuple[str, ...] = ("data", "overview", "thumbnail")
ASSET_FIELDS: tuple[str, ...] = ("href", "type", "title", "roles")
ALTERNATE_S3 = pa.struct(
    [pa.field("s3", pa.struct([("href", pa.string()), ("alternate:name", pa.string())]))]
)
LINK_FIELDS: tuple[str, ...] = ("rel", "href", "type")
TOP_LEVEL_FIELDS = frozenset(
    {
        "type",
        "stac_version",
        "stac_extensions",
        "id",
        "geometry",
        "bbox",
        "links",
        "assets",
        "collection",
        "properties",
    }
)

BBOX_TYPE = pa.struct([(axis, pa.float64()) for axis in ("xmin", "ymin", "xmax", "ymax")])
LINK_TYPE = pa.struct([(name, pa.string()) for name in LINK_FIELDS])


def _asset_type(key: str) -> pa.StructType:
    fields = [
        pa.field("href", pa.string()),
        pa.field("type", pa.string()),
        pa.field("title", pa.string()),
        pa.field("roles", pa.list_(pa.string())),
    ]
    if key == "data":
        fields.append(pa.field("alternate", ALTERNATE_S3))
    return pa.struct(fields)


ASSETS_TYPE = pa.struct([pa.field(key, _asset_type(key)) for key in ASSET_KEYS])


def arrow_schema() -> pa.Schema:
    """The Arrow schema of every warehouse file (GeoParquet metadata is added on write)."""
    return pa.schema(
        [
            pa.field("type", pa.string()),
            pa.field("stac_version", pa.string()),
            pa.field("stac_extensions", pa.list_(pa.string())),
            pa.field("id", pa.string(), nullable=False),
            pa.field("geometry", pa.binary()),
            pa.field("bbox", BBOX_TYPE),
            pa.field("links", pa.list_(LINK_TYPE)),
            pa.field("assets", ASSETS_TYPE),
            pa.field("collection", pa.string()),
            *(pa.field(p.name, p.arrow_type) for p in PROPERTIES),
            pa.field("stac_extra", pa.string()),
            pa.field("grid_partition", pa.string(), nullable=False),
        ]
    )


WAREHOUSE_SCHEMA = arrow_schema()


def iceberg_schema():  # -> pyiceberg.schema.Schema; imported lazily to keep the core light
    """The Iceberg schema, derived from :data:`WAREHOUSE_SCHEMA` with fresh field ids."""
    from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, visit_pyarrow
    from pyiceberg.schema import assign_fresh_schema_ids

    without_ids = visit_pyarrow(WAREHOUSE_SCHEMA, _ConvertToIcebergWithoutIDs())
    return assign_fresh_schema_ids(without_ids)
