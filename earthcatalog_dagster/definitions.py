"""The Dagster code location: ``dagster dev`` and ``dagster asset materialize`` load ``defs``."""

from __future__ import annotations

from dagster import Definitions

from earthcatalog_dagster.orchestration.assets import ingest_assets
from earthcatalog_dagster.orchestration.io_manager import StagingIOManager
from earthcatalog_dagster.orchestration.resources import DaskCompute, IcebergCatalog, StorageRoots


def build_definitions(
    roots: StorageRoots | None = None,
    catalog: IcebergCatalog | None = None,
    compute: DaskCompute | None = None,
) -> Definitions:
    """The code location; tests and the demo pass their own resources."""
    roots = roots or StorageRoots()
    return Definitions(
        assets=ingest_assets,
        resources={
            "roots": roots,
            "catalog": catalog or IcebergCatalog(),
            "compute": compute or DaskCompute(),
            "staging_io_manager": StagingIOManager(staging_root=roots.settings().staging),
        },
    )


defs = build_definitions()
