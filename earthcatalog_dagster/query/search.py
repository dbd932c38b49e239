"""``search()``: STAC API Item Search over the catalog, exact and from one snapshot."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from pyiceberg.table import Table

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.query.params import build_params
from earthcatalog_dagster.query.plan import plan_search
from earthcatalog_dagster.query.result import SearchResult


def open_table(
    settings: Settings | None = None,
    *,
    catalog: str | None = None,
    warehouse: str | None = None,
    catalog_remote: str | None = None,
) -> Table:
    """The table to read, read-only: the local catalog, or a private copy of the shared
    remote one (:func:`~earthcatalog_dagster.pipeline.commit.readable_catalog`).

    Raises ``FileNotFoundError`` when there is no catalog or no table yet.
    """
    import os

    from earthcatalog_dagster.core import catalog as iceberg
    from earthcatalog_dagster.pipeline.commit import readable_catalog

    cfg = (settings or Settings.from_env()).with_overrides(
        catalog=catalog, warehouse=warehouse, catalog_remote=catalog_remote
    )
    # An explicit local catalog wins over a remote copy.
    path = cfg.catalog if catalog else readable_catalog(cfg)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no catalog at {path}: nothing has been ingested there yet")
    table = iceberg.load_table(iceberg.open_catalog(path, cfg.warehouse))
    if table is None:
        raise FileNotFoundError(f"the catalog {path} holds no table yet")
    return table


def search(
    *,
    bbox: Sequence[float] | str | None = None,
    intersects: Any = None,
    datetime: str | dt.datetime | Sequence[Any] | None = None,
    ids: Iterable[str] | str | None = None,
    collections: Iterable[str] | str | None = None,
    filter: Any = None,
    filter_lang: str | None = None,
    fields: Any = None,
    sortby: Any = None,
    limit: int | None = None,
    as_of: int | str | dt.datetime | None = None,
    settings: Settings | None = None,
    catalog: str | None = None,
    warehouse: str | None = None,
    catalog_remote: str | None = None,
    table: Table | None = None,
) -> SearchResult:
    """Find the catalog's STAC items by place, time, id and properties — exactly.

    The answer holds every item whose geometry intersects the query geometry (shapely on
    the stored WKB, antimeridian and polar footprints read as the fan-out reads them) and
    that passes every other parameter, and no other item; each item once, although it is
    stored once per H3 cell it overlaps; all from one snapshot of the table. Files are
    pruned by H3 cell, by the time and property statistics of the table, then by the bbox
    statistics of each file, and read in parallel, only the needed columns.

    Args:
        bbox: ``[west, south, east, north]`` (or the same as ``"W,S,E,N"``); ``west > east``
            crosses the antimeridian. Not together with ``intersects``.
        intersects: a GeoJSON geometry (dict or JSON text) or a shapely geometry, lon/lat.
            A polygon ring stepping more than 180° of longitude (``170 → -170``) crosses
            the antimeridian and is cut there, as stored footprints are read (add
            vertices to mean an edge longer than 180°).
        datetime: an RFC 3339 instant or interval ``start/end``, ``..`` for an open end (or a
            ``datetime``, or a ``(start, end)`` pair); a bare date is the whole day. Items
            with ``start_datetime``/``end_datetime`` match when their range overlaps it.
        ids: item ids (a list, or comma-separated text).
        collections: collection ids.
        filter: a CQL2 filter on the item properties, as CQL2 text, CQL2 JSON text or a dict.
        filter_lang: ``"cql2-text"`` or ``"cql2-json"`` (default: guessed).
        fields: the Fields extension: ``"id,properties.datetime,-assets"``, a list, or
            ``{"include": [...], "exclude": [...]}``.
        sortby: e.g. ``"-datetime"``, ``["platform", "-percent_valid_pixels"]`` or the STAC
            API form ``[{"field": "datetime", "direction": "desc"}]``; ``id`` breaks ties.
        limit: the most items to return (after sorting); ``None``: all.
        as_of: read the snapshot with this id, or the one current at this time (datetime,
            RFC 3339 text or epoch milliseconds); default the current snapshot.
        settings: the roots; default the environment, then the embedded default.
        catalog, warehouse, catalog_remote: single roots overriding ``settings``.
        table: an already opened table (the server keeps one), instead of the roots.

    Returns:
        A :class:`~earthcatalog_dagster.query.result.SearchResult`; files are read on first
        use (``count()``, ``items()``, ``to_arrow()``, ...).

    Raises:
        QueryError: a malformed parameter (a ``ValueError``).
        FileNotFoundError: no catalog or no table at the given roots.
    """
    params = build_params(
        bbox=bbox,
        intersects=intersects,
        datetime=datetime,
        ids=ids,
        collections=collections,
        filter=filter,
        filter_lang=filter_lang,
        fields=fields,
        sortby=sortby,
        limit=limit,
    )
    if table is None:
        table = open_table(
            settings, catalog=catalog, warehouse=warehouse, catalog_remote=catalog_remote
        )
    return SearchResult(plan_search(table, params, as_of=as_of))
