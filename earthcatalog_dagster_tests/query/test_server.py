"""The STAC API: started as a subprocess on a free port, queried with pystac-client and
with plain HTTP, answers compared with the brute-force oracle."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import httpx
import pytest
from pystac_client import Client
from shapely.geometry import box

from earthcatalog_dagster_tests.query.oracle import Catalog, parse_time
from earthcatalog_dagster_tests.query.serving import running_server

pytestmark = pytest.mark.slow

COLLECTION = "itslive-granules"
ALASKA = box(-150.0, 58.0, -135.0, 62.0)


@pytest.fixture(scope="module")
def api(cat: Catalog, tmp_path_factory) -> Iterator[str]:
    """The server over ``cat``, in its own process group; stopped with the whole group."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with running_server({"EARTHCATALOG_HOME": cat.settings.home}, log) as url:
        yield url


def test_landing_and_conformance(api: str) -> None:
    landing = httpx.get(f"{api}/").json()
    assert landing["type"] == "Catalog" and landing["stac_version"] == "1.0.0"
    rels = {(link["rel"], link.get("method")) for link in landing["links"]}
    assert {("search", "GET"), ("search", "POST"), ("conformance", None), ("data", None)} <= rels
    classes = set(httpx.get(f"{api}/conformance").json()["conformsTo"])
    for suffix in (
        "core",
        "item-search",
        "collections",
        "ogcapi-features",
        "item-search#filter",
        "item-search#sort",
        "item-search#fields",
    ):
        assert any(c.endswith("/" + suffix) for c in classes), suffix
    assert "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text" in classes
    assert classes == set(landing["conformsTo"])


def test_collections_with_extent_and_count(api: str, cat: Catalog) -> None:
    listing = httpx.get(f"{api}/collections").json()
    assert [c["id"] for c in listing["collections"]] == [COLLECTION]
    collection = httpx.get(f"{api}/collections/{COLLECTION}").json()
    assert collection["type"] == "Collection"
    assert collection["earthcatalog:items"] == len(cat.expected)
    _west, south, _east, north = collection["extent"]["spatial"]["bbox"][0]
    for item in cat.expected.values():
        if "bbox" in item:
            assert south <= item["bbox"][1] and item["bbox"][3] <= north
    start, end = (parse_time(t) for t in collection["extent"]["temporal"]["interval"][0])
    for item in cat.expected.values():
        p = item["properties"]
        assert start <= parse_time(p["start_datetime"])
        assert parse_time(p["end_datetime"]) <= end


def test_pystac_client_search_pages(api: str, cat: Catalog) -> None:
    client = Client.open(api)
    expected = cat.ids(geometry=ALASKA)
    assert len(expected) > 5
    for method in ("GET", "POST"):
        search = client.search(bbox=list(ALASKA.bounds), limit=4, method=method)
        ids = [item.id for item in search.items()]
        assert len(ids) == len(set(ids)) and set(ids) == expected, method
        assert search.matched() == len(expected)
    # Items come back exactly as ingested.
    item = next(client.search(ids=[sorted(expected)[0]]).items_as_dicts())
    assert item == cat.expected[sorted(expected)[0]]


def test_pystac_client_filter_sort_fields(api: str, cat: Catalog) -> None:
    client = Client.open(api)
    expected = cat.ids(where=lambda p: p["percent_valid_pixels"] > 60 and p["platform"] != "S1A")
    for flt in (
        "percent_valid_pixels > 60 AND platform <> 'S1A'",
        {
            "op": "and",
            "args": [
                {"op": ">", "args": [{"property": "percent_valid_pixels"}, 60]},
                {"op": "<>", "args": [{"property": "platform"}, "S1A"]},
            ],
        },
    ):
        for method in ("GET", "POST"):
            if method == "GET" and isinstance(flt, dict):
                continue
            search = client.search(filter=flt, limit=50, method=method, sortby="-datetime")
            items = list(search.items_as_dicts())
            assert {i["id"] for i in items} == expected
            stamps = [i["properties"]["datetime"] for i in items]
            assert stamps == sorted(stamps, reverse=True)
    slim = client.search(
        bbox=list(ALASKA.bounds),
        fields={"include": ["id", "properties.datetime"], "exclude": []},
        method="POST",
    )
    item = next(slim.items_as_dicts())
    assert set(item["properties"]) == {"datetime"} and "assets" not in item


def test_plain_http_paging_links(api: str, cat: Catalog) -> None:
    url = f"{api}/search?limit=50&sortby=id"
    seen: list[str] = []
    pages = 0
    while url:
        response = httpx.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/geo+json")
        body = response.json()
        assert body["type"] == "FeatureCollection"
        assert body["numberMatched"] == len(cat.expected)
        seen += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
        pages += 1
    assert pages > 1 and seen == sorted(cat.expected)

    body = {"bbox": list(ALASKA.bounds), "limit": 3}
    first = httpx.post(f"{api}/search", json=body).json()
    nxt = next(link for link in first["links"] if link["rel"] == "next")
    assert nxt["method"] == "POST" and "token" in nxt["body"]
    second = httpx.post(nxt["href"], json=nxt["body"]).json()
    assert not {f["id"] for f in first["features"]} & {f["id"] for f in second["features"]}


def test_collection_items_and_one_item(api: str, cat: Catalog) -> None:
    bbox = ",".join(map(str, ALASKA.bounds))
    page = httpx.get(
        f"{api}/collections/{COLLECTION}/items",
        params={"bbox": bbox, "datetime": "2000-01-01T00:00:00Z/..", "limit": 100},
    ).json()
    start = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    assert {f["id"] for f in page["features"]} == cat.ids(geometry=ALASKA, start=start)
    assert any(link["rel"] == "collection" for link in page["links"])
    item_id = sorted(cat.expected)[3]
    response = httpx.get(f"{api}/collections/{COLLECTION}/items/{item_id}")
    assert response.status_code == 200 and response.json() == cat.expected[item_id]
    assert response.headers["content-type"].startswith("application/geo+json")


@pytest.mark.parametrize(
    ("path", "params", "status"),
    [
        ("/search", {"bbox": "1,2,3"}, 400),
        ("/search", {"bbox": "0,10,1,5"}, 400),
        ("/search", {"filter": "percent_valid_pixels >"}, 400),
        ("/search", {"datetime": "not-a-date"}, 400),
        ("/search", {"limit": "-1"}, 400),
        ("/search", {"sortby": "-nope"}, 400),
        ("/collections/nope", {}, 404),
        ("/collections/nope/items", {}, 404),
        (f"/collections/{COLLECTION}/items/no-such-item", {}, 404),
        ("/no/such/route", {}, 404),
    ],
)
def test_errors(api: str, path: str, params: dict, status: int) -> None:
    response = httpx.get(f"{api}{path}", params=params)
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"code", "description"} and body["description"]
    bad_post = httpx.post(f"{api}/search", json={"filter": {"op": "frob", "args": []}})
    assert bad_post.status_code == 400
