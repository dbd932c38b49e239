"""The STAC API over a catalog on S3: the warehouse and the shared ``catalog.db`` on a moto
server (HTTP on 127.0.0.1), the server a subprocess reading them with the operators'
variables, queried with pystac-client and plain HTTP against the brute-force oracle."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pystac_client import Client
from shapely.geometry import box

from earthcatalog_dagster.core import storage
from earthcatalog_dagster_tests.query.oracle import Catalog, build_catalog
from earthcatalog_dagster_tests.query.serving import running_server
from earthcatalog_dagster_tests.s3_fixtures import S3Server, point_env_at, s3_settings

pytestmark = pytest.mark.slow

COLLECTION = "itslive-granules"
ALASKA = box(-150.0, 58.0, -135.0, 62.0)
#: Per request: a first whole-catalog search reads every file from moto, on a shared machine.
TIMEOUT_S = 120.0


@pytest.fixture(scope="module")
def s3_cat(s3_server: S3Server, tmp_path_factory) -> Iterator[Catalog]:
    """A catalog built with every root on S3 (the shared ``catalog.db`` too); the AWS
    variables point at moto only while it is built."""
    with pytest.MonkeyPatch.context() as patch:
        point_env_at(patch, s3_server.env())
        settings = s3_settings(str(tmp_path_factory.mktemp("s3-search") / "builder"))
        cat = build_catalog(settings)
        assert storage.exists(settings.catalog_remote)
        assert settings.warehouse.startswith("s3://")
        yield cat
    storage.configure_s3()


@pytest.fixture(scope="module")
def s3_api(s3_cat: Catalog, s3_server: S3Server, tmp_path_factory) -> Iterator[str]:
    """The server over the S3 catalog, with a home of its own (no local catalog in it)."""
    folder = tmp_path_factory.mktemp("s3-server")
    settings = s3_cat.settings
    env = s3_server.env() | {
        "EARTHCATALOG_HOME": str(folder / "home"),
        "WAREHOUSE": settings.warehouse,
        "WAREHOUSE_HASH": settings.warehouse_hash,
        "CATALOG_REMOTE": settings.catalog_remote or "",
    }
    with running_server(env, folder / "server.log") as url:
        yield url


def test_pystac_client_pages_over_s3(s3_api: str, s3_cat: Catalog) -> None:
    client = Client.open(s3_api)
    expected = s3_cat.ids(geometry=ALASKA)
    assert len(expected) > 8
    for method in ("GET", "POST"):
        search = client.search(bbox=list(ALASKA.bounds), limit=4, method=method)
        pages = list(search.pages_as_dicts())
        assert len(pages) > 1, method
        ids = [f["id"] for page in pages for f in page["features"]]
        assert len(ids) == len(set(ids)) and set(ids) == expected, method
        assert search.matched() == len(expected)
    first = sorted(expected)[0]
    item = next(client.search(ids=[first]).items_as_dicts())
    assert item == s3_cat.expected[first]


def test_plain_http_over_s3(s3_api: str, s3_cat: Catalog) -> None:
    url: str | None = f"{s3_api}/search?limit=60&sortby=id"
    seen: list[str] = []
    pages = 0
    while url:
        response = httpx.get(url, timeout=TIMEOUT_S)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["numberMatched"] == len(s3_cat.expected)
        seen += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
        pages += 1
    assert pages > 1 and seen == sorted(s3_cat.expected)

    collection = httpx.get(f"{s3_api}/collections/{COLLECTION}", timeout=TIMEOUT_S).json()
    assert collection["earthcatalog:items"] == len(s3_cat.expected)
    item_id = sorted(s3_cat.expected)[5]
    response = httpx.get(f"{s3_api}/collections/{COLLECTION}/items/{item_id}", timeout=TIMEOUT_S)
    assert response.status_code == 200 and response.json() == s3_cat.expected[item_id]

    body = {"filter": "percent_valid_pixels > 60", "limit": 500}
    found = httpx.post(f"{s3_api}/search", json=body, timeout=TIMEOUT_S).json()
    assert {f["id"] for f in found["features"]} == s3_cat.ids(
        where=lambda p: p["percent_valid_pixels"] > 60
    )
