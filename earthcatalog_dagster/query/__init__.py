"""The reading side: exact item search over the catalog, and a read-only STAC API.

No Dagster here. :func:`search` parses the parameters (:mod:`.params`), plans the files
to read (:mod:`.plan`: H3 cover, time and property statistics, bbox statistics), reads and
filters them exactly (:mod:`.execute`, :mod:`.geometry`, :mod:`.filters`) and hands back a
:class:`SearchResult` (:mod:`.result`). :mod:`.server` serves the same as a STAC API.
"""

from __future__ import annotations

from earthcatalog_dagster.query.params import QueryError
from earthcatalog_dagster.query.result import Explain, SearchResult
from earthcatalog_dagster.query.search import open_table, search

__all__ = ["Explain", "QueryError", "SearchResult", "open_table", "search"]
