"""fetch_objects against a local source root with present and absent objects."""

from __future__ import annotations

import zlib
from pathlib import Path

import pyarrow as pa

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.fetch import (
    FAILED_SCHEMA,
    MISSING_SCHEMA,
    fetch_ahead,
    fetch_objects,
)
from earthcatalog_dagster.core.storage import RetryPolicy
from earthcatalog_dagster_tests.core.fault_proxy import TRANSIENT, fault_proxy
from earthcatalog_dagster_tests.core.moto_s3 import boto_client, moto_endpoint, use_endpoint

BUCKET = "its-live-data"


def _refs(keys: list[str], bucket: str = BUCKET) -> pa.Table:
    return pa.table({"bucket": [bucket] * len(keys), "key": keys})


def test_fetch_present_absent_and_failed(tmp_path: Path) -> None:
    root = tmp_path / "source"
    keys = [f"velocity_image_pair/landsatOLI/v02/N60W140/item_{i:03d}.stac.json" for i in range(60)]
    present = keys[::2]
    for key in present:
        path = root / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f'{{"id": "{Path(key).name}"}}'.encode())
    # a directory where an object should be: permanent failure, reported, not retried forever
    broken = "velocity_image_pair/broken/dir.stac.json"
    (root / BUCKET / broken).mkdir(parents=True)

    refs = _refs([*keys, broken])
    result = fetch_objects(
        refs, source_root=str(root), concurrency=8, retry=RetryPolicy(base_delay=0.0)
    )

    assert result.keys == present  # input order, ok rows only
    assert result.buckets == [BUCKET] * len(present)
    assert result.bodies == [(root / BUCKET / k).read_bytes() for k in present]
    assert result.missing.schema == MISSING_SCHEMA
    assert result.missing.column("key").to_pylist() == keys[1::2]
    assert result.failed.schema == FAILED_SCHEMA
    assert result.failed.column("key").to_pylist() == [broken]
    assert result.failed.column("error")[0].as_py()
    assert result.ok + result.missing.num_rows + result.failed.num_rows == refs.num_rows
    assert result.total == refs.num_rows


def test_fetch_ahead_gives_the_slices_in_order(tmp_path: Path) -> None:
    root = tmp_path / "source"
    keys = [f"k/item_{i:03d}.stac.json" for i in range(23)]
    for key in keys[:20]:  # the last three are missing
        path = root / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(key.encode())

    slices = list(fetch_ahead(_refs(keys), rows=5, source_root=str(root), concurrency=4))

    assert [s.total for s in slices] == [5, 5, 5, 5, 3]
    assert [k for s in slices for k in s.keys] == keys[:20]
    assert [b for s in slices for b in s.bodies] == [k.encode() for k in keys[:20]]
    assert [k for s in slices for k in s.missing.column("key").to_pylist()] == keys[20:]
    assert len(list(fetch_ahead(_refs([]), rows=5, source_root=str(root)))) == 1  # empty


def test_fetch_record_batch_and_empty(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "b2" / "k").mkdir(parents=True)
    (root / "b2" / "k" / "x.stac.json").write_bytes(b"{}")
    batch = _refs(["k/x.stac.json", "k/y.stac.json"], bucket="b2").to_batches()[0]
    result = fetch_objects(batch, source_root=str(root))
    assert (result.keys, result.bodies, result.buckets) == (["k/x.stac.json"], [b"{}"], ["b2"])
    assert result.missing.to_pylist() == [{"bucket": "b2", "key": "k/y.stac.json"}]
    assert result.failed.num_rows == 0

    empty = fetch_objects(_refs([]), source_root=str(root))
    assert empty.total == 0 and empty.missing.schema == MISSING_SCHEMA


def test_fetch_from_s3_anonymous_and_mirror_root() -> None:
    with moto_endpoint() as endpoint:
        use_endpoint(endpoint)
        try:
            client = boto_client(endpoint)
            client.create_bucket(Bucket=BUCKET)
            client.create_bucket(Bucket="mirror")
            client.put_object(Bucket=BUCKET, Key="v/a.stac.json", Body=b"A", ACL="public-read")
            client.put_object(Bucket="mirror", Key=f"root/{BUCKET}/v/a.stac.json", Body=b"M")
            refs = _refs(["v/a.stac.json", "v/gone.stac.json"])

            public = fetch_objects(refs, source_root=None)  # s3://bucket/key, unsigned
            assert (public.keys, public.bodies) == (["v/a.stac.json"], [b"A"])
            assert public.missing.column("key").to_pylist() == ["v/gone.stac.json"]

            mirrored = fetch_objects(refs, source_root="s3://mirror/root")  # signed
            assert (mirrored.keys, mirrored.bodies) == (["v/a.stac.json"], [b"M"])
            assert mirrored.total == 2
        finally:
            storage.configure_s3()


def mixed_transient_faults(method: str, path: str, n: int) -> str | None:
    """A quarter of the ``.stac.json`` objects fail their first two GETs, each with one of
    S3's transient faults (500, 503, a dropped connection, a body cut short)."""
    if method != "GET" or not path.endswith(".stac.json"):
        return None
    h = zlib.crc32(path.encode())
    return TRANSIENT[(h // 4) % len(TRANSIENT)] if h % 4 == 0 and n < 2 else None


def test_fetch_returns_every_body_through_transient_faults() -> None:
    with moto_endpoint() as endpoint:
        use_endpoint(endpoint)
        try:
            boto_client(endpoint).create_bucket(Bucket=BUCKET)
            keys = [f"v/N{i % 9}0W140/item_{i:03d}.stac.json" for i in range(120)]
            bodies = {
                k: f'{{"id": "{k}", "pad": "{"x" * (i % 500)}"}}'.encode()
                for i, k in enumerate(keys)
            }
            for key, body in bodies.items():
                storage.write_bytes(f"s3://{BUCKET}/mirror/{BUCKET}/{key}", body)
            with fault_proxy(endpoint, mixed_transient_faults) as proxy:
                use_endpoint(proxy.endpoint)
                result = fetch_objects(
                    _refs(keys), source_root=f"s3://{BUCKET}/mirror", concurrency=16
                )
            assert set(proxy.injected) == set(TRANSIENT), proxy.injected
            assert sum(proxy.injected.values()) >= 40
            assert result.failed.num_rows == 0, result.failed.to_pylist()
            assert result.missing.num_rows == 0
            assert result.keys == keys
            assert result.bodies == [bodies[k] for k in keys]
        finally:
            storage.configure_s3()
