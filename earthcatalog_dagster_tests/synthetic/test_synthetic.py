"""The synthetic ITS_LIVE generator: items, objects and inventories look like the real thing."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import itertools
import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from shapely.geometry import Polygon

from earthcatalog_dagster import layout, synthetic
from earthcatalog_dagster.synthetic import (
    COLLECTION,
    SOURCE_BUCKET,
    GeneratedDay,
    generate_day,
    generate_demo,
    make_item,
    write_inventory,
)

RFC3339_US = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
KEY = re.compile(
    r"^velocity_image_pair/(landsatOLI|sentinel1|sentinel2)/v02/[NS]\d{2}[EW]\d{3}/"
    r"(?P<id>[^/]+)\.stac\.json$"
)
ID = re.compile(
    r"^(?P<s1>(?P<mission>[A-Z0-9]{3,4})_[A-Z0-9_]+?)_X_(?P<s2>[A-Z0-9_]+?)"
    r"_G0120V02_P(?P<p>\d{3})$"
)
MISSION_DIRS = {
    "LT04": "landsatOLI",
    "LT05": "landsatOLI",
    "LE07": "landsatOLI",
    "LC08": "landsatOLI",
    "LC09": "landsatOLI",
    "S1A": "sentinel1",
    "S1B": "sentinel1",
    "S2A": "sentinel2",
    "S2B": "sentinel2",
}
DATE = dt.date(2025, 6, 1)


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _decimals_ok(x: float) -> bool:
    return round(x, 4) == x


def _unwrapped(ring: list[list[float]]) -> list[float]:
    out = [ring[0][0]]
    for (a, _), (b, _) in itertools.pairwise(ring):
        d = b - a
        d -= 360.0 if d > 180.0 else (-360.0 if d < -180.0 else 0.0)
        out.append(out[-1] + d)
    return out


def _signed_area(xs: list[float], ys: list[float]) -> float:
    return sum(x0 * y1 - x1 * y0 for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False))


@pytest.fixture(scope="module")
def items() -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    out = [make_item(rng, before=dt.date(2026, 5, 1)) for _ in range(1500)]
    out += [make_item(rng, antimeridian=True) for _ in range(20)]
    for polar in ("north", "south", "north_pole", "south_pole"):
        out += [make_item(rng, polar=polar) for _ in range(15)]
    return out


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> tuple[GeneratedDay, str]:
    root = str(tmp_path_factory.mktemp("syn") / "source")
    return generate_day(DATE, 60, source_root=root, seed=3), root


# --- items ----------------------------------------------------------------------------------


def test_every_item_has_the_same_keys(items: list[dict[str, Any]]) -> None:
    first = items[0]
    for item in items:
        assert item.keys() == first.keys()
        assert item["properties"].keys() == first["properties"].keys()
        assert item["assets"].keys() == {"data", "overview", "thumbnail"}
        for name, asset in item["assets"].items():
            assert asset.keys() == first["assets"][name].keys()
    assert list(first) == [
        "type",
        "stac_version",
        "stac_extensions",
        "id",
        "geometry",
        "bbox",
        "properties",
        "links",
        "assets",
        "collection",
    ]


def test_item_fields_have_documented_types_and_formats(items: list[dict[str, Any]]) -> None:
    for item in items:
        assert item["type"] == "Feature"
        assert item["stac_version"] == "1.1.0"
        assert item["collection"] == COLLECTION
        exts = item["stac_extensions"]
        assert any("/projection/v2.0.0/" in e for e in exts)
        assert any("/alternate-assets/" in e for e in exts)
        assert any("/version/" in e for e in exts)
        assert any("/sat/" in e for e in exts)
        p = item["properties"]
        for name in (
            "datetime",
            "start_datetime",
            "end_datetime",
            "mid_datetime",
            "created",
            "updated",
        ):
            assert RFC3339_US.match(p[name]), (name, p[name])
        assert p["mid_datetime"] == p["datetime"]
        start, mid, end = (
            _parse_time(p[k]) for k in ("start_datetime", "datetime", "end_datetime")
        )
        assert start < mid < end
        assert abs((mid - start) - (end - mid)) <= dt.timedelta(microseconds=1)
        assert type(p["date_dt"]) is float and p["date_dt"].is_integer() and p["date_dt"] >= 5
        assert abs((end - start).total_seconds() / 86400 - p["date_dt"]) < 0.01
        assert type(p["percent_valid_pixels"]) is int and 0 <= p["percent_valid_pixels"] <= 100
        assert _parse_time(p["updated"]) >= _parse_time(p["created"])
        for name in ("latitude", "longitude"):
            assert type(p[name]) is float and _decimals_ok(p[name])
        assert -90 <= p["latitude"] <= 90 and -180 <= p["longitude"] <= 180
        assert p["sat:orbit_state"] in ("ascending", "descending")
        assert p["version"] == "002"
        assert re.fullmatch(r"EPSG:(32[67]\d\d|3413|3031)", p["proj:code"])
        code = p["proj:code"]
        if code.startswith("EPSG:326") or code == "EPSG:3413":
            assert p["latitude"] > 0
        else:
            assert p["latitude"] < 0
        for name in ("scene_1_id", "scene_2_id", "scene_1_frame", "scene_2_frame"):
            assert isinstance(p[name], str) and p[name]


def test_item_id_is_built_from_its_scenes(items: list[dict[str, Any]]) -> None:
    for item in items:
        p = item["properties"]
        m = ID.match(item["id"])
        assert m, item["id"]
        assert m["s1"] == p["scene_1_id"] and m["s2"] == p["scene_2_id"]
        assert m["mission"] == p["platform"] in MISSION_DIRS
        assert int(m["p"]) == p["percent_valid_pixels"]
        if p["platform"].startswith("L"):
            frame = p["scene_1_id"].split("_")[2]
            assert frame == p["scene_1_frame"]
            acq = p["scene_1_id"].split("_")[3]
            assert acq == p["start_datetime"][:10].replace("-", "")
        else:
            assert p["start_datetime"][:10].replace("-", "") in p["scene_1_id"]
    assert len({i["id"] for i in items}) == len(items)


def test_assets_links_and_key_layout(items: list[dict[str, Any]]) -> None:
    for item in items:
        key = synthetic.item_key(item)
        m = KEY.match(key)
        assert m and m["id"] == item["id"] == layout.item_id_from_key(key)
        assert key.split("/")[1] == MISSION_DIRS[item["properties"]["platform"]]
        stem = key[: -len(".stac.json")]
        data = item["assets"]["data"]
        assert data["href"] == f"https://its-live-data.s3.amazonaws.com/{stem}.nc"
        assert data["type"] == "application/netcdf" and data["roles"] == ["data"]
        assert data["alternate"] == {
            "s3": {"href": f"s3://{SOURCE_BUCKET}/{stem}.nc", "alternate:name": "S3"}
        }
        assert item["assets"]["overview"]["href"].endswith(f"{item['id']}.png")
        assert item["assets"]["overview"]["type"] == "image/png"
        assert item["assets"]["thumbnail"]["href"].endswith(f"{item['id']}_thumb.png")
        assert item["assets"]["thumbnail"]["roles"] == ["thumbnail"]
        assert all(a["title"] for a in item["assets"].values())
        assert [link["rel"] for link in item["links"]] == ["self", "parent", "root", "collection"]
        assert all(link.keys() == {"rel", "href", "type"} for link in item["links"])


def test_years_and_missions_are_spread_and_mostly_recent(items: list[dict[str, Any]]) -> None:
    years = [int(i["properties"]["datetime"][:4]) for i in items[:1500]]
    assert min(years) < 1995 and max(years) >= 2025
    assert all(1985 <= y <= 2026 for y in years)
    assert sum(y >= 2013 for y in years) > 0.6 * len(years)
    platforms = {i["properties"]["platform"] for i in items}
    assert {"LC08", "LC09", "LE07", "S1A", "S2A", "S2B"} <= platforms
    for item in items[:1500]:  # nothing acquired after the cut-off
        assert item["properties"]["end_datetime"] < "2026-05-01"


def test_when_fixes_the_mid_date() -> None:
    when = dt.datetime(2019, 7, 14, 12, 30, 15, 123456, tzinfo=dt.UTC)
    item = make_item(np.random.default_rng(1), region="alps", when=when)
    assert item["properties"]["datetime"] == "2019-07-14T12:30:15.123456Z"
    assert 45 < item["properties"]["latitude"] < 48.5


def test_same_seed_same_item_and_unknown_region_rejected() -> None:
    a = make_item(np.random.default_rng(42))
    b = make_item(np.random.default_rng(42))
    assert a == b
    assert make_item(np.random.default_rng(43)) != a
    with pytest.raises(ValueError):
        make_item(np.random.default_rng(0), region="atlantis")
    with pytest.raises(ValueError):
        make_item(np.random.default_rng(0), polar="east")


# --- footprints -----------------------------------------------------------------------------


def test_footprints_are_closed_ccw_densified_rings(items: list[dict[str, Any]]) -> None:
    for item in items:
        geom = item["geometry"]
        assert geom["type"] == "Polygon" and len(geom["coordinates"]) == 1
        ring = geom["coordinates"][0]
        assert len(ring) == 17 and ring[0] == ring[-1]
        for lon, lat in ring:
            assert -180 < lon < 180 and -90 <= lat <= 90
            assert _decimals_ok(lon) and _decimals_ok(lat)
        lons = _unwrapped(ring)
        lats = [p[1] for p in ring]
        xmin, ymin, xmax, ymax = item["bbox"]
        assert ymin == min(lats) or xmin == -180.0
        if abs(lons[-1] - lons[0]) > 180:  # encircles a pole: orientation by direction
            continue
        assert _signed_area(lons, lats) > 0, item["id"]  # counter-clockwise
        if xmin <= xmax:
            raw = [lon for lon, _ in ring]
            assert [xmin, ymin, xmax, ymax] == [min(raw), min(lats), max(raw), max(lats)]
            poly = Polygon(ring)
            assert poly.is_valid and poly.exterior.is_ccw
            assert 0.5 < ymax - ymin < 10


def test_antimeridian_footprints_use_rfc7946_bbox(items: list[dict[str, Any]]) -> None:
    crossing = [i for i in items if i["bbox"][0] > i["bbox"][2]]
    forced = [
        i
        for i in items
        if 51 < i["properties"]["latitude"] < 67 and abs(i["properties"]["longitude"]) > 178
    ]
    assert len(forced) >= 20
    assert len(crossing) >= 20
    for item in crossing:
        ring = item["geometry"]["coordinates"][0]
        west, _, east, _ = item["bbox"]
        assert any(abs(b[0] - a[0]) > 180 for a, b in itertools.pairwise(ring))
        assert all(lon >= west or lon <= east for lon, _ in ring)
        assert west == min(lon for lon, _ in ring if lon > 0)
        assert east == max(lon for lon, _ in ring if lon < 0)


def test_some_footprints_encircle_the_poles(items: list[dict[str, Any]]) -> None:
    north = [
        i
        for i in items
        if i["properties"]["latitude"] > 88.9
        and abs(
            _unwrapped(i["geometry"]["coordinates"][0])[-1] - i["geometry"]["coordinates"][0][0][0]
        )
        > 180
    ]
    south = [
        i
        for i in items
        if i["properties"]["latitude"] < -88.9
        and abs(
            _unwrapped(i["geometry"]["coordinates"][0])[-1] - i["geometry"]["coordinates"][0][0][0]
        )
        > 180
    ]
    assert len(north) >= 15 and len(south) >= 15
    for item in north:
        ring = item["geometry"]["coordinates"][0]
        assert all(lat > 88 for _, lat in ring)
        assert item["properties"]["proj:code"] == "EPSG:3413"
        lons = _unwrapped(ring)
        assert lons[-1] - lons[0] == pytest.approx(360.0)  # eastward: pole on the left
        assert item["bbox"] == [-180.0, min(lat for _, lat in ring), 180.0, 90.0]
    for item in south:
        ring = item["geometry"]["coordinates"][0]
        assert all(lat < -88 for _, lat in ring)
        assert item["properties"]["proj:code"] == "EPSG:3031"
        lons = _unwrapped(ring)
        assert lons[-1] - lons[0] == pytest.approx(-360.0)  # westward: pole on the left
        assert item["bbox"] == [-180.0, -90.0, 180.0, max(lat for _, lat in ring)]


def test_near_pole_footprints_leave_the_pole_outside() -> None:
    rng = np.random.default_rng(5)
    for polar, code in (("north", "EPSG:3413"), ("south", "EPSG:3031")):
        for _ in range(30):
            item = make_item(rng, polar=polar)
            assert 84 <= abs(item["properties"]["latitude"]) <= 89.2
            assert item["properties"]["proj:code"] == code
            lons = _unwrapped(item["geometry"]["coordinates"][0])
            assert abs(lons[-1] - lons[0]) < 1e-6


# --- a generated day ------------------------------------------------------------------------


def test_generate_day_writes_good_items_exactly(day: tuple[GeneratedDay, str]) -> None:
    gen, root = day
    assert len(gen.good_ids) == 60 == len(gen.items) == len(set(gen.good_ids))
    assert gen.good_ids == [i["id"] for i in gen.items]
    for item in gen.items:
        key = synthetic.item_key(item)
        path = Path(layout.source_object(SOURCE_BUCKET, key, root))
        body = path.read_bytes()
        assert body.startswith(b'{\n  "type": "Feature"')  # pretty-printed like the real ones
        assert 2500 < len(body) < 6000
        assert json.loads(body) == item
    # the awkward footprints are always part of a day
    lats = [float(i["properties"]["latitude"]) for i in gen.items]
    assert sum(abs(lat) > 88 for lat in lats) >= 2
    assert any(i["bbox"][0] > i["bbox"][2] for i in gen.items if i["geometry"])


def test_generate_day_bad_objects(day: tuple[GeneratedDay, str]) -> None:
    gen, root = day
    assert set(gen.expected) == set(synthetic.BAD_KINDS)
    assert all(len(keys) == 2 for keys in gen.expected.values())

    def body(key: str) -> bytes:
        return Path(layout.source_object(SOURCE_BUCKET, key, root)).read_bytes()

    by_id = {i["id"]: i for i in gen.items}
    for key in gen.expected["null_geometry"]:
        item = json.loads(body(key))
        assert item["geometry"] is None and "bbox" not in item
        assert item["id"] in by_id
    for key in gen.expected["coercible"]:
        p = json.loads(body(key))["properties"]
        assert isinstance(p["percent_valid_pixels"], str)
        assert str(int(p["percent_valid_pixels"])) == p["percent_valid_pixels"]
        assert float(p["date_dt"]).is_integer() and p["date_dt"].endswith(".0")
        assert repr(float(p["latitude"])) == p["latitude"]
        assert layout.item_id_from_key(key) in by_id
    for key in gen.expected["uncoercible"]:
        item = json.loads(body(key))
        assert item["properties"]["percent_valid_pixels"] == "high"
        assert item["id"] not in by_id
    for key in gen.expected["truncated"]:
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(body(key))
        assert body(key).startswith(b"{")
    for key in gen.expected["error_page"]:
        text = body(key).decode()
        assert text.startswith("<?xml") and "<Error><Code>InternalError</Code>" in text
    for key in gen.expected["missing"]:
        assert not Path(layout.source_object(SOURCE_BUCKET, key, root)).exists()
    for key in gen.expected["no_id"]:
        item = json.loads(body(key))
        assert "id" not in item and item["type"] == "Feature"
    bad_ids = {
        layout.item_id_from_key(k)
        for kind in ("uncoercible", "truncated", "error_page", "missing", "no_id")
        for k in gen.expected[kind]
    }
    assert not bad_ids & set(gen.good_ids)


def test_generate_day_refs_list_every_key(day: tuple[GeneratedDay, str]) -> None:
    gen, root = day
    refs = gen.refs
    assert refs.column_names[:3] == ["bucket", "key", "last_modified_date"]
    assert refs.schema.field("last_modified_date").type == pa.timestamp("ms", tz="UTC")
    keys = refs.column("key").to_pylist()
    assert keys == sorted(keys) and len(keys) == len(set(keys))
    item_keys = {synthetic.item_key(i) for i in gen.items}
    bad_keys = {k for kind in gen.expected.values() for k in kind}
    assert set(keys) == item_keys | bad_keys | set(gen.other_keys)
    assert len(gen.other_keys) >= 2
    assert {k.rsplit(".", 1)[-1] for k in gen.other_keys} == {"nc", "png"}
    assert set(gen.item_keys) == item_keys | bad_keys
    assert set(refs.column("bucket").to_pylist()) == {SOURCE_BUCKET}
    start = dt.datetime(DATE.year, DATE.month, DATE.day, tzinfo=dt.UTC)
    for row in refs.to_pylist():
        assert start <= row["last_modified_date"] < start + dt.timedelta(days=1)
        path = Path(layout.source_object(SOURCE_BUCKET, row["key"], root))
        if row["key"] in item_keys or (
            row["key"] in bad_keys and row["key"] not in gen.expected["missing"]
        ):
            data = path.read_bytes()
            assert row["size"] == len(data)
            assert row["e_tag"] == hashlib.md5(data).hexdigest()
    for item in gen.items:  # created/updated a few hours before the object was written
        created = _parse_time(item["properties"]["created"])
        assert start - dt.timedelta(hours=13) < created < start + dt.timedelta(days=1)


def test_generate_day_is_deterministic_and_days_differ(tmp_path: Path) -> None:
    a = generate_day(DATE, 30, source_root=str(tmp_path / "a"), seed=1)
    b = generate_day(DATE, 30, source_root=str(tmp_path / "b"), seed=1)
    assert a.refs.equals(b.refs) and a.items == b.items and a.expected == b.expected
    for key in a.refs.column("key").to_pylist():
        pa_ = Path(layout.source_object(SOURCE_BUCKET, key, str(tmp_path / "a")))
        pb = Path(layout.source_object(SOURCE_BUCKET, key, str(tmp_path / "b")))
        assert pa_.exists() == pb.exists()
        if pa_.exists():
            assert pa_.read_bytes() == pb.read_bytes()
    c = generate_day(DATE, 30, source_root=str(tmp_path / "c"), seed=2)
    d = generate_day(DATE + dt.timedelta(days=1), 30, source_root=str(tmp_path / "d"), seed=1)
    e = generate_day(DATE, 30, source_root=str(tmp_path / "e"), seed=1, start_index=30)
    keys = [set(x.refs.column("key").to_pylist()) for x in (a, c, d, e)]
    for x, y in itertools.combinations(keys, 2):
        assert not x & y


def test_generate_day_without_bad_objects(tmp_path: Path) -> None:
    gen = generate_day(DATE, 5, source_root=str(tmp_path), seed=0, bad=False)
    assert all(not keys for keys in gen.expected.values())
    assert len(gen.items) == 5 and all(i["geometry"] for i in gen.items)
    assert set(gen.item_keys) == {synthetic.item_key(i) for i in gen.items}


# --- inventories ----------------------------------------------------------------------------


def _manifest(uri: str) -> dict[str, Any]:
    return json.loads(Path(uri).read_bytes())


def _data_file(manifest_uri: str, key: str) -> Path:
    return Path(manifest_uri).parent / ".." / "data" / key.rsplit("/", 1)[-1]


def _check_manifest(uri: str, date: dt.date, fmt: str) -> dict[str, Any]:
    assert uri == layout.inventory_manifest(str(Path(uri).parents[1]), date)
    raw = Path(uri).read_bytes()
    assert (Path(uri).parent / "manifest.checksum").read_text().strip() == hashlib.md5(
        raw
    ).hexdigest()
    m = json.loads(raw)
    assert m["sourceBucket"] == SOURCE_BUCKET
    assert m["destinationBucket"] == "arn:aws:s3:::its-live-inventory"
    assert m["version"] == "2016-11-30"
    created = dt.datetime.fromtimestamp(int(m["creationTimestamp"]) / 1000, dt.UTC)
    assert created.date() == date
    assert m["fileFormat"] == fmt
    assert len(m["files"]) == 2
    for f in m["files"]:
        assert f.keys() == {"key", "size", "MD5checksum"}
        suffix = ".parquet" if fmt == "Parquet" else ".csv.gz"
        assert re.search(r"/data/[0-9a-f-]{36}" + re.escape(suffix) + "$", f["key"])
        data = _data_file(uri, f["key"]).read_bytes()
        assert f["size"] == len(data) and f["MD5checksum"] == hashlib.md5(data).hexdigest()
    return m


def test_parquet_inventory(tmp_path: Path, day: tuple[GeneratedDay, str]) -> None:
    gen, _ = day
    uri = write_inventory(str(tmp_path / "inventory"), DATE, gen.refs, fmt="parquet")
    m = _check_manifest(uri, DATE, "Parquet")
    assert m["fileSchema"].startswith("message s3.inventory {")
    assert "last_modified_date" in m["fileSchema"]
    tables = []
    for f in m["files"]:
        path = _data_file(uri, f["key"])
        assert (
            path.resolve().parent
            == Path(layout.inventory_data_dir(str(tmp_path / "inventory"))).resolve()
        )
        meta = pq.ParquetFile(path).metadata
        assert meta.row_group(0).column(0).compression == "SNAPPY"
        tables.append(pq.read_table(path))
    table = pa.concat_tables(tables)
    assert table.column_names == ["bucket", "key", "size", "last_modified_date", "e_tag"]
    assert table.schema.field("size").type == pa.int64()
    assert table.schema.field("last_modified_date").type == pa.timestamp("ms", tz="UTC")
    assert table.column("key").to_pylist() == gen.refs.column("key").to_pylist()
    assert table.column("last_modified_date").equals(gen.refs.column("last_modified_date"))
    assert table.column("size").to_pylist() == gen.refs.column("size").to_pylist()


def test_csv_inventory(tmp_path: Path, day: tuple[GeneratedDay, str]) -> None:
    gen, _ = day
    odd = pa.table(
        {  # a key that needs URL-encoding
            "bucket": [SOURCE_BUCKET],
            "key": ["velocity_image_pair/odd name+1.stac.json"],
            "last_modified_date": gen.refs["last_modified_date"].slice(0, 1),
            "size": pa.array([10], pa.int64()),
            "e_tag": ["0" * 32],
        }
    )
    refs = pa.concat_tables([gen.refs, odd]).sort_by("key")
    uri = write_inventory(str(tmp_path / "inventory"), DATE, refs, fmt="csv")
    m = _check_manifest(uri, DATE, "CSV")
    assert m["fileSchema"] == "Bucket, Key, Size, LastModifiedDate, ETag"
    names = ["Bucket", "Key", "Size", "LastModifiedDate", "ETag"]
    tables = []
    for f in m["files"]:
        path = _data_file(uri, f["key"])
        first = gzip.decompress(path.read_bytes()).split(b"\n", 1)[0]
        assert first.startswith(b'"its-live-data","velocity_image_pair/')  # no header row
        tables.append(
            pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(column_names=names),
                convert_options=pacsv.ConvertOptions(
                    column_types={"Key": pa.string(), "LastModifiedDate": pa.string()}
                ),
            )
        )
    table = pa.concat_tables(tables)
    keys = table.column("Key").to_pylist()
    assert "velocity_image_pair/odd%20name%2B1.stac.json" in keys
    assert [urllib.parse.unquote(k) for k in keys] == refs.column("key").to_pylist()
    assert table.column("Size").to_pylist() == refs.column("size").to_pylist()
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", t)
        for t in table.column("LastModifiedDate").to_pylist()
    )
    parsed = [_parse_time(t) for t in table.column("LastModifiedDate").to_pylist()]
    assert parsed == refs.column("last_modified_date").to_pylist()


def test_inventory_without_size_and_etag(tmp_path: Path) -> None:
    refs = pa.table(
        {
            "bucket": [SOURCE_BUCKET] * 3,
            "key": ["a.stac.json", "b.nc", "c.stac.json"],
            "last_modified_date": pa.array([0, 1000, 2000], pa.timestamp("ms", "UTC")),
        }
    )
    uri = write_inventory(str(tmp_path), DATE, refs, fmt="parquet", files=5)
    m = _manifest(uri)
    assert len(m["files"]) == 3  # never more files than rows
    table = pa.concat_tables([pq.read_table(_data_file(uri, f["key"])) for f in m["files"]])
    assert table.column("key").to_pylist() == ["a.stac.json", "b.nc", "c.stac.json"]
    assert table.column("size").null_count == 0 and table.column("e_tag").null_count == 0
    with pytest.raises(ValueError):
        write_inventory(str(tmp_path), DATE, refs, fmt="orc")


# --- the demo -------------------------------------------------------------------------------


def test_generate_demo_layout_and_cumulative_inventories(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    dates = [dt.date(2025, 6, 1), dt.date(2025, 6, 2), dt.date(2025, 6, 3)]
    days = generate_demo(home, dates, 25, seed=4)
    assert [d.date for d in days] == dates
    listed: set[str] = set()
    gone: set[str] = set()
    for i, (date, gen) in enumerate(zip(dates, days, strict=True)):
        uri = layout.inventory_manifest(str(Path(home) / "inventory"), date)
        m = _manifest(uri)
        assert m["fileFormat"] == ("Parquet" if i % 2 == 0 else "CSV")
        keys: list[str] = []
        for f in m["files"]:
            path = _data_file(uri, f["key"])
            if m["fileFormat"] == "Parquet":
                keys += pq.read_table(path).column("key").to_pylist()
            else:
                keys += [
                    urllib.parse.unquote(line.split(",")[1].strip('"'))
                    for line in gzip.decompress(path.read_bytes()).decode().splitlines()
                ]
        day_keys = set(gen.refs.column("key").to_pylist())
        assert set(keys) == (listed - gone) | day_keys
        listed |= day_keys
        gone |= set(gen.expected["missing"])
        for item in gen.items:
            path = Path(home) / "source" / SOURCE_BUCKET / synthetic.item_key(item)
            assert path.exists()
    all_ids = [i for gen in days for i in gen.good_ids]
    assert len(all_ids) == len(set(all_ids)) == 75


def test_footprints_are_rectangles_in_their_projection(items: list[dict[str, Any]]) -> None:
    """Cross-check the spherical projections against PROJ: each ring maps back to a box."""
    pyproj = pytest.importorskip("pyproj")
    transformers: dict[str, Any] = {}
    for item in items[:400]:
        code = item["properties"]["proj:code"]
        if code not in transformers:
            transformers[code] = pyproj.Transformer.from_crs("EPSG:4326", code, always_xy=True)
        ring = item["geometry"]["coordinates"][0]
        xs, ys = transformers[code].transform([p[0] for p in ring], [p[1] for p in ring])
        width, height = max(xs) - min(xs), max(ys) - min(ys)
        # every edge is straight and axis-parallel: LL→LR and UR→UL at constant y, LR→UR and
        # UL→LL at constant x (within 3 % of the box: sphere versus ellipsoid)
        for edge, axis, size in (
            (range(0, 5), ys, height),
            (range(4, 9), xs, width),
            (range(8, 13), ys, height),
            (range(12, 17), xs, width),
        ):
            values = [axis[i] for i in edge]
            assert max(values) - min(values) < 0.03 * size, (item["id"], code)
        assert 80_000 < width < 330_000 and 80_000 < height < 330_000


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_project_inventory_reader_reads_our_inventories(
    tmp_path: Path, day: tuple[GeneratedDay, str], fmt: str
) -> None:
    """The platform's own reader sees exactly the day's ``.stac.json`` keys."""
    inventory = pytest.importorskip("earthcatalog_dagster.core.inventory")
    gen, _ = day
    uri = write_inventory(str(tmp_path / "inventory"), DATE, gen.refs, fmt=fmt)
    table = inventory.read_inventory_table(uri)
    assert sorted(table.column("key").to_pylist()) == sorted(gen.item_keys)
    assert set(table.column("bucket").to_pylist()) == {SOURCE_BUCKET}


def test_generate_day_and_inventory_on_s3(tmp_path: Path) -> None:
    """Every object goes through core.storage, so an s3:// root works as well as a folder."""
    from earthcatalog_dagster.core import storage
    from earthcatalog_dagster_tests.core.moto_s3 import boto_client, moto_endpoint, use_endpoint

    with moto_endpoint() as endpoint:
        use_endpoint(endpoint)
        try:
            client = boto_client(endpoint)
            client.create_bucket(Bucket="mirror")
            gen = generate_day(DATE, 8, source_root="s3://mirror/source", seed=9)
            local = generate_day(DATE, 8, source_root=str(tmp_path / "source"), seed=9)
            assert gen.refs.equals(local.refs)
            for key in gen.item_keys:
                uri = layout.source_object(SOURCE_BUCKET, key, "s3://mirror/source")
                path = Path(layout.source_object(SOURCE_BUCKET, key, str(tmp_path / "source")))
                if key in gen.expected["missing"]:
                    assert not storage.exists(uri)
                else:
                    assert storage.read_bytes(uri) == path.read_bytes()
            manifest = write_inventory("s3://mirror/inventory", DATE, gen.refs, fmt="csv")
            assert manifest == "s3://mirror/inventory/2025-06-01T01-00Z/manifest.json"
            body = json.loads(storage.read_bytes(manifest))
            for f in body["files"]:
                name = f["key"].rsplit("/", 1)[-1]
                data = storage.read_bytes(f"s3://mirror/inventory/data/{name}")
                assert hashlib.md5(data).hexdigest() == f["MD5checksum"]
            assert storage.exists("s3://mirror/inventory/2025-06-01T01-00Z/manifest.checksum")
        finally:
            storage.configure_s3()
