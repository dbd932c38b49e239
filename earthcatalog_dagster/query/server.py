"""A read-only STAC API 1.0 over the catalog, on FastAPI directly.

Why FastAPI and not stac-fastapi: stac-fastapi's value is its database backends (pgstac,
Elasticsearch); with our own engine (:func:`~earthcatalog_dagster.query.search`) it would
only add a large dependency tree and a second request model to map onto ours. The API
surface is small, so it is written out here, each route a thin layer over ``search()``:

* ``/`` landing page, ``/conformance``, ``/api`` (OpenAPI), ``/collections``,
  ``/collections/{id}``, ``/collections/{id}/items``, ``/collections/{id}/items/{item_id}``,
  ``/search`` GET and POST;
* Item Search with the Filter (CQL2 text and JSON), Sort and Fields extensions;
* paging by ``token`` (``<snapshot id>.<offset>``) with ``next`` links — a token pins the
  snapshot, so the pages of one search never mix two versions of the table; a search's
  answer is cached (a few recent ones) so that paging reads the files once;
* GeoJSON responses as ``application/geo+json``; errors as STAC API JSON
  ``{"code", "description"}``: 400 for a bad parameter (bbox, datetime, CQL2, ...), 404 for
  an unknown collection or item.

The table is reopened at most every ``refresh_seconds`` (a remote catalog is a download),
so new snapshots show up without a restart.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pyiceberg.table import Table
from starlette.exceptions import HTTPException as StarletteHTTPException

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.query.collections import CollectionSummary, summarize_collections
from earthcatalog_dagster.query.params import QueryError
from earthcatalog_dagster.query.result import SearchResult
from earthcatalog_dagster.query.search import open_table, search

STAC_VERSION = "1.0.0"
GEOJSON = "application/geo+json"
DEFAULT_LIMIT = 10
MAX_LIMIT = 10_000
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#fields",
    "https://api.stacspec.org/v1.0.0/item-search#sort",
    "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#fields",
    "https://api.stacspec.org/v1.0.0/ogcapi-features#sort",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/temporal-functions",
]
#: Search parameters a GET query string or POST body may carry.
SEARCH_KEYS = (
    "bbox",
    "intersects",
    "datetime",
    "ids",
    "collections",
    "filter",
    "filter-lang",
    "sortby",
    "fields",
    "limit",
    "token",
)


class NotFound(Exception):
    """An unknown collection or item: a 404."""


class State:
    """The table (reopened every ``refresh_seconds``), its collections and recent answers."""

    def __init__(self, settings: Settings, refresh_seconds: float, cache_size: int = 32):
        self.settings = settings
        self.refresh_seconds = refresh_seconds
        self.cache_size = cache_size
        self._lock = threading.Lock()
        self._table: Table | None = None
        self._opened = 0.0
        self._collections: dict[int | None, dict[str, CollectionSummary]] = {}
        self._answers: OrderedDict[str, SearchResult] = OrderedDict()

    def table(self) -> Table:
        with self._lock:
            if self._table is None or time.monotonic() - self._opened > self.refresh_seconds:
                self._table = open_table(self.settings)
                self._opened = time.monotonic()
            return self._table

    def snapshot_id(self) -> int | None:
        snapshot = self.table().current_snapshot()
        return snapshot.snapshot_id if snapshot else None

    def collections(self) -> dict[str, CollectionSummary]:
        table, snapshot = self.table(), self.snapshot_id()
        with self._lock:
            if snapshot not in self._collections:
                self._collections = {
                    snapshot: summarize_collections(table, snapshot, self.settings.warehouse_hash)
                }
            return self._collections[snapshot]

    def answer(self, params: dict[str, Any], snapshot: int | None) -> SearchResult:
        key = json.dumps([params, snapshot], sort_keys=True, default=str)
        with self._lock:
            if key in self._answers:
                self._answers.move_to_end(key)
                return self._answers[key]
        result = search(**params, as_of=snapshot, table=self.table()).read()
        with self._lock:
            self._answers[key] = result
            while len(self._answers) > self.cache_size:
                self._answers.popitem(last=False)
        return result


def create_app(settings: Settings | None = None, *, refresh_seconds: float = 10.0) -> FastAPI:
    """The STAC API application over the catalog at ``settings`` (see the module doc)."""
    state = State(settings or Settings.from_env(), refresh_seconds)
    app = FastAPI(
        title="earthcatalog STAC API",
        description="Read-only STAC API 1.0 over the ITS_LIVE catalog (earthcatalog-dagster).",
        openapi_url="/api",
        docs_url="/api.html",
        redoc_url=None,
    )
    app.state.catalog = state

    @app.exception_handler(QueryError)
    async def bad_query(_request: Request, exc: QueryError) -> JSONResponse:
        return _error(400, "BadRequest", str(exc))

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "BadRequest", str(exc.errors()))

    @app.exception_handler(NotFound)
    async def not_found(_request: Request, exc: NotFound) -> JSONResponse:
        return _error(404, "NotFound", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "NotFound" if exc.status_code == 404 else "HTTPError"
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(FileNotFoundError)
    async def no_catalog(_request: Request, exc: FileNotFoundError) -> JSONResponse:
        return _error(503, "ServiceUnavailable", str(exc))

    @app.get("/")
    def landing(request: Request) -> JSONResponse:
        base = _base(request)
        links = [
            _link("self", f"{base}/", "application/json"),
            _link("root", f"{base}/", "application/json"),
            _link("conformance", f"{base}/conformance", "application/json"),
            _link("data", f"{base}/collections", "application/json"),
            {**_link("search", f"{base}/search", GEOJSON), "method": "GET"},
            {**_link("search", f"{base}/search", GEOJSON), "method": "POST"},
            _link("service-desc", f"{base}/api", "application/vnd.oai.openapi+json;version=3.0"),
            _link("service-doc", f"{base}/api.html", "text/html"),
            _link(
                "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                f"{base}/queryables",
                "application/schema+json",
            ),
        ]
        for name in sorted(state.collections()):
            links.append(_link("child", f"{base}/collections/{name}", "application/json"))
        return JSONResponse(
            {
                "type": "Catalog",
                "stac_version": STAC_VERSION,
                "id": "earthcatalog",
                "title": "earthcatalog: ITS_LIVE STAC catalog",
                "description": "Read-only STAC API over the spatially partitioned ITS_LIVE "
                "catalog (GeoParquet warehouse + Iceberg table).",
                "conformsTo": CONFORMANCE,
                "links": links,
            }
        )

    @app.get("/conformance")
    def conformance() -> dict[str, Any]:
        return {"conformsTo": CONFORMANCE}

    @app.get("/queryables")
    def queryables(request: Request) -> JSONResponse:
        from earthcatalog_dagster.core.schema import PROPERTIES, Kind

        types = {
            Kind.STRING: {"type": "string"},
            Kind.INTEGER: {"type": "integer"},
            Kind.FLOAT: {"type": "number"},
            Kind.TIMESTAMP: {"type": "string", "format": "date-time"},
        }
        properties = {p.name: types[p.kind] for p in PROPERTIES}
        properties.update(
            id={"type": "string"},
            collection={"type": "string"},
            geometry={"$ref": "https://geojson.org/schema/Geometry.json"},
        )
        return JSONResponse(
            {
                "$schema": "https://json-schema.org/draft/2019-09/schema",
                "$id": f"{_base(request)}/queryables",
                "type": "object",
                "title": "Queryables",
                "properties": properties,
                "additionalProperties": True,
            },
            media_type="application/schema+json",
        )

    @app.get("/collections")
    def collections(request: Request) -> dict[str, Any]:
        base = _base(request)
        return {
            "collections": [c.to_stac(base) for _, c in sorted(state.collections().items())],
            "links": [
                _link("self", f"{base}/collections", "application/json"),
                _link("root", f"{base}/", "application/json"),
                _link("parent", f"{base}/", "application/json"),
            ],
        }

    @app.get("/collections/{collection_id}")
    def collection(collection_id: str, request: Request) -> dict[str, Any]:
        return _collection(state, collection_id).to_stac(_base(request))

    @app.get("/collections/{collection_id}/items")
    def collection_items(collection_id: str, request: Request) -> JSONResponse:
        _collection(state, collection_id)
        params = _query_params(request)
        params["collections"] = [collection_id]
        return _items_page(state, request, params, method="GET", collection_id=collection_id)

    @app.get("/collections/{collection_id}/items/{item_id}")
    def item(collection_id: str, item_id: str) -> JSONResponse:
        _collection(state, collection_id)
        result = state.answer({"ids": [item_id], "collections": [collection_id]}, None)
        found = result.page(0, 1)
        if not found:
            raise NotFound(f"no item {item_id!r} in collection {collection_id!r}")
        return JSONResponse(found[0], media_type=GEOJSON)

    @app.get("/search")
    def search_get(request: Request) -> JSONResponse:
        return _items_page(state, request, _query_params(request), method="GET")

    @app.post("/search")
    async def search_post(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            raise QueryError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise QueryError("the request body must be a JSON object")
        unknown = sorted(set(body) - set(SEARCH_KEYS) - {"filter_lang", "conf", "context"})
        if unknown:
            raise QueryError(f"unknown search parameter(s): {', '.join(unknown)}")
        return _items_page(state, request, dict(body), method="POST")

    return app


# --- helpers ----------------------------------------------------------------------------------


def _error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"code": code, "description": description}, status_code=status)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _link(rel: str, href: str, media_type: str) -> dict[str, Any]:
    return {"rel": rel, "href": href, "type": media_type}


def _collection(state: State, collection_id: str) -> CollectionSummary:
    summaries = state.collections()
    if collection_id not in summaries:
        raise NotFound(f"no collection {collection_id!r}")
    return summaries[collection_id]


def _query_params(request: Request) -> dict[str, Any]:
    """The search parameters of a GET query string (JSON where the API says so)."""
    query = request.query_params
    out: dict[str, Any] = {}
    for key in SEARCH_KEYS:
        value = query.get(key)
        if value is None or value == "":
            continue
        if key == "intersects":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise QueryError("intersects must be a GeoJSON geometry (JSON)") from None
        out[key] = value
    return out


def _items_page(
    state: State,
    request: Request,
    params: dict[str, Any],
    *,
    method: str,
    collection_id: str | None = None,
) -> JSONResponse:
    """One page of a search as an ItemCollection with ``next``/``prev`` links."""
    limit = _page_size(params.pop("limit", None))
    token = params.pop("token", None)
    snapshot, offset = _parse_token(token) if token else (state.snapshot_id(), 0)
    search_params = {
        "bbox": params.get("bbox"),
        "intersects": params.get("intersects"),
        "datetime": params.get("datetime"),
        "ids": params.get("ids"),
        "collections": params.get("collections"),
        "filter": params.get("filter"),
        "filter_lang": params.get("filter-lang") or params.get("filter_lang"),
        "sortby": params.get("sortby"),
        "fields": params.get("fields"),
    }
    search_params = {k: v for k, v in search_params.items() if v is not None}
    result = state.answer(search_params, snapshot)
    matched = result.count()
    features = result.page(offset, limit)
    base = _base(request)
    self_href = str(request.url)
    links = [
        _link("self", self_href, GEOJSON),
        _link("root", f"{base}/", "application/json"),
    ]
    if collection_id is not None:
        links.append(_link("collection", f"{base}/collections/{collection_id}", "application/json"))
        links.append(_link("parent", f"{base}/collections/{collection_id}", "application/json"))
    if offset + limit < matched:
        links.append(_page_link("next", request, params, method, snapshot, offset + limit, limit))
    if offset > 0:
        links.append(
            _page_link("prev", request, params, method, snapshot, max(0, offset - limit), limit)
        )
    body = {
        "type": "FeatureCollection",
        "features": features,
        "links": links,
        "numberMatched": matched,
        "numberReturned": len(features),
        "context": {"limit": limit, "matched": matched, "returned": len(features)},
    }
    return JSONResponse(body, media_type=GEOJSON)


def _page_size(value: Any) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise QueryError(f"limit must be a positive integer, got {value!r}") from None
    if limit < 1:
        raise QueryError(f"limit must be a positive integer, got {value!r}")
    return min(limit, MAX_LIMIT)


def _parse_token(token: str) -> tuple[int | None, int]:
    try:
        snapshot, offset = str(token).split(".", 1)
        return (int(snapshot) if snapshot else None), int(offset)
    except ValueError:
        raise QueryError(f"invalid paging token {token!r}") from None


def _page_link(
    rel: str,
    request: Request,
    params: dict[str, Any],
    method: str,
    snapshot: int | None,
    offset: int,
    limit: int,
) -> dict[str, Any]:
    token = f"{snapshot if snapshot is not None else ''}.{offset}"
    if method == "POST":
        return {
            **_link(rel, str(request.url), GEOJSON),
            "method": "POST",
            "body": {**params, "limit": limit, "token": token},
            "merge": False,
        }
    query = dict(request.query_params)
    query.update(token=token, limit=str(limit))
    return _link(rel, str(request.url.replace_query_params(**query)), GEOJSON)


def serve(settings: Settings | None = None, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the API with uvicorn until interrupted."""
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
