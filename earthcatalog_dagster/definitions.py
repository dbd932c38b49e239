"""The Dagster code location: ``dagster dev`` and ``dagster asset materialize`` load ``defs``."""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from earthcatalog_dagster.orchestration.assets import ingest_assets
from earthcatalog_dagster.orchestration.io_manager import StagingIOManager
from earthcatalog_dagster.orchestration.resources import DaskCompute, IcebergCatalog, StorageRoots


def build_definitions(
    roots: StorageRoots | None = None,
    catalog: IcebergCatalog | None = None,
    compute: DaskCompute | None = None,
) -> Definitions:
    """The code location; tests pass their own resources.

    The six steps of a run form a chain, and their heavy work fans out on Dask, so steps
    run in the run's own process (the in-process executor, which honours concurrency
    pools): a process per step would only add seconds of imports to each.
    """
    roots = roots or StorageRoots()
    return Definitions(
        assets=ingest_assets,
        executor=in_process_executor,
        resources={
            "roots": roots,
            "catalog": catalog or IcebergCatalog(),
            "compute": compute or DaskCompute(),
            "staging_io_manager": StagingIOManager(staging_root=roots.settings().staging),
        },
    )


defs = build_definitions()
