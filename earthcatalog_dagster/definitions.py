"""The Dagster code location: ``dagster dev`` and ``dagster asset materialize`` load ``defs``."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from earthcatalog_dagster.orchestration.assets import ingest_assets
from earthcatalog_dagster.orchestration.automation import (
    automation_jobs,
    automation_schedules,
    automation_sensors,
)
from earthcatalog_dagster.orchestration.io_manager import StagingIOManager
from earthcatalog_dagster.orchestration.maintenance import (
    maintenance_assets,
    maintenance_checks,
    maintenance_job,
    maintenance_schedule,
)
from earthcatalog_dagster.orchestration.resources import (
    DaskCompute,
    DataPlaneS3,
    IcebergCatalog,
    StorageRoots,
)


def build_definitions(
    roots: StorageRoots | None = None,
    catalog: IcebergCatalog | None = None,
    compute: DaskCompute | None = None,
    s3: DataPlaneS3 | None = None,
) -> Definitions:
    """The code location; tests pass their own resources.

    The six steps of a run form a chain, and their heavy work fans out on Dask, so steps
    run in the run's own process (the in-process executor, which honours concurrency
    pools): a process per step would only add seconds of imports to each.

    ``s3`` (:class:`DataPlaneS3`, a ``dagster_aws.s3.S3Resource``; its unset fields fall
    back to the AWS environment variables) configures every S3 access of the data plane.
    """
    roots = roots or StorageRoots()
    s3 = s3 or DataPlaneS3()
    return Definitions(
        assets=[*ingest_assets, *maintenance_assets],
        asset_checks=maintenance_checks,
        # Schedules (02:00 delta, 04:00 ingest, Sunday 06:00 maintenance) and the
        # pending-delta sensor: all stopped by default (orchestration/automation.py and
        # orchestration/maintenance.py).
        jobs=[*automation_jobs, maintenance_job],
        schedules=[*automation_schedules, maintenance_schedule],
        sensors=automation_sensors,
        executor=in_process_executor,
        resources={
            "roots": roots,
            "catalog": catalog or IcebergCatalog(),
            "compute": compute or DaskCompute(),
            "s3": s3,
            "staging_io_manager": StagingIOManager(staging_root=roots.settings().staging, s3=s3),
        },
    )


defs = build_definitions()
