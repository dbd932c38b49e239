"""End to end: ``search()`` on an ingested catalog against a brute-force oracle.

The catalog holds two synthetic days (footprints spanning several H3 cells, across the
antimeridian, round the poles; items with start/end datetimes), ingested at H3 resolution
1, one snapshot per day. The oracle reads every source item and decides each query with
shapely directly on the footprint as GeoJSON describes it (the test helpers' own planar
reading of antimeridian and polar rings, independent of the code under test), and the STAC
datetime rules in plain Python.
"""

from __future__ import annotations

import datetime as dt
import json

import geopandas
import orjson
import pyarrow as pa
import pytest
import shapely
from shapely.geometry import Point, Polygon, box

from earthcatalog_dagster import ingest, search
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core.items import parse_items, table_to_items
from earthcatalog_dagster.query import QueryError
from earthcatalog_dagster_tests.conftest import DAY_1, local_and_s3
from earthcatalog_dagster_tests.helpers import write_day
from earthcatalog_dagster_tests.query.oracle import Catalog, area_of, parse_time

pytestmark = pytest.mark.slow


def _ids(result) -> set[str]:
    ids = [i["id"] for i in result.items()]
    assert len(ids) == len(set(ids)), "an item came back twice"
    return set(ids)


# --- space --------------------------------------------------------------------------------

ALASKA = box(-150.0, 58.0, -135.0, 62.0)
GREENLAND_POLY = Polygon([(-50, 65), (-30, 66), (-25, 75), (-45, 78), (-55, 72), (-50, 65)])


def test_catalog_has_items_in_several_cells(cat: Catalog) -> None:
    result = search(settings=cat.settings)
    explain = result.explain()
    assert result.count() == len(cat.expected)
    assert explain.duplicates_removed > 0  # items stored in several cells came back once
    assert explain.rows_matched > explain.items


def test_bbox(cat: Catalog) -> None:
    result = search(bbox=list(ALASKA.bounds), settings=cat.settings)
    expected = cat.ids(geometry=ALASKA)
    assert expected and _ids(result) == expected


def test_polygon(cat: Catalog) -> None:
    result = search(intersects=shapely.geometry.mapping(GREENLAND_POLY), settings=cat.settings)
    expected = cat.ids(geometry=GREENLAND_POLY)
    assert expected and _ids(result) == expected


def test_antimeridian_bbox(cat: Catalog) -> None:
    result = search(bbox=[175.0, 45.0, -170.0, 70.0], settings=cat.settings)
    query = shapely.union(box(175.0, 45.0, 180.0, 70.0), box(-180.0, 45.0, -170.0, 70.0))
    expected = cat.ids(geometry=query)
    assert expected and _ids(result) == expected
    # Footprints that really cross ±180 are among them.
    crossing = [i for i in expected if cat.expected[i]["bbox"][0] > cat.expected[i]["bbox"][2]]
    assert crossing


def test_antimeridian_polygon(cat: Catalog) -> None:
    """A GeoJSON polygon whose ring steps 175 → -170 crosses ±180 (it is not the band round
    the rest of the world): the same answer as the two boxes either side."""
    ring = [[175.0, 45.0], [-170.0, 45.0], [-170.0, 70.0], [175.0, 70.0], [175.0, 45.0]]
    result = search(intersects={"type": "Polygon", "coordinates": [ring]}, settings=cat.settings)
    query = shapely.union(box(175.0, 45.0, 180.0, 70.0), box(-180.0, 45.0, -170.0, 70.0))
    expected = cat.ids(geometry=query)
    assert expected and _ids(result) == expected
    assert expected != cat.ids(geometry=shapely.Polygon(ring))  # the planar reading differs
    assert [i for i in expected if cat.expected[i]["bbox"][0] > cat.expected[i]["bbox"][2]]


