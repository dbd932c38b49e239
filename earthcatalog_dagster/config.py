"""Configuration: the operators' environment variables, with the embedded local default.

One source of truth. Every entry point (``ingest()``, the CLI, the Dagster resources)
builds a :class:`Settings` from the environment and overrides single fields from its own
arguments. With nothing configured every root lives under ``$EARTHCATALOG_HOME``
(default ``./.earthcatalog``), so a laptop runs the whole platform with no cloud at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_HOME = ".earthcatalog"
DEFAULT_REGION = "us-west-2"

#: The variables that place a root somewhere other than the embedded default.
ROOT_VARS = (
    "WAREHOUSE",
    "WAREHOUSE_HASH",
    "STAGING",
    "DELTA_PREFIX",
    "INVENTORY",
    "CATALOG",
    "CATALOG_REMOTE",
    "SOURCE_ROOT",
)
#: Environment variables read by :meth:`Settings.from_env`, as the operators name them.
ENV_VARS = ("EARTHCATALOG_HOME", *ROOT_VARS, "AWS_REGION")


def hash_index_beside(warehouse: str) -> str:
    """The operators' default hash index location: the warehouse URI + ``_id_hashes.parquet``."""
    return warehouse.rstrip("/") + "_id_hashes.parquet"


@dataclass(frozen=True)
class Settings:
    """Every root of the platform, each a local path or an ``s3://`` URI.

    ``source_root`` is ``None`` when items are read from their real bucket
    (``s3://<bucket>/<key>``, unsigned); otherwise ``<source_root>/<bucket>/<key>``.
    ``catalog`` is the local SQLite ``catalog.db`` path; ``catalog_remote``, when set
    (``$CATALOG_REMOTE``, e.g. ``s3://bucket/catalog/earthcatalog.db``), is the shared copy
    that every commit downloads, updates and uploads under the lock beside it.
    """

    home: str
    warehouse: str
    warehouse_hash: str
    staging: str
    delta_prefix: str
    inventory: str
    catalog: str
    source_root: str | None
    aws_region: str = DEFAULT_REGION
    catalog_remote: str | None = None

    @classmethod
    def embedded(cls, home: str | os.PathLike[str] | None = None) -> Settings:
        """All roots under one local folder: the layout ARCHITECTURE.md fixes."""
        root = Path(home or DEFAULT_HOME).expanduser().resolve()
        warehouse = str(root / "warehouse")
        return cls(
            home=str(root),
            warehouse=warehouse,
            warehouse_hash=hash_index_beside(warehouse),
            staging=str(root / "ingest"),
            delta_prefix=str(root / "delta"),
            inventory=str(root / "inventory"),
            catalog=str(root / "earthcatalog.db"),
            source_root=str(root / "source"),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from the operators' variables; unset ones fall back to the embedded default.

        Items are read from a local ``source/`` folder only while no data root points
        elsewhere; once ``WAREHOUSE``, ``STAGING`` or ``DELTA_PREFIX`` is set, items come
        from their real bucket unless ``SOURCE_ROOT`` says otherwise.
        """
        env = os.environ if env is None else env
        base = cls.embedded(env.get("EARTHCATALOG_HOME") or None)
        configured = any(env.get(name) for name in ("WAREHOUSE", "STAGING", "DELTA_PREFIX"))
        warehouse = _clean(env.get("WAREHOUSE")) or base.warehouse
        return replace(
            base,
            warehouse=warehouse,
            warehouse_hash=_clean(env.get("WAREHOUSE_HASH")) or hash_index_beside(warehouse),
            staging=_clean(env.get("STAGING")) or base.staging,
            delta_prefix=_clean(env.get("DELTA_PREFIX")) or base.delta_prefix,
            inventory=_clean(env.get("INVENTORY")) or base.inventory,
            catalog=env.get("CATALOG") or base.catalog,
            source_root=_clean(env.get("SOURCE_ROOT"))
            or (None if configured else base.source_root),
            aws_region=env.get("AWS_REGION") or DEFAULT_REGION,
            catalog_remote=_clean(env.get("CATALOG_REMOTE")),
        )

    def with_overrides(self, **fields: str | None) -> Settings:
        """A copy with the given fields replaced; ``None`` values keep the current one."""
        given = {name: value for name, value in fields.items() if value is not None}
        if "warehouse" in given and "warehouse_hash" not in given:
            given["warehouse_hash"] = hash_index_beside(given["warehouse"])
        return replace(self, **{k: _clean(v) if k != "catalog" else v for k, v in given.items()})


def _clean(uri: str | None) -> str | None:
    """Strip a trailing slash and make local paths absolute, leaving URIs alone."""
    if not uri:
        return None
    if "://" in uri:
        return uri.rstrip("/")
    return str(Path(uri).expanduser().resolve())
