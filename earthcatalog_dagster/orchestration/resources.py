"""Resources: where the catalog lives and where the work runs.

Every field is optional: unset ones come from the operators' environment variables
(``WAREHOUSE``, ``WAREHOUSE_HASH``, ``STAGING``, ``DELTA_PREFIX``, ``INVENTORY``,
``CATALOG``, ``CATALOG_REMOTE``, ``SOURCE_ROOT``) and then from the embedded default,
through :class:`~earthcatalog_dagster.config.Settings`, the one source of configuration.

S3 is configured the Dagster way, with a ``dagster_aws.s3.S3Resource`` (resource ``s3``);
:func:`use_s3` hands its settings to the data plane (:mod:`~earthcatalog_dagster.core.storage`,
obstore) and :func:`with_s3` carries them to Dask workers. Its fields left unset fall back
to the usual AWS environment variables. Credentials go nowhere else: not into logs,
metadata, descriptors or error messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from pydantic import Field
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.table import Table

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import remote_catalog, storage
from earthcatalog_dagster.core.partitioning import DEFAULT_RESOLUTION
from earthcatalog_dagster.pipeline.compute import run_tasks

T = TypeVar("T")
R = TypeVar("R")

_S3_SETTINGS = ("region", "endpoint_url", "access_key_id", "secret_access_key", "session_token")


def s3_settings(s3: S3Resource | None) -> dict[str, str]:
    """The data plane's S3 settings from an ``S3Resource`` (unset fields: the environment).

    ``profile_name`` is resolved with boto3 (the profile's region and current credentials).
    Sources are read unsigned whatever ``use_unsigned_session`` says, and writes are signed.
    """
    if s3 is None:
        return {}
    settings = {
        "region": s3.region_name,
        "endpoint_url": s3.endpoint_url,
        "access_key_id": s3.aws_access_key_id,
        "secret_access_key": s3.aws_secret_access_key,
        "session_token": s3.aws_session_token,
    }
    if s3.profile_name and not s3.aws_access_key_id:
        import boto3

        session = boto3.Session(profile_name=s3.profile_name)
        settings["region"] = settings["region"] or session.region_name
        credentials = session.get_credentials()
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            settings["access_key_id"] = frozen.access_key
            settings["secret_access_key"] = frozen.secret_key
            settings["session_token"] = frozen.token
    return {k: v for k, v in settings.items() if v}


def apply_s3_settings(settings: dict[str, str]) -> None:
    """Configure :mod:`storage` with ``settings`` unless it already is (stores stay cached)."""
    if storage.s3_overrides() != settings:
        storage.configure_s3(**settings)


def use_s3(s3: S3Resource | None) -> None:
    """Configure this process's data plane from the ``s3`` resource (once; cheap after)."""
    apply_s3_settings(s3_settings(s3))


class S3Task(Generic[T, R]):
    """``fn`` run with the data plane configured from ``s3``: for Dask worker processes.

    The settings travel with the task; ``repr`` shows none of them.
    """

    def __init__(self, fn: Callable[[T], R], s3: S3Resource | None) -> None:
        self.fn = fn
        self.settings = s3_settings(s3)

    def __call__(self, item: T) -> R:
        apply_s3_settings(self.settings)
        return self.fn(item)

    def __repr__(self) -> str:
        return f"S3Task({self.fn!r}, <{len(self.settings)} S3 settings>)"


def with_s3(fn: Callable[[T], R], s3: S3Resource | None) -> S3Task[T, R]:
    """``fn`` wrapped to configure the data plane from ``s3`` wherever it runs."""
    return S3Task(fn, s3)


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
    remote_uri: str | None = Field(
        default=None,
        description="Shared catalog.db (s3://.../earthcatalog.db), with its lock; $CATALOG_REMOTE",
    )
    skip_upload: bool = Field(
        default=False, description="Do not upload catalog.db to the remote (testing)"
    )
    h3_resolution: int = Field(
        default=DEFAULT_RESOLUTION,
        description="H3 resolution of a first build; later runs read it from the table",
    )

    use_lock: bool = Field(default=True, description="Hold the catalog lock while writing")
    lock_timeout_s: float = Field(default=600.0, description="How long to wait for the lock")

    def path(self, roots: Settings) -> str:
        return self.catalog_path or roots.catalog

    def remote(self, roots: Settings) -> str | None:
        return self.remote_uri or roots.catalog_remote

    def locked(self, roots: Settings) -> AbstractContextManager[remote_catalog.CatalogSession]:
        """One commit: lock, download the remote catalog, yield, upload if changed, release."""
        return remote_catalog.catalog_session(
            self.path(roots),
            self.remote(roots),
            use_lock=self.use_lock,
            skip_upload=self.skip_upload,
            owner="earthcatalog-dagster",
            lock_timeout=self.lock_timeout_s,
        )

    def open(self, roots: Settings) -> SqlCatalog:
        """The working copy inside :meth:`locked`; outside it, a fresh copy of the remote."""
        path, remote = self.path(roots), self.remote(roots)
        if remote is not None and not remote_catalog.is_held(path):
            path = remote_catalog.read_copy(remote)
        return iceberg.open_catalog(path, roots.warehouse)

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