@pytest.mark.parametrize("lat", [90.0, -90.0])
def test_polar_point(cat: Catalog, lat: float) -> None:
    point = Point(0.0, lat)
    result = search(intersects={"type": "Point", "coordinates": [0.0, lat]}, settings=cat.settings)
    expected = cat.ids(geometry=point)
    assert expected and _ids(result) == expected


def test_point_with_no_item(cat: Catalog) -> None:
    result = search(intersects=Point(0.0, 0.0), settings=cat.settings)
    assert result.count() == 0 and list(result.items()) == []
    assert result.to_arrow().num_rows == 0


# --- time ---------------------------------------------------------------------------------


def test_instant_inside_a_pair_range(cat: Catalog) -> None:
    """An instant between a pair's two acquisitions (not its datetime) finds the pair."""
    item = next(iter(cat.expected.values()))
    start = parse_time(item["properties"]["start_datetime"])
    instant = start + dt.timedelta(seconds=1)
    result = search(datetime=instant.isoformat(), settings=cat.settings)
    expected = cat.ids(start=instant, end=instant)
    assert item["id"] in expected and _ids(result) == expected


def test_open_interval(cat: Catalog) -> None:
    start = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    result = search(datetime="2025-06-01T00:00:00Z/..", settings=cat.settings)
    expected = cat.ids(start=start)
    assert expected and _ids(result) == expected
    end = dt.datetime(2010, 1, 1, tzinfo=dt.UTC)
    before = search(datetime="../2010-01-01T00:00:00Z", settings=cat.settings)
    assert _ids(before) == cat.ids(end=end)


def test_interval_overlap_with_start_end(cat: Catalog) -> None:
    """A short interval inside a pair's range but away from its datetime still matches,
    also when the pair's datetime lies in another year (partition) than the interval."""
    long_pairs = [
        i
        for i in cat.expected.values()
        if parse_time(i["properties"]["datetime"]).year
        != parse_time(i["properties"]["start_datetime"]).year
    ]
    assert long_pairs
    item = long_pairs[0]
    start = parse_time(item["properties"]["start_datetime"]) + dt.timedelta(hours=1)
    end = start + dt.timedelta(hours=2)
    result = search(datetime=f"{start.isoformat()}/{end.isoformat()}", settings=cat.settings)
    expected = cat.ids(start=start, end=end)
    assert item["id"] in expected and _ids(result) == expected


def test_glacier_point_over_three_years(cat: Catalog) -> None:
    point = Point(-142.0, 60.2)
    start = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2022, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
    result = search(intersects=point, datetime="2020-01-01/2022-12-31", settings=cat.settings)
    assert _ids(result) == cat.ids(geometry=point, start=start, end=end)


# --- properties, ids, order ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("percent_valid_pixels > 60", lambda p: p["percent_valid_pixels"] > 60),
        (
            "percent_valid_pixels >= 40 AND platform = 'LC08'",
            lambda p: p["percent_valid_pixels"] >= 40 and p["platform"] == "LC08",
        ),
        (
            "platform = 'S1A' OR percent_valid_pixels < 10",
            lambda p: p["platform"] == "S1A" or p["percent_valid_pixels"] < 10,
        ),
        (
            "date_dt <= 24 AND NOT (platform LIKE 'LC%')",
            lambda p: p["date_dt"] <= 24 and not p["platform"].startswith("LC"),
        ),
    ],
)
def test_cql2(cat: Catalog, text: str, where) -> None:
    result = search(filter=text, settings=cat.settings)
    expected = cat.ids(where=where)
    assert expected and _ids(result) == expected


def test_cql2_json_with_space_andparse_time(cat: Catalog) -> None:
    query = {"op": ">", "args": [{"property": "percent_valid_pixels"}, 30]}
    result = search(
        bbox=[-75.0, 58.0, -10.0, 84.0],
        datetime="2015-01-01/..",
        filter=query,
        settings=cat.settings,
    )
    expected = cat.ids(
        geometry=box(-75.0, 58.0, -10.0, 84.0),
        start=dt.datetime(2015, 1, 1, tzinfo=dt.UTC),
        where=lambda p: p["percent_valid_pixels"] > 30,
    )
    assert expected and _ids(result) == expected


