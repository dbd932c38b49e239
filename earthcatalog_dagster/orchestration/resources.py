"""Resources: where the catalog lives and where the work runs.

Every field is optional: unset ones come from the operators' environment variables
(``WAREHOUSE``, ``WAREHOUSE_HASH``, ``STAGING``, ``DELTA_PREFIX``, ``INVENTORY``,
``CATALOG``, ``SOURCE_ROOT``) and then from the embedded default, through
:class:`~earthcatalog_dagster.config.Settings`, the one source of configuration.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from dagster import ConfigurableResource
from pydantic import Field
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import lock
from earthcatalog_dagster.core.partitioning import DEFAULT_RESOLUTION
from earthcatalog_dagster.pipeline.compute import run_tasks

T = TypeVar("T")
R = TypeVar("R")


class StorageRoots(ConfigurableResource):
    """The storage roots of the platform (local paths or ``s3://`` URIs)."""

    home: str | None = Field(default=None, description="Embedded root; $EARTHCATALOG_HOME")
    warehouse: str | None = Field(default=None, description="GeoParquet warehouse; $WAREHOUSE")
    warehouse_hash: str | None = Field(default=None, description="Hash index; $WAREHOUSE_HASH")
    staging: str | None = Field(default=None, description="Staging root; $STAGING")
    delta_prefix: str | None = Field(default=None, description="Deltas; $DELTA_PREFIX")
    inventory: str | None = Field(default=None, description="S3 Inventory root; $INVENTORY")
    source_root: str | None = Field(default=None, description="Item mirror; $SOURCE_ROOT")

    def settings(self) -> Settings:
        base = Settings.embedded(self.home) if self.home else Settings.from_env()
        return base.with_overrides(
            warehouse=self.warehouse,
            warehouse_hash=self.warehouse_hash,
            staging=self.staging,
            delta_prefix=self.delta_prefix,
            inventory=self.inventory,
            source_root=self.source_root,
        )


class IcebergCatalog(ConfigurableResource):
    """The SQLite Iceberg catalog holding ``earthcatalog.stac_items``."""

    catalog_path: str | None = Field(default=None, description="Local catalog.db; $CATALOG")
    h3_resolution: int = Field(
        default=DEFAULT_RESOLUTION,
        description="H3 resolution of a first build; later runs read it from the table",
    )

    use_lock: bool = Field(default=True, description="Hold the catalog lock while writing")
    lock_timeout_s: float = Field(default=600.0, description="How long to wait for the lock")

    def path(self, roots: Settings) -> str:
        return self.catalog_path or roots.catalog

    def locked(self, roots: Settings) -> AbstractContextManager[object]:
        """Hold the lock beside the catalog (one writer at a time), unless disabled."""
        uri = layout.catalog_lock(self.path(roots)) if self.use_lock else None
        return lock.held(uri, owner="earthcatalog-dagster", timeout=self.lock_timeout_s)

    def open(self, roots: Settings) -> SqlCatalog:
        return iceberg.open_catalog(self.path(roots), roots.warehouse)

    def load_table(self, roots: Settings) -> Table | None:
        return iceberg.load_table(self.open(roots))

    def resolution(self, roots: Settings) -> int:
        table = self.load_table(roots)
        return iceberg.table_resolution(table) if table is not None else self.h3_resolution

    def load_or_create_table(self, roots: Settings) -> Table:
        catalog = self.open(roots)
        table = iceberg.load_table(catalog)
        if table is None:
            table = iceberg.create_table(
                catalog,
                warehouse=roots.warehouse,
                resolution=self.h3_resolution,
                hash_index_path=roots.warehouse_hash,
            )
        return table


class DaskCompute(ConfigurableResource):
    """Where phase tasks run: ``synchronous``, ``local`` (a LocalCluster) or an address."""

    scheduler: str = Field(
        default_factory=lambda: os.environ.get("EARTHCATALOG_SCHEDULER", "local"),
        description="synchronous | local | coiled | tcp://host:8786 ($EARTHCATALOG_SCHEDULER)",
    )
    workers: int = Field(default=4, description="Worker processes of a local cluster")
    threads_per_worker: int = Field(default=1)

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        *,
        scheduler: str | None = None,
        workers: int | None = None,
        on_result: Callable[[R], Any] | None = None,
    ) -> list[R]:
        return run_tasks(
            fn,
            items,
            scheduler=scheduler or self.scheduler,
            workers=workers or self.workers,
            threads_per_worker=self.threads_per_worker,
            on_result=on_result,
        )
