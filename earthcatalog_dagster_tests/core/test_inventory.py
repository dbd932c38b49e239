"""Inventory reading over real files written like AWS writes them (ITSLIVE.md)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
from pathlib import Path
from urllib.parse import quote_plus, unquote_plus

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.inventory import (
    INVENTORY_SCHEMA,
    iter_inventory,
    read_inventory_table,
    read_manifest,
)
from earthcatalog_dagster_tests.core.moto_s3 import boto_client, moto_endpoint, use_endpoint

UTC = dt.UTC
SRC = "its-live-data"
PREFIX = "velocity_image_pair/landsatOLI/v02"
DEST_PREFIX = f"inventory/{SRC}/itslive-config"
CSV_SCHEMA = "Bucket, Key, Size, LastModifiedDate, ETag"


def _rows(n: int, start: int = 0) -> list[tuple[str, str, dt.datetime]]:
    """n .stac.json rows, each followed by its .nc and .png neighbours (to be filtered)."""
    out = []
    for i in range(start, start + n):
        base = f"{PREFIX}/N{i % 90:02d}W140/LC08_pair_{i:06d}"
        when = dt.datetime(2025, 1, 1, tzinfo=UTC) + dt.timedelta(hours=i)
        out += [(SRC, base + ".stac.json", when), (SRC, base + ".nc", when)]
        out.append((SRC, base + ".png", when))
    return out


def _csv_gz(rows: list[tuple[str, str, dt.datetime | None]], *, encode_slash: bool) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for bucket, key, when in rows:
        encoded = quote_plus(key, safe="" if encode_slash else "/")
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S.000Z") if when else ""
        writer.writerow([bucket, encoded, "3456", stamp, "0123abcd"])
    return gzip.compress(buf.getvalue().encode())


def _write_manifest(
    root: Path, day: str, file_names: list[str], fmt: str = "CSV", schema: str = CSV_SCHEMA
) -> Path:
    manifest = root / f"{day}T01-00Z" / "manifest.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "sourceBucket": SRC,
        "destinationBucket": "arn:aws:s3:::its-live-inventory",
        "version": "2016-11-30",
        "creationTimestamp": "1735693200000",
        "fileFormat": fmt,
        "fileSchema": schema,
        "files": [
            {"key": f"{DEST_PREFIX}/data/{name}", "size": 1, "MD5checksum": "0" * 32}
            for name in file_names
        ],
    }
    manifest.write_text(json.dumps(doc))
    (manifest.parent / "manifest.checksum").write_text("0" * 32)
    return manifest


def _csv_inventory(root: Path, parts: list[list[tuple]], encode_slash: bool = False) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    names = []
    for i, rows in enumerate(parts):
        name = f"00000000-0000-0000-0000-00000000000{i}.csv.gz"
        (root / "data" / name).write_bytes(_csv_gz(rows, encode_slash=encode_slash))
        names.append(name)
    return _write_manifest(root, "2025-01-02", names)


# --- manifests -----------------------------------------------------------------------------


def test_manifest_csv_gz_decodes_keys_and_filters_non_stac(tmp_path: Path) -> None:
    when = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    odd_keys = [
        f"{PREFIX}/with space/a b.stac.json",
        f"{PREFIX}/plus+sign/p+q.stac.json",
        f"{PREFIX}/percent%20literal/x%2Fy.stac.json",
        f"{PREFIX}/ünïcödé/Ω.stac.json",
        f"{PREFIX}/comma,semi;amp&/c.stac.json",
    ]
    part1 = _rows(40) + [(SRC, k, when) for k in odd_keys]
    part2 = [*_rows(30, start=40), (SRC, f"{PREFIX}/x.stac.json.bak", when)]
    manifest = _csv_inventory(tmp_path / "inventory", [part1, part2], encode_slash=False)
    # a third data file whose slashes are encoded too (%2F): both encodings decode the same
    (tmp_path / "inventory" / "data" / "slashes.csv.gz").write_bytes(
        _csv_gz(_rows(5, start=70), encode_slash=True)
    )
    doc = json.loads(manifest.read_text())
    doc["files"].append({"key": f"{DEST_PREFIX}/data/slashes.csv.gz", "size": 1})
    manifest.write_text(json.dumps(doc))

    table = read_inventory_table(str(manifest))
    assert table.schema == INVENTORY_SCHEMA
    expected_keys = (
        [k for _, k, _ in _rows(40) if k.endswith(".stac.json")]
        + odd_keys
        + [k for _, k, _ in _rows(35, start=40) if k.endswith(".stac.json")]
    )
    assert table.column("key").to_pylist() == expected_keys
    assert set(table.column("bucket").to_pylist()) == {SRC}
    dates = table.column("last_modified_date").to_pylist()
    assert dates[0] == dt.datetime(2025, 1, 1, tzinfo=UTC)
    assert dates[40] == when


def test_url_decoding_matches_unquote_plus(tmp_path: Path) -> None:
    tricky = ["a+b", "a%2Bb", "100%25", "sp ace", "é/ü", "%7E~", "x%2fy", "++", "%252F"]
    keys = [f"{PREFIX}/{t}/{i}.stac.json" for i, t in enumerate(tricky)]
    raw = tmp_path / "inventory" / "data" / "f.csv.gz"
    raw.parent.mkdir(parents=True)
    lines = "".join(f'"{SRC}","{quote_plus(k)}","1","2025-01-01T00:00:00.000Z","e"\n' for k in keys)
    raw.write_bytes(gzip.compress(lines.encode()))
    manifest = _write_manifest(tmp_path / "inventory", "2025-01-02", ["f.csv.gz"])
    got = read_inventory_table(str(manifest)).column("key").to_pylist()
    assert got == [unquote_plus(quote_plus(k)) for k in keys] == keys


def test_manifest_parquet(tmp_path: Path) -> None:
    root = tmp_path / "inventory"
    (root / "data").mkdir(parents=True)
    rows = _rows(50)
    table = pa.table(
        {
            "bucket": [b for b, _, _ in rows],
            "key": [k for _, k, _ in rows],  # Parquet inventories hold plain keys
            "size": pa.array([3456] * len(rows), pa.int64()),
            # AWS writes TIMESTAMP_MILLIS without a zone: it is UTC
            "last_modified_date": pa.array([w.replace(tzinfo=None) for _, _, w in rows]).cast(
                pa.timestamp("ms")
            ),
            "e_tag": ["abc"] * len(rows),
        }
    )
    pq.write_table(table.slice(0, 90), root / "data" / "a.parquet", compression="snappy")
    pq.write_table(table.slice(90), root / "data" / "b.parquet", compression="snappy")
    manifest = _write_manifest(
        root, "2025-01-02", ["a.parquet", "b.parquet"], fmt="Parquet", schema="message s3 {...}"
    )
    got = read_inventory_table(str(manifest))
    assert got.schema == INVENTORY_SCHEMA
    assert got.num_rows == 50
    assert got.column("key").to_pylist() == [k for _, k, _ in rows if k.endswith(".stac.json")]
    assert got.column("last_modified_date")[3].as_py() == rows[9][2]


def test_manifest_data_uris_resolve_locally_and_on_s3(tmp_path: Path) -> None:
    manifest = _csv_inventory(tmp_path / "inv", [_rows(1)])
    local = read_manifest(str(manifest))
    assert local.data_files == (
        str(tmp_path / "inv" / "data" / "00000000-0000-0000-0000-000000000000.csv.gz"),
    )
    assert local.destination_bucket == "its-live-inventory"
    assert local.csv_columns == ["Bucket", "Key", "Size", "LastModifiedDate", "ETag"]


# --- single files ---------------------------------------------------------------------------


def _plain_rows() -> pa.Table:
    rows = _rows(20)
    return pa.table(
        {
            "bucket": [b for b, _, _ in rows],
            "key": [k.replace("LC08_", "LC08+") for _, k, _ in rows],  # '+' taken literally
            "last_modified_date": pa.array([w for _, _, w in rows], pa.timestamp("us", tz="UTC")),
        }
    )


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "parquet"])
def test_single_file_inputs(tmp_path: Path, kind: str) -> None:
    table = _plain_rows()
    path = tmp_path / f"refs.{kind}"
    if kind == "parquet":
        pq.write_table(table, path)
    else:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["bucket", "key", "last_modified_date"])
        for b, k, w in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
            writer.writerow([b, k, w.isoformat()])
        data = buf.getvalue().encode()
        path.write_bytes(gzip.compress(data) if kind.endswith("gz") else data)
    got = read_inventory_table(str(path))
    expected = table.filter(pa.compute.ends_with(table.column("key"), ".stac.json"))
    assert got.schema == INVENTORY_SCHEMA
    assert got.column("key").to_pylist() == expected.column("key").to_pylist()
    assert "+" in got.column("key")[0].as_py()
    assert got.column("last_modified_date").equals(expected.column("last_modified_date"))


def test_csv_without_dates_and_delta_parquet(tmp_path: Path) -> None:
    csv_path = tmp_path / "refs.csv"
    csv_path.write_text("bucket,key\nb,a/1.stac.json\nb,a/1.nc\nb,a/2.stac.json\n")
    got = read_inventory_table(str(csv_path))
    assert got.column("key").to_pylist() == ["a/1.stac.json", "a/2.stac.json"]
    assert got.column("last_modified_date").null_count == 2

    delta = tmp_path / "delta" / "pending" / "delta_2025-01-02.parquet"
    delta.parent.mkdir(parents=True)
    keys = [f"{PREFIX}/x/{i}.stac.json" for i in range(10)]
    pq.write_table(
        pa.table(
            {
                "bucket": [SRC] * 10,
                "key": keys,
                "id_hash": pa.array([bytes([i]) * 16 for i in range(10)], pa.binary(16)),
            }
        ),
        delta,
    )
    got = read_inventory_table(str(delta))
    assert got.schema == INVENTORY_SCHEMA
    assert got.column("key").to_pylist() == keys
    assert got.column("last_modified_date").null_count == 10
    # the operators' ".done" name for an ingested delta is still read (sniffed as Parquet)
    done = delta.with_suffix(".done")
    done.write_bytes(delta.read_bytes())
    assert read_inventory_table(str(done)).num_rows == 10


# --- since / limit / batching ---------------------------------------------------------------


def test_since_filters_and_drops_null_dates(tmp_path: Path) -> None:
    rows = _rows(48)  # one .stac.json per hour from 2025-01-01T00
    rows += [(SRC, f"{PREFIX}/undated.stac.json", None)]
    manifest = _csv_inventory(tmp_path / "inventory", [rows])
    everything = read_inventory_table(str(manifest))
    assert everything.num_rows == 49  # the undated row is kept without since
    for since in ("2025-01-02", dt.date(2025, 1, 2), dt.datetime(2025, 1, 2), "2025-01-02T00:00Z"):
        got = read_inventory_table(str(manifest), since=since)
        assert got.num_rows == 24
        assert min(got.column("last_modified_date").to_pylist()) == dt.datetime(
            2025, 1, 2, tzinfo=UTC
        )
    later = read_inventory_table(str(manifest), since="2025-01-02T12:30:00+02:00")
    assert later.num_rows == 13  # 10:30Z → the rows of 11:00Z … 23:00Z


def test_since_without_date_column_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "refs.csv"
    path.write_text("bucket,key\nb,a/1.stac.json\n")
    with pytest.raises(ValueError, match=r"refs\.csv"):
        read_inventory_table(str(path), since="2025-01-01")


def test_limit_is_exact_across_files(tmp_path: Path) -> None:
    manifest = _csv_inventory(tmp_path / "inventory", [_rows(30), _rows(30, start=30)])
    assert read_inventory_table(str(manifest), limit=45).num_rows == 45
    assert (
        read_inventory_table(str(manifest), limit=45)
        .column("key")[44]
        .as_py()
        .endswith("LC08_pair_000044.stac.json")
    )
    assert read_inventory_table(str(manifest), limit=1000).num_rows == 60
    assert read_inventory_table(str(manifest), limit=0).num_rows == 0
    batches = list(iter_inventory(str(manifest), limit=45, batch_rows=10))
    assert [b.num_rows for b in batches] == [10, 10, 10, 10, 5]


def test_batches_bounded_by_batch_rows(tmp_path: Path) -> None:
    manifest = _csv_inventory(tmp_path / "inventory", [_rows(500), _rows(333, start=500)])
    batches = list(iter_inventory(str(manifest), batch_rows=64))
    sizes = [b.num_rows for b in batches]
    assert sum(sizes) == 833
    assert all(s == 64 for s in sizes[:-1]) and 0 < sizes[-1] <= 64
    assert all(b.schema == INVENTORY_SCHEMA for b in batches)
    keys = [k for b in batches for k in b.column("key").to_pylist()]
    assert keys == [k for _, k, _ in _rows(833) if k.endswith(".stac.json")]


# --- errors -----------------------------------------------------------------------------------


def test_missing_manifest_names_it(tmp_path: Path) -> None:
    uri = str(tmp_path / "inventory" / "2025-01-02T01-00Z" / "manifest.json")
    with pytest.raises(FileNotFoundError) as info:
        read_inventory_table(uri)
    assert uri in str(info.value)


def test_missing_data_file_names_it_and_the_manifest(tmp_path: Path) -> None:
    manifest = _csv_inventory(tmp_path / "inventory", [_rows(3), _rows(3, start=3)])
    data = read_manifest(str(manifest)).data_files[1]
    Path(data).unlink()
    batches = iter_inventory(str(manifest))
    with pytest.raises(FileNotFoundError) as info:
        list(batches)
    assert data in str(info.value) and str(manifest) in str(info.value)


def test_missing_single_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.parquet"):
        read_inventory_table(str(tmp_path / "nope.parquet"))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"sourceBucket": "b", "fileFormat": "CSV", "files": []}), "destinationBucket"),
        (
            json.dumps(
                {
                    "sourceBucket": "b",
                    "destinationBucket": "arn:aws:s3:::d",
                    "fileFormat": "Avro",
                    "fileSchema": "x",
                    "files": [],
                }
            ),
            "unknown fileFormat 'Avro'",
        ),
        (
            json.dumps(
                {
                    "sourceBucket": "b",
                    "destinationBucket": "arn:aws:s3:::d",
                    "fileFormat": "ORC",
                    "fileSchema": "struct<>",
                    "files": [{"key": "data/x.orc"}],
                }
            ),
            "ORC is not supported",
        ),
        (
            json.dumps(
                {
                    "sourceBucket": "b",
                    "destinationBucket": "arn:aws:s3:::d",
                    "fileFormat": "CSV",
                    "fileSchema": "Bucket, Key",
                    "files": [{"size": 3}],
                }
            ),
            r"files\[0\] has no 'key'",
        ),
        (
            json.dumps(
                {
                    "sourceBucket": "b",
                    "destinationBucket": "arn:aws:s3:::d",
                    "fileFormat": "CSV",
                    "fileSchema": "Bucket, Size",
                    "files": [],
                }
            ),
            "no Key column",
        ),
    ],
)
def test_malformed_manifest(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "inv" / "2025-01-02T01-00Z" / "manifest.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ValueError, match=problem) as info:
        list(iter_inventory(str(path)))
    assert str(path) in str(info.value)


def test_empty_manifest_yields_nothing(tmp_path: Path) -> None:
    manifest = _write_manifest(tmp_path / "inv", "2025-01-02", [])
    assert list(iter_inventory(str(manifest))) == []
    assert read_inventory_table(str(manifest)).schema == INVENTORY_SCHEMA


# --- on a real S3 endpoint (moto) -----------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_endpoint() as endpoint:
        boto_client(endpoint).create_bucket(Bucket="its-live-inventory")
        yield endpoint


def test_manifest_on_s3_reads_data_from_destination_bucket(s3_endpoint: str) -> None:
    use_endpoint(s3_endpoint)
    try:
        dest = "s3://its-live-inventory"
        rows = _rows(10)
        storage.write_bytes(f"{dest}/{DEST_PREFIX}/data/a.csv.gz", _csv_gz(rows, encode_slash=True))
        parquet_rows = _rows(5, start=10)
        storage.write_parquet(
            pa.table(
                {"bucket": [b for b, _, _ in parquet_rows], "key": [k for _, k, _ in parquet_rows]}
            ),
            f"{dest}/{DEST_PREFIX}/data/b.parquet",
        )
        doc = {
            "sourceBucket": SRC,
            "destinationBucket": "arn:aws:s3:::its-live-inventory",
            "fileFormat": "CSV",
            "fileSchema": CSV_SCHEMA,
            "files": [{"key": f"{DEST_PREFIX}/data/a.csv.gz", "size": 1, "MD5checksum": "0"}],
        }
        manifest = f"{dest}/{DEST_PREFIX}/2025-01-02T01-00Z/manifest.json"
        storage.write_bytes(manifest, json.dumps(doc).encode())
        assert read_manifest(manifest).data_files == (f"{dest}/{DEST_PREFIX}/data/a.csv.gz",)
        got = read_inventory_table(manifest, since="2025-01-01T05:00Z")
        assert got.column("key").to_pylist() == [
            k for _, k, w in rows if k.endswith(".stac.json") and w.hour >= 5
        ]
        single = read_inventory_table(f"{dest}/{DEST_PREFIX}/data/b.parquet")
        assert single.num_rows == 5

        doc["files"].append({"key": f"{DEST_PREFIX}/data/gone.csv.gz", "size": 1})
        storage.write_bytes(manifest, json.dumps(doc).encode())
        with pytest.raises(FileNotFoundError, match=r"data/gone\.csv\.gz"):
            read_inventory_table(manifest)
    finally:
        storage.configure_s3()
