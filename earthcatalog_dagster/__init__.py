"""earthcatalog-dagster: keep the ITS_LIVE STAC catalog current, with Dagster as control plane.

``ingest()`` is the single-node path for daily deltas, ``bulk_ingest()`` the distributed
4-phase path for backfills; the Dagster code location lives in
:mod:`earthcatalog_dagster.definitions`. Entry points are imported on first use, so that
importing a small module (``config``, ``layout``) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from earthcatalog_dagster.pipeline.bulk import BulkSummary, bulk_ingest
    from earthcatalog_dagster.pipeline.ingest import IngestSummary, ingest
    from earthcatalog_dagster.pipeline.maintenance.compact import CompactionResult, compact
    from earthcatalog_dagster.query import SearchResult, search

__version__ = "0.1.0"
__all__ = [
    "BulkSummary",
    "CompactionResult",
    "IngestSummary",
    "SearchResult",
    "__version__",
    "bulk_ingest",
    "compact",
    "ingest",
    "search",
]


def __getattr__(name: str) -> Any:
    if name in ("ingest", "IngestSummary"):
        from earthcatalog_dagster.pipeline import ingest as module

        return getattr(module, name)
    if name in ("bulk_ingest", "BulkSummary"):
        from earthcatalog_dagster.pipeline import bulk

        return getattr(bulk, name)
    if name in ("compact", "CompactionResult"):
        from earthcatalog_dagster.pipeline.maintenance import compact as compaction

        return getattr(compaction, name)
    if name in ("search", "SearchResult"):
        from earthcatalog_dagster import query

        return getattr(query, name)
    raise AttributeError(f"module 'earthcatalog_dagster' has no attribute {name!r}")
