"""Resources: where the catalog lives and where the work runs.

Every field is optional: unset ones come from the operators' environment variables
(``WAREHOUSE``, ``WAREHOUSE_HASH``, ``STAGING``, ``DELTA_PREFIX``, ``INVENTORY``,
``CATALOG``, ``CATALOG_REMOTE``, ``SOURCE_ROOT``) and then from the embedded default,
through :class:`~earthcatalog_dagster.config.Settings`, the one source of configuration.

S3 is configured the Dagster way, with :class:`DataPlaneS3` (resource ``s3``, a
``dagster_aws.s3.S3Resource``): it hands its settings to the data plane once, when Dagster
initializes it, and carries them to Dask workers. Its fields left unset fall back to the
usual AWS environment variables. Credentials go nowhere else: not into logs, metadata,
descriptors or error messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from dagster import ConfigurableResource, InitResourceContext
from dagster_aws.s3 import S3Resource
from pydantic import Field

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core.partitioning import DEFAULT_RESOLUTION
from earthcatalog_dagster.options import DEFAULTS, IngestOptions
from earthcatalog_dagster.pipeline.compute import (
    S3Task,
    configure_data_plane,
    run_tasks,
)

__all__ = [
    "DaskCompute",
    "DataPlaneS3",
    "IcebergCatalog",
    "S3Task",
    "StorageRoots",
    "configure_data_plane",
    "run_options",
]

T = TypeVar("T")
R = TypeVar("R")


class DataPlaneS3(S3Resource):
    """``dagster_aws``'s S3 resource (resource ``s3``), which also configures the data plane.

    Dagster calls :meth:`setup_for_execution` once when it initializes the resource for a
    run, a sensor tick or the IO manager, so the S3 settings of every data-plane access
    (:mod:`~earthcatalog_dagster.core.storage`, obstore) come from here, set in one place;
    :meth:`task` carries them to Dask worker processes. Fields left unset fall back to the
    usual AWS environment variables. ``profile_name`` is resolved with boto3 (the profile's
    region and current credentials). Sources are read unsigned whatever
    ``use_unsigned_session`` says, and writes are signed.

    ``context.resources.s3`` is a boto3 S3 client, as with ``S3Resource``, built on first
    use: the platform's own code never uses it, and building one loads botocore's service
    models (~2 s of every run and sensor tick otherwise).
    """

    def setup_for_execution(self, context: InitResourceContext) -> None:
        configure_data_plane(self.data_plane_settings())

    def get_object_to_set_on_execution_context(self) -> Any:
        return LazyClient(self.get_client)

    def data_plane_settings(self) -> dict[str, str]:
        """The S3 settings this resource gives the data plane (credentials included)."""
        settings = {
            "region": self.region_name,
            "endpoint_url": self.endpoint_url,
            "access_key_id": self.aws_access_key_id,
            "secret_access_key": self.aws_secret_access_key,
            "session_token": self.aws_session_token,
        }
        if self.profile_name and not self.aws_access_key_id:
            import boto3

            session = boto3.Session(profile_name=self.profile_name)
            settings["region"] = settings["region"] or session.region_name
            credentials = session.get_credentials()
            if credentials is not None:
                frozen = credentials.get_frozen_credentials()
                settings["access_key_id"] = frozen.access_key
                settings["secret_access_key"] = frozen.secret_key
                settings["session_token"] = frozen.token
        return {k: v for k, v in settings.items() if v}

    def task(self, fn: Callable[[T], R]) -> S3Task[T, R]:
        """``fn`` wrapped to run with this resource's S3 settings wherever it runs."""
        return S3Task(fn, self.data_plane_settings())