def test_ids(cat: Catalog) -> None:
    wanted = sorted(cat.expected)[::37][:5]
    result = search(ids=[*wanted, "no-such-item"], settings=cat.settings)
    assert _ids(result) == set(wanted)


def test_sortby_limit_and_paging(cat: Catalog) -> None:
    result = search(bbox=[-180, 50, 180, 90], sortby="-datetime", settings=cat.settings)
    expected = cat.ids(geometry=box(-180, 50, 180, 90))
    items = list(result.items())
    assert {i["id"] for i in items} == expected
    stamps = [i["properties"]["datetime"] for i in items]
    assert stamps == sorted(stamps, reverse=True)
    pages = list(result.pages(7))
    assert [i for page in pages for i in page] == items
    assert all(len(p) == 7 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 7
    limited = search(bbox=[-180, 50, 180, 90], sortby="-datetime", limit=5, settings=cat.settings)
    assert list(limited.items()) == items[:5] and limited.count() == 5
    by_two = search(sortby=["platform", "-percent_valid_pixels"], settings=cat.settings)
    keys = [
        (i["properties"]["platform"], -i["properties"]["percent_valid_pixels"])
        for i in by_two.items()
    ]
    assert keys == sorted(keys)


# --- shapes of the answer -----------------------------------------------------------------


def test_items_equal_the_source(cat: Catalog) -> None:
    result = search(settings=cat.settings)
    items = {i["id"]: i for i in result.items()}
    assert items == cat.expected
    # Items ingested as written (all but the few with numbers as strings) are identical
    # to their source JSON, datetimes formatted as in the source.
    same = [k for k, v in cat.source.items() if json.loads(json.dumps(v)) == cat.expected[k]]
    assert len(same) > 0.9 * len(cat.source)
    for key in same:
        assert items[key] == cat.source[key]


def test_arrow_geopandas_and_fields(cat: Catalog, tmp_path) -> None:
    result = search(bbox=list(ALASKA.bounds), settings=cat.settings)
    table = result.to_arrow()
    assert "grid_partition" not in table.column_names
    assert table.num_rows == result.count()
    assert json.loads(table.schema.metadata[b"geo"])["primary_column"] == "geometry"
    frame = result.to_geopandas()
    assert len(frame) == table.num_rows and frame.crs.to_string() == "OGC:CRS84"
    import pyarrow.parquet as pq

    pq.write_table(table, tmp_path / "out.parquet")
    assert len(geopandas.read_parquet(tmp_path / "out.parquet")) == table.num_rows

    slim = search(
        bbox=list(ALASKA.bounds), fields="id,properties.datetime,-links", settings=cat.settings
    )
    item = next(slim.items())
    assert set(item) == {"type", "id", "properties"} and set(item["properties"]) == {"datetime"}
    assert set(slim.to_arrow().column_names) == {"type", "id", "datetime"}
    no_assets = next(search(ids=[item["id"]], fields="-assets", settings=cat.settings).items())
    assert "assets" not in no_assets and "geometry" in no_assets


def test_explain_shows_pruning(cat: Catalog) -> None:
    result = search(
        intersects=Point(-142.0, 60.2), datetime="2020-01-01/2022-12-31", settings=cat.settings
    )
    explain = result.explain()
    assert explain.files_planned < explain.files_in_table
    assert explain.cells and len(explain.cells) <= 3
    assert explain.years == [2020, 2021, 2022]
    assert explain.snapshot_id == cat.last_snapshot
    assert explain.bytes_planned < explain.bytes_in_table
    text = str(explain)
    assert "files planned" in text and "snapshot" in text
    wide = search(bbox=list(ALASKA.bounds), settings=cat.settings).explain()
    assert wide.files_planned >= wide.files_read
    assert wide.files_read + wide.files_skipped_by_statistics == wide.files_planned


def test_one_snapshot_as_of(cat: Catalog) -> None:
    everything = search(settings=cat.settings).count()
    before = search(as_of=cat.first_snapshot, settings=cat.settings)
    assert before.explain().snapshot_id == cat.first_snapshot
    assert 0 < before.count() < everything
    with pytest.raises(QueryError):
        search(as_of="1999-01-01T00:00:00Z", settings=cat.settings)


def test_bad_parameters_raise_query_error(cat: Catalog) -> None:
    with pytest.raises(QueryError):
        search(bbox=[10, 10, 0], settings=cat.settings)
    with pytest.raises(QueryError):
        search(filter="percent_valid_pixels >", settings=cat.settings)
    with pytest.raises(FileNotFoundError):
        search(settings=Settings.embedded("/nonexistent/earthcatalog"))


# --- S3 and the command line --------------------------------------------------------------


@local_and_s3
def test_search_on_local_and_s3_roots(home: Settings) -> None:
    day, manifest = write_day(home, DAY_1, 60, seed=5)
    ingest(manifest, settings=home, h3_resolution=1)
    items = {i["id"]: i for i in day.items}
    parsed = parse_items([orjson.dumps(i) for i in day.items], list(items))
    expected = {i["id"]: i for i in table_to_items(parsed.table)}
    result = search(settings=Settings.from_env() if home.catalog_remote else home)
    assert {i["id"]: i for i in result.items()} == expected
    area = box(-75.0, 58.0, -10.0, 84.0)
    hits = search(bbox=list(area.bounds), settings=home)
    want = {
        k for k, v in items.items() if v["geometry"] and area_of(v["geometry"]).intersects(area)
    }
    assert {i["id"] for i in hits.items()} == want
    assert hits.explain().files_planned < hits.explain().files_in_table
    assert hits.to_arrow().num_rows == len(want)


def test_cli_search_geojson_ndjson_parquet(
    cat: Catalog, tmp_path, monkeypatch, capsysbinary
) -> None:
    from earthcatalog_dagster.cli import main

    monkeypatch.setenv("EARTHCATALOG_HOME", cat.settings.home)
    for name in ("WAREHOUSE", "CATALOG", "CATALOG_REMOTE", "WAREHOUSE_HASH"):
        monkeypatch.delenv(name, raising=False)
    expected = cat.ids(geometry=ALASKA)
    out = tmp_path / "alaska.geojson"
    bbox = ",".join(str(v) for v in ALASKA.bounds)
    assert main(["search", f"--bbox={bbox}", "--output", str(out), "--explain"]) == 0
    frame = geopandas.read_file(out)
    assert set(frame["id"]) == expected
    collection = json.loads(out.read_text())
    assert collection["type"] == "FeatureCollection"
    assert {f["id"]: f for f in collection["features"]} == {k: cat.expected[k] for k in expected}

    capsysbinary.readouterr()
    assert (
        main(
            [
                "search",
                f"--bbox={bbox}",
                "--format",
                "ndjson",
                "--limit",
                "3",
                "--sortby",
                "-datetime",
            ]
        )
        == 0
    )
    lines = capsysbinary.readouterr().out.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["id"] in expected for line in lines)

    parquet = tmp_path / "alaska.parquet"
    assert main(["search", f"--bbox={bbox}", "--format", "parquet", "--output", str(parquet)]) == 0
    assert set(geopandas.read_parquet(parquet)["id"]) == expected

    assert main(["search", f"--bbox={bbox}", "--format", "table"]) == 0
    assert b"items)" in capsysbinary.readouterr().out
    assert main(["search", "--bbox", "1,2,3"]) == 2
    assert main(["search", "--filter", "percent_valid_pixels >"]) == 2
    shape_file = tmp_path / "point.json"
    shape_file.write_text(json.dumps({"type": "Point", "coordinates": [-142.0, 60.2]}))
    capsysbinary.readouterr()
    assert main(["search", "--intersects", str(shape_file), "--format", "ndjson"]) == 0
    got = {json.loads(x)["id"] for x in capsysbinary.readouterr().out.splitlines()}
    assert got == cat.ids(geometry=Point(-142.0, 60.2))
    assert isinstance(pa.table({"a": [1]}), pa.Table)