class LazyClient:
    """A client built by ``build`` on first attribute access, then used as is."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._client is None:
            self._client = self._build()
        return getattr(self._client, name)


class StorageRoots(ConfigurableResource):
    """The storage roots of the platform (local paths or ``s3://`` URIs)."""

    home: str | None = Field(default=None, description="Embedded root; $EARTHCATALOG_HOME")
    warehouse: str | None = Field(default=None, description="GeoParquet warehouse; $WAREHOUSE")
    warehouse_hash: str | None = Field(default=None, description="Hash index; $WAREHOUSE_HASH")
    staging: str | None = Field(default=None, description="Staging root; $STAGING")
    delta_prefix: str | None = Field(default=None, description="Deltas; $DELTA_PREFIX")
    inventory: str | None = Field(default=None, description="S3 Inventory root; $INVENTORY")
    source_root: str | None = Field(default=None, description="Item mirror; $SOURCE_ROOT")

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageRoots:
        """The resource holding exactly these roots (tests, benchmarks, scripts)."""
        return cls(
            home=settings.home,
            warehouse=settings.warehouse,
            warehouse_hash=settings.warehouse_hash,
            staging=settings.staging,
            delta_prefix=settings.delta_prefix,
            inventory=settings.inventory,
            source_root=settings.source_root,
        )

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
    """The SQLite Iceberg catalog holding ``earthcatalog.stac_items``, and the commit settings.

    Commits go through the one commit path (:mod:`earthcatalog_dagster.pipeline.commit`);
    this resource only says where the catalog is and how to hold it.
    """

    catalog_path: str | None = Field(default=None, description="Local catalog.db; $CATALOG")
    remote_uri: str | None = Field(
        default=None,
        description="Shared catalog.db (s3://.../earthcatalog.db), with its lock; $CATALOG_REMOTE",
    )
    skip_upload: bool = Field(
        default=DEFAULTS.skip_upload, description="Do not upload catalog.db to the remote (testing)"
    )
    h3_resolution: int | None = Field(
        default=DEFAULT_RESOLUTION,
        description=(
            "The deployment's H3 resolution: the resolution of a first build (the operators "
            f"use {DEFAULT_RESOLUTION}); on an existing table a different value is refused "
            "(a table never holds two resolutions). Unset: follow the table, and a first "
            "build fails asking for one"
        ),
    )
    use_lock: bool = Field(
        default=DEFAULTS.use_lock, description="Hold the catalog lock while committing"
    )
    lock_timeout_s: float = Field(
        default=DEFAULTS.lock_timeout, description="Seconds to wait for the catalog lock"
    )

    def settings(self, roots: Settings) -> Settings:
        """``roots`` with this resource's catalog locations, where set."""
        return roots.with_overrides(catalog=self.catalog_path, catalog_remote=self.remote_uri)

    def option_values(self) -> dict[str, Any]:
        """This resource's share of the run's :class:`IngestOptions`."""
        return {
            "h3_resolution": self.h3_resolution,
            "use_lock": self.use_lock,
            "lock_timeout": self.lock_timeout_s,
            "skip_upload": self.skip_upload,
        }


#: The deployment's scheduler when neither ``$EARTHCATALOG_SCHEDULER`` nor the resource's
#: field says one: ``auto`` (:func:`~earthcatalog_dagster.pipeline.compute.resolve_scheduler`)
#: runs a step's tasks in a pool of one process per CPU (one task: in the step's own
#: process). A daily partition (tens of thousands of items) on a 2-core CI runner spent
#: more time starting a Dask ``LocalCluster`` (a scheduler, nannies, four workers each
#: importing everything, once per step) than working, and a pool forked from one
#: pre-imported server uses both cores just the same. ``local`` (a LocalCluster),
#: ``synchronous`` or a ``tcp://`` address remain one setting away.
DEFAULT_SCHEDULER = "auto"


class DaskCompute(ConfigurableResource):
    """Where phase tasks run: ``auto`` (default), ``processes``, ``synchronous``,
    ``local`` (a Dask LocalCluster), ``coiled`` or a scheduler address.

    ``$EARTHCATALOG_SCHEDULER`` overrides the default scheduler (:data:`DEFAULT_SCHEDULER`);
    ``workers`` and ``threads_per_worker`` default to the ingest defaults
    (:data:`~earthcatalog_dagster.options.DEFAULTS`); ``processes``/``auto`` never start
    more processes than there are CPUs.
    """

    scheduler: str = Field(
        default_factory=lambda: os.environ.get("EARTHCATALOG_SCHEDULER", DEFAULT_SCHEDULER),
        description=(
            "auto | processes | synchronous | local | coiled | tcp://host:8786 "
            "($EARTHCATALOG_SCHEDULER)"
        ),
    )
    workers: int = Field(
        default=DEFAULTS.workers, description="Worker processes (local; at most the CPUs for auto)"
    )
    threads_per_worker: int = Field(
        default=DEFAULTS.threads_per_worker, description="Threads of each local worker"
    )

    def option_values(self) -> dict[str, Any]:
        """This resource's share of the run's :class:`IngestOptions`."""
        return {
            "scheduler": self.scheduler,
            "workers": self.workers,
            "threads_per_worker": self.threads_per_worker,
        }

    def map(
        self,
        fn: Callable[[T], R],
        items: Sequence[T],
        options: IngestOptions,
        *,
        on_result: Callable[[R], Any] | None = None,
    ) -> list[R]:
        """``[fn(item) for item in items]`` on the scheduler ``options`` name."""
        return run_tasks(
            fn,
            items,
            scheduler=options.scheduler,
            workers=options.workers,
            threads_per_worker=options.threads_per_worker,
            on_result=on_result,
        )


def run_options(
    catalog: IcebergCatalog, compute: DaskCompute | None = None, **config: Any
) -> IngestOptions:
    """One step's :class:`IngestOptions`: the defaults, then the resources' values, then
    the step's ``Config`` fields (``None``: not set there). Raises :class:`OptionError`
    naming the setting when a value is unusable."""
    values = {**catalog.option_values(), **(compute.option_values() if compute else {})}
    values.update({k: v for k, v in config.items() if v is not None})
    return DEFAULTS.with_values(**values)