@pytest.mark.parametrize(
    "query",
    [
        {"bbox": list(ALASKA.bounds), "datetime": "2020-01-01/2024-12-31"},
        {"filter": "percent_valid_pixels >= 80 AND platform = 'LC08'"},
        {"datetime": "2021-05-01T00:00:00Z"},
        {"intersects": Point(-142.0, 60.2), "filter": "date_dt < 100"},
    ],
)
def test_file_index_plans_what_pyiceberg_plans(cat: Catalog, monkeypatch, query) -> None:
    """The vectorized file index keeps exactly the files PyIceberg's scan keeps."""
    from earthcatalog_dagster.query import plan as planning

    ours = search(settings=cat.settings, **query)

    def refuse(*_args, **_kwargs):
        raise planning.HasDeletes(0)

    monkeypatch.setattr(planning, "file_index", refuse)
    theirs = search(settings=cat.settings, **query)
    assert [f.path for f in ours.plan.files] == [f.path for f in theirs.plan.files]
    assert {i["id"] for i in ours.items()} == {i["id"] for i in theirs.items()}


def _same_index(a, b) -> None:
    import numpy as np

    assert a.paths == b.paths
    for name in ("sizes", "records", "cells", "years"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=name == "years"), name
    for name in a.lower:
        for x, y in ((a.lower[name], b.lower[name]), (a.upper[name], b.upper[name])):
            assert x.dtype == y.dtype and np.array_equal(x, y), name


def test_file_index_cached_per_manifest_and_on_disk(cat: Catalog, monkeypatch, tmp_path) -> None:
    """The index read back from the disk cache is the decoded one; a damaged cache file is
    decoded again; a snapshot reuses the manifests it shares with the one before."""
    from earthcatalog_dagster.query import files, open_table

    monkeypatch.setenv(files.CACHE_VAR, str(tmp_path / "cache"))
    monkeypatch.setattr(files, "_CACHE", type(files._CACHE)())
    monkeypatch.setattr(files, "_MANIFESTS", type(files._MANIFESTS)())
    table = open_table(cat.settings)
    first, last = (table.snapshot_by_id(s) for s in (cat.first_snapshot, cat.last_snapshot))
    decoded = []
    real = files._decode_manifest
    monkeypatch.setattr(
        files, "_decode_manifest", lambda io, path, ids: decoded.append(path) or real(io, path, ids)
    )

    built = files.file_index(table, last)
    manifests = [m.manifest_path for m in last.manifests(table.io)]
    assert sorted(decoded) == sorted(manifests) and len(manifests) == 2
    assert len(list((tmp_path / "cache").iterdir())) == 2
    files._CACHE.clear()
    files.file_index(table, first)  # the first snapshot's manifest is the last one's too
    assert len(decoded) == 2

    files._CACHE.clear()
    files._MANIFESTS.clear()
    _same_index(files.file_index(table, last), built)  # from disk, nothing decoded
    assert len(decoded) == 2

    for stored in (tmp_path / "cache").iterdir():
        stored.write_bytes(b"not arrow")
    files._CACHE.clear()
    files._MANIFESTS.clear()
    _same_index(files.file_index(table, last), built)
    assert len(decoded) == 4

    monkeypatch.setenv(files.CACHE_VAR, "off")
    assert files.cache_dir() is None
