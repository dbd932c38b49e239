"""Storage over local paths (and a fake S3 store for the retry/error classification)."""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from obstore import exceptions as obs_exc

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.storage import (
    AccessDenied,
    ObjectInfo,
    ObjectNotFound,
    RetryPolicy,
    bulk,
    retry,
    s3config,
)
from earthcatalog_dagster_tests.core.fault_proxy import TRANSIENT, Fault, fault_proxy
from earthcatalog_dagster_tests.core.moto_s3 import (
    KEY_ID,
    SECRET,
    boto_client,
    moto_endpoint,
    use_endpoint,
)

FAST = RetryPolicy(max_attempts=4, base_delay=0.0, max_delay=0.0)
QUICK = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture(autouse=True)
def _fresh_storage(monkeypatch: pytest.MonkeyPatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    storage.configure_s3()
    yield
    storage.configure_s3()


# --- single objects -----------------------------------------------------------------------


def test_round_trip_absolute_relative_and_file_url(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "a" / "b" / "c.bin"
    storage.write_bytes(str(target), b"one")
    assert target.read_bytes() == b"one"
    assert storage.read_bytes(str(target)) == b"one"
    assert storage.read_bytes(f"file://{target}") == b"one"

    monkeypatch.chdir(tmp_path)
    storage.write_bytes("rel/x.txt", b"two")
    assert (tmp_path / "rel" / "x.txt").read_bytes() == b"two"
    assert storage.read_bytes("rel/x.txt") == b"two"
    assert storage.exists("rel/x.txt")

    storage.write_bytes(str(target), b"replaced")  # overwrite
    assert target.read_bytes() == b"replaced"
    # no staging files left behind by the atomic write
    assert sorted(p.name for p in target.parent.iterdir()) == ["c.bin"]


def test_write_accepts_pyarrow_buffers_and_odd_names(tmp_path: Path) -> None:
    uri = str(tmp_path / "dir with space" / "p+q%20ü.json")
    storage.write_bytes(uri, pa.py_buffer(b"buf"))
    assert Path(uri).read_bytes() == b"buf"
    assert [o.uri for o in storage.list_objects(str(tmp_path))] == [uri]


def test_read_missing_names_the_path(tmp_path: Path) -> None:
    uri = str(tmp_path / "nope" / "missing.json")
    with pytest.raises(ObjectNotFound) as info:
        storage.read_bytes(uri)
    assert uri in str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.uri == uri
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        storage.read_parquet(uri)


def test_write_if_absent(tmp_path: Path) -> None:
    uri = str(tmp_path / "locks" / "catalog.lock")
    assert storage.write_if_absent(uri, b"first") is True
    assert storage.write_if_absent(uri, b"second") is False
    assert storage.read_bytes(uri) == b"first"
    storage.delete(uri)
    assert storage.write_if_absent(uri, b"third") is True
    assert storage.read_bytes(uri) == b"third"


def test_exists_is_false_for_directories_and_missing(tmp_path: Path) -> None:
    storage.write_bytes(str(tmp_path / "d" / "f"), b"x")
    assert storage.exists(str(tmp_path / "d" / "f"))
    assert not storage.exists(str(tmp_path / "d"))
    assert not storage.exists(str(tmp_path / "zzz"))


def test_list_objects_recursive_suffix_and_directory_prefix(tmp_path: Path) -> None:
    root = tmp_path / "wh"
    for rel in [
        "grid_partition=a/year=2020/part_1.parquet",
        "grid_partition=a/year=2021/part_2.parquet",
        "grid_partition=b/year=2020/part_3.parquet",
        "grid_partition=b/year=2020/notes.txt",
    ]:
        storage.write_bytes(str(root / rel), b"12345")
    storage.write_bytes(str(tmp_path / "wh_id_hashes.parquet"), b"not under wh/")

    listed = storage.list_objects(str(root))
    assert [o.uri for o in listed] == sorted(str(p) for p in root.rglob("*") if p.is_file())
    assert all(isinstance(o, ObjectInfo) and o.size == 5 for o in listed)
    assert all(o.last_modified.tzinfo is not None for o in listed)

    parquet = storage.list_objects(str(root) + "/", suffix=".parquet")
    assert [Path(o.uri).name for o in parquet] == [
        "part_1.parquet",
        "part_2.parquet",
        "part_3.parquet",
    ]
    # "wh" is a directory prefix: wh_id_hashes.parquet beside it is not listed
    assert not any("id_hashes" in o.uri for o in storage.list_objects(str(root)))
    assert storage.list_objects(str(tmp_path / "missing")) == []
    assert [Path(o.uri).name for o in storage.list_objects(f"file://{root}/grid_partition=b")] == [
        "notes.txt",
        "part_3.parquet",
    ]


def test_delete(tmp_path: Path) -> None:
    uri = str(tmp_path / "x" / "y.bin")
    storage.write_bytes(uri, b"x")
    storage.delete(uri)
    assert not storage.exists(uri)
    storage.delete(uri)  # missing is fine by default
    with pytest.raises(ObjectNotFound, match=r"y\.bin"):
        storage.delete(uri, missing_ok=False)


def test_delete_many_removes_exactly_those_and_tolerates_missing(tmp_path: Path) -> None:
    doomed = [str(tmp_path / "s" / f"{i}.ndjson") for i in range(40)]
    kept = str(tmp_path / "s" / "kept.json")
    for uri in [*doomed, kept]:
        storage.write_bytes(uri, b"x")
    storage.delete(doomed[7])  # already gone: the bulk call falls back, one by one
    storage.delete_many(doomed)
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["kept.json"]
    storage.delete_many(doomed)  # again: nothing left, nothing raised
    storage.delete_many([])


def test_move_and_idempotent_rerun(tmp_path: Path) -> None:
    src = str(tmp_path / "pending" / "delta_2025-01-02.parquet")
    dst = str(tmp_path / "ingested" / "delta_2025-01-02.done")
    storage.write_bytes(src, b"delta")
    storage.move(src, dst)
    assert not storage.exists(src)
    assert storage.read_bytes(dst) == b"delta"
    storage.move(src, dst)  # rerun after success: no-op
    assert storage.read_bytes(dst) == b"delta"


def test_move_after_crash_between_copy_and_delete(tmp_path: Path) -> None:
    src = str(tmp_path / "pending" / "d.parquet")
    dst = str(tmp_path / "ingested" / "d.done")
    storage.write_bytes(src, b"payload")
    storage.write_bytes(dst, b"payload")  # the copy happened, the delete did not
    storage.move(src, dst)
    assert not storage.exists(src)
    assert storage.read_bytes(dst) == b"payload"


def test_move_with_neither_side_fails_naming_source(tmp_path: Path) -> None:
    src = str(tmp_path / "gone.parquet")
    with pytest.raises(ObjectNotFound, match=r"gone\.parquet"):
        storage.move(src, str(tmp_path / "also_gone"))


def test_parquet_round_trip_zstd_by_default(tmp_path: Path) -> None:
    table = pa.table({"bucket": ["b"] * 3, "key": ["k1", "k2", "k3"], "n": [1, 2, 3]})
    uri = str(tmp_path / "out" / "t.parquet")
    storage.write_parquet(table, uri)
    assert storage.read_parquet(uri).equals(table)
    assert storage.read_parquet(uri, columns=["key"]).column_names == ["key"]
    meta = pq.ParquetFile(uri).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    storage.write_parquet(table, uri, compression="snappy")
    assert pq.ParquetFile(uri).metadata.row_group(0).column(0).compression == "SNAPPY"


def test_open_input_streams_local_file(tmp_path: Path) -> None:
    uri = str(tmp_path / "big.bin")
    storage.write_bytes(uri, bytes(range(256)) * 100)
    with storage.open_input(uri) as f:
        assert f.read(3) == b"\x00\x01\x02"
        f.seek(256)
        assert f.read(2) == b"\x00\x01"
    with pytest.raises(ObjectNotFound):
        storage.open_input(str(tmp_path / "nope"))


def test_errors_pickle_round_trip() -> None:
    for exc in (
        ObjectNotFound("s3://b/k"),
        AccessDenied("b", "k", "403"),
        storage.StorageError("boom", "s3://b/k"),
    ):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)


def test_uri_helpers(tmp_path: Path) -> None:
    assert storage.is_local(str(tmp_path)) and not storage.is_local("s3://b/k")
    assert storage.local_path(f"file://{tmp_path}/x") == f"{tmp_path}/x"
    assert storage.local_path("s3://b/k") is None
    with pytest.raises(ValueError, match="gs://"):
        storage.read_bytes("gs://bucket/key")


# --- get_many -------------------------------------------------------------------------------


def _make_items(root: Path, n: int) -> list[str]:
    uris = []
    for i in range(n):
        p = root / "bucket" / f"dir{i % 7}" / f"item_{i:04d}.stac.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f'{{"id": {i}}}'.encode())
        uris.append(str(p))
    return uris


def test_get_many_orders_results_and_reports_missing(tmp_path: Path) -> None:
    uris = _make_items(tmp_path, 300)
    missing = [str(tmp_path / "bucket" / f"gone_{i}.stac.json") for i in range(20)]
    mixed = [u for pair in zip(uris[:20], missing, strict=True) for u in pair] + uris[20:]
    results = storage.get_many(mixed, concurrency=8)
    assert [r.uri for r in results] == mixed
    for r in results:
        if "gone_" in r.uri:
            assert (r.status, r.data, r.attempts) == ("missing", None, 1)
        else:
            assert r.status == "ok" and r.error is None and r.attempts == 1
            assert r.data == Path(r.uri).read_bytes()
    assert sum(r.status == "ok" for r in results) == 300
    assert storage.get_many([]) == []


def test_get_many_directory_is_failed_not_retried(tmp_path: Path) -> None:
    (tmp_path / "adir").mkdir()
    (result,) = storage.get_many([str(tmp_path / "adir")], retry=FAST)
    assert result.status == "failed" and result.attempts == 1
    assert "adir" in (result.error or "") or "directory" in (result.error or "").lower()


def test_get_many_inside_running_event_loop(tmp_path: Path) -> None:
    uris = _make_items(tmp_path, 50)

    async def main() -> tuple[list[storage.GetResult], list[storage.GetResult]]:
        sync_results = storage.get_many(uris)  # a loop is running in this thread
        async_results = await storage.get_many_async(uris, concurrency=4)
        return sync_results, async_results

    sync_results, async_results = asyncio.run(main())
    assert [r.data for r in sync_results] == [Path(u).read_bytes() for u in uris]
    assert [r.data for r in async_results] == [r.data for r in sync_results]


class _FakeObject:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def bytes(self) -> bytes:
        return self._data


class _FakeS3:
    """Stands in for an S3Store: each key fails with its scripted errors, in order, then
    returns its own name as bytes."""

    def __init__(self, script: dict[str, list[BaseException]]) -> None:
        self.script = script
        self.calls: dict[str, int] = {}

    def get(self, path: str) -> _FakeObject:
        self.calls[path] = self.calls.get(path, 0) + 1
        errors = self.script.get(path)
        if errors:
            raise errors.pop(0)
        return _FakeObject(path.encode())


def _use_fake(monkeypatch: pytest.MonkeyPatch, fake: _FakeS3) -> None:
    real = s3config.get_store

    def fake_store(scheme: str, bucket: str, anonymous: bool, internal_retry: bool = True):
        return fake if scheme == "s3" else real(scheme, bucket, anonymous, internal_retry)

    monkeypatch.setattr(bulk, "get_store", fake_store)


def test_get_many_retries_transient_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow() -> Exception:
        return Exception("Generic S3 error: Server returned non-2xx status code: 503 SlowDown")

    def reset() -> Exception:
        return Exception("HTTP error: error sending request: connection reset by peer")

    fake = _FakeS3(
        {
            "a.json": [slow(), reset()],  # fails twice, then succeeds
            "b.json": [reset() for _ in range(10)],  # never recovers
            "c.json": [FileNotFoundError("Object at location c.json not found")],
            "d.json": [Exception("Server returned non-2xx status code: 400 Bad Request")],
        }
    )
    _use_fake(monkeypatch, fake)
    uris = [f"s3://its-live-data/{k}" for k in ("a.json", "b.json", "c.json", "d.json", "e.json")]
    a, b, c, d, e = storage.get_many(uris, retry=FAST, anonymous=True)
    assert (a.status, a.data, a.attempts) == ("ok", b"a.json", 3)
    assert (b.status, b.attempts, fake.calls["b.json"]) == ("failed", 4, 4)
    assert "connection reset" in (b.error or "")
    assert (c.status, c.attempts) == ("missing", 1)
    assert (d.status, d.attempts) == ("failed", 1)  # 400 is permanent: no retry
    assert (e.status, e.data, e.attempts) == ("ok", b"e.json", 1)


def test_get_many_403_raises_access_denied_naming_bucket_and_key(monkeypatch) -> None:
    denied = obs_exc.PermissionDeniedError("403 Forbidden: AccessDenied")
    fake = _FakeS3({"secret/item.stac.json": [denied]})
    _use_fake(monkeypatch, fake)
    uris = ["s3://private-bucket/ok.json", "s3://private-bucket/secret/item.stac.json"]
    with pytest.raises(AccessDenied) as info:
        storage.get_many(uris, retry=FAST)
    assert info.value.bucket == "private-bucket"
    assert info.value.key == "secret/item.stac.json"
    assert "private-bucket" in str(info.value) and "secret/item.stac.json" in str(info.value)
    assert isinstance(info.value, PermissionError)


def test_errors_never_contain_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    storage.configure_s3(access_key_id="AKIATESTKEY123", secret_access_key="s3cr3t/VALUE+xyz")
    leak = Exception(
        "500 Internal Error for AKIATESTKEY123 with s3cr3t/VALUE+xyz at "
        "https://h/k?X-Amz-Credential=AKIATESTKEY123%2F2025&X-Amz-Signature=abcdef0123"
    )
    fake = _FakeS3({"k": [leak] * 10})
    _use_fake(monkeypatch, fake)
    (result,) = storage.get_many(["s3://b/k"], retry=FAST)
    assert result.status == "failed"
    assert "AKIATESTKEY123" not in result.error
    assert "s3cr3t" not in result.error
    assert "abcdef0123" not in result.error
    assert "***" in result.error


def test_retry_policy_delays_are_bounded_full_jitter() -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=0.05, max_delay=0.3)
    for attempt in range(1, 10):
        cap = min(0.3, 0.05 * 2 ** (attempt - 1))
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
    assert RetryPolicy() == RetryPolicy(max_attempts=6, base_delay=0.05, max_delay=5.0)


# --- S3 configuration -----------------------------------------------------------------------


def test_s3_store_configuration_from_env_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    storage.clear_cache()
    store = s3config.get_store("s3", "bucket-a", False)
    assert store.config["endpoint"] == "http://127.0.0.1:9"
    assert store.config["region"] == "eu-west-1"
    assert str(store.client_options["allow_http"]).lower() == "true"
    assert s3config.get_store("s3", "bucket-a", False) is store  # cached
    anon = s3config.get_store("s3", "bucket-a", True)
    assert anon is not store and anon.config.get("skip_signature") == "true"

    storage.configure_s3(region="us-east-2", endpoint_url="https://s3.example.org")
    store2 = s3config.get_store("s3", "bucket-a", False)
    assert store2 is not store
    assert store2.config["region"] == "us-east-2"
    assert store2.config["endpoint"] == "https://s3.example.org"
    assert str((store2.client_options or {}).get("allow_http", False)).lower() != "true"


# --- a real S3 endpoint (moto) --------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_endpoint() as endpoint:
        client = boto_client(endpoint)
        for bucket in ("warehouse", "its-live-data", "private-data"):
            client.create_bucket(Bucket=bucket)
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str) -> str:
    use_endpoint(s3_endpoint)
    return s3_endpoint


def test_s3_round_trip_list_delete(s3: str) -> None:
    base = "s3://warehouse/rt"
    odd = f"{base}/grid_partition=8a/year=2020/a b+c ü.parquet"
    storage.write_bytes(odd, b"odd")
    storage.write_bytes(f"{base}/x/1.json", b"1")
    storage.write_bytes(f"{base}/x/2.json", b"22")
    storage.write_bytes("s3://warehouse/rt_sibling.json", b"not under rt/")
    assert storage.read_bytes(odd) == b"odd"
    assert storage.exists(odd) and not storage.exists(f"{base}/nope")
    keys = [k["Key"] for k in boto_client(s3).list_objects_v2(Bucket="warehouse")["Contents"]]
    assert "rt/grid_partition=8a/year=2020/a b+c ü.parquet" in keys  # the literal key

    listed = storage.list_objects(base)
    assert [o.uri for o in listed] == sorted([odd, f"{base}/x/1.json", f"{base}/x/2.json"])
    assert [o.size for o in storage.list_objects(base, suffix=".json")] == [1, 2]
    assert storage.list_objects("s3://warehouse/absent-prefix") == []

    with pytest.raises(ObjectNotFound, match=r"s3://warehouse/rt/nope"):
        storage.read_bytes(f"{base}/nope")
    storage.delete(f"{base}/x/1.json")
    storage.delete(f"{base}/x/1.json")
    with pytest.raises(ObjectNotFound):
        storage.delete(f"{base}/x/1.json", missing_ok=False)
    assert [o.uri for o in storage.list_objects(f"{base}/x")] == [f"{base}/x/2.json"]


def test_s3_delete_many_across_buckets_beyond_one_request(s3: str) -> None:
    """More keys than one DeleteObjects request takes (1,000), in two buckets, odd names."""
    doomed = [f"s3://warehouse/dm/k{i:04d} ü+.json" for i in range(1_003)]
    doomed.append("s3://private-data/dm/other.json")
    for uri in [*doomed, "s3://warehouse/dm-kept.json"]:
        storage.write_bytes(uri, b"x")
    storage.delete_many([*doomed, "s3://warehouse/dm/never-written.json"])
    client = boto_client(s3)
    left = client.list_objects_v2(Bucket="warehouse", Prefix="dm").get("Contents", [])
    assert [k["Key"] for k in left] == ["dm-kept.json"]
    assert client.list_objects_v2(Bucket="private-data", Prefix="dm").get("KeyCount") == 0


def test_s3_write_if_absent_and_move(s3: str, tmp_path: Path) -> None:
    lock = "s3://warehouse/locks/catalog.lock"
    storage.delete(lock)
    assert storage.write_if_absent(lock, b'{"owner": "a"}') is True
    assert storage.write_if_absent(lock, b'{"owner": "b"}') is False
    assert storage.read_bytes(lock) == b'{"owner": "a"}'

    src, dst = "s3://warehouse/delta/pending/d.parquet", "s3://warehouse/delta/ingested/d.done"
    storage.write_bytes(src, b"delta")
    storage.write_bytes(dst, b"delta")  # crash after copy, before delete
    storage.move(src, dst)
    assert not storage.exists(src) and storage.read_bytes(dst) == b"delta"
    storage.move(src, dst)  # rerun: no-op

    local = tmp_path / "local.bin"
    local.write_bytes(b"across stores")
    storage.move(str(local), "s3://warehouse/from_local.bin")
    assert not local.exists()
    assert storage.read_bytes("s3://warehouse/from_local.bin") == b"across stores"


def test_s3_parquet_and_streaming(s3: str) -> None:
    table = pa.table({"id": ["a", "b"], "n": [1, 2]})
    storage.write_parquet(table, "s3://warehouse/t/one.parquet")
    assert storage.read_parquet("s3://warehouse/t/one.parquet").equals(table)
    assert storage.read_parquet("s3://warehouse/t/one.parquet", columns=["n"]).num_columns == 1
    storage.write_bytes("s3://warehouse/t/big.bin", bytes(range(256)) * 1000)
    with storage.open_input("s3://warehouse/t/big.bin") as f:
        assert f.read(2) == b"\x00\x01"
        f.seek(258)
        assert f.read(2) == b"\x02\x03"
        assert len(f.read()) == 256_000 - 260


def test_s3_get_many_signed_anonymous_and_denied(s3: str) -> None:
    client = boto_client(s3)
    client.put_object(Bucket="its-live-data", Key="v/1.stac.json", Body=b"{1}", ACL="public-read")
    client.put_object(Bucket="private-data", Key="v/2.stac.json", Body=b"{2}")
    uris = ["s3://its-live-data/v/1.stac.json", "s3://its-live-data/v/gone.stac.json"]
    for anonymous in (False, True):
        ok, gone = storage.get_many(uris, anonymous=anonymous)
        assert (ok.status, ok.data) == ("ok", b"{1}")
        assert (gone.status, gone.data, gone.attempts) == ("missing", None, 1)
    signed = storage.get_many(["s3://private-data/v/2.stac.json"])
    assert signed[0].data == b"{2}"
    with pytest.raises(AccessDenied) as info:
        storage.get_many(["s3://private-data/v/2.stac.json"], anonymous=True)
    assert (info.value.bucket, info.value.key) == ("private-data", "v/2.stac.json")
    assert SECRET not in str(info.value) and KEY_ID not in str(info.value)


def test_key_below_a_file_is_missing(tmp_path: Path) -> None:
    storage.write_bytes(str(tmp_path / "file"), b"x")
    below = str(tmp_path / "file" / "child.json")
    with pytest.raises(ObjectNotFound, match="child"):
        storage.read_bytes(below)
    assert not storage.exists(below)
    assert storage.get_many([below])[0].status == "missing"


# --- transient faults on every read path ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "retryable"),
    [
        ("Server returned non-2xx status code: 500 Internal Server Error", True),
        ("Server returned non-2xx status code: 503 Service Unavailable: SlowDown", True),
        ("Server returned non-2xx status code: 429 Too Many Requests", True),
        ("Server returned non-2xx status code: 408 Request Timeout", True),
        # digits elsewhere in the text (elapsed time, key, request id) do not decide
        ("GET http://h/b/400/k.json in 413.2ms - non-2xx status code: 500 Internal", True),
        ("<HostId>ab+405/xyz=</HostId> non-2xx status code: 503 Slow Down", True),
        ("HTTP error: error sending request", True),  # dropped connection
        ("HTTP error: request or response body error", True),  # body cut short
        ("Server returned non-2xx status code: 400 Bad Request", False),
        ("Server returned non-2xx status code: 404 Not Found", False),
        ("Server returned non-2xx status code: 403 Forbidden", False),
        ("Operation not supported by this store", False),
    ],
)
def test_transient_is_decided_by_status_not_stray_digits(text: str, retryable: bool) -> None:
    assert retry.is_retryable(Exception(text)) is retryable


def test_permanent_exception_types_are_final() -> None:
    for exc in (
        FileNotFoundError("x"),
        obs_exc.NotFoundError("x"),
        obs_exc.PermissionDeniedError("x"),
        IsADirectoryError("x"),
        ValueError("x"),
    ):
        assert not retry.is_retryable(exc), exc


def test_call_with_retry_retries_transient_then_raises_the_last(monkeypatch) -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise Exception("non-2xx status code: 500 Internal Server Error")
        return "ok"

    assert retry.call_with_retry(flaky, FAST, sleep=lambda _: None) == "ok"
    assert len(calls) == 3

    def always() -> None:
        calls.append(1)
        raise Exception("HTTP error: error sending request")

    calls.clear()
    with pytest.raises(Exception, match="error sending request"):
        retry.call_with_retry(always, FAST, sleep=lambda _: None)
    assert len(calls) == FAST.max_attempts

    def missing() -> None:
        calls.append(1)
        raise obs_exc.NotFoundError("Object at location x not found")

    calls.clear()
    with pytest.raises(obs_exc.NotFoundError):
        retry.call_with_retry(missing, FAST, sleep=lambda _: None)
    assert len(calls) == 1  # a 404 is final at once


def _proxy_path(uri: str) -> str:
    """The path-style request path of an S3 URI, as the proxy sees it."""
    return "/" + uri.removeprefix("s3://")


def _quarter_fault(action: str) -> Fault:
    """A quarter of the objects (by hash of their path) fail their first two GETs."""

    def fault(method: str, path: str, n: int) -> str | None:
        if method == "GET" and "/faulty/" in path and zlib.crc32(path.encode()) % 4 == 0:
            return action if n < 2 else None
        return None

    return fault


@pytest.mark.parametrize("action", TRANSIENT)
def test_get_many_survives_transient_faults(s3_endpoint: str, action: str) -> None:
    use_endpoint(s3_endpoint)
    bodies = {f"s3://warehouse/faulty/{action}/{i:03d}.json": os.urandom(700) for i in range(40)}
    for uri, body in bodies.items():
        storage.write_bytes(uri, body)
    uris = list(bodies)
    with fault_proxy(s3_endpoint, _quarter_fault(action)) as proxy:
        use_endpoint(proxy.endpoint)
        results = storage.get_many(uris, concurrency=8, retry=QUICK)
    assert proxy.injected[action] >= 10, proxy.injected
    assert [r.status for r in results] == ["ok"] * len(uris), [r.error for r in results]
    assert [r.data for r in results] == [bodies[u] for u in uris]
    faulted = [r for r in results if zlib.crc32(_proxy_path(r.uri).encode()) % 4 == 0]
    assert faulted and all(r.attempts == 3 for r in faulted)


@pytest.mark.parametrize("action", TRANSIENT)
def test_single_object_reads_survive_transient_faults(s3_endpoint: str, action: str) -> None:
    use_endpoint(s3_endpoint)
    table = pa.table({"id": [f"item-{i}" for i in range(2000)], "n": list(range(2000))})
    big = os.urandom(300_000)
    base = f"s3://warehouse/faulty/single-{action}"
    for name in ("read_parquet", "read_with_etag"):
        storage.write_parquet(table, f"{base}/{name}.parquet")
    for name in ("read_bytes", "open_input"):
        storage.write_bytes(f"{base}/{name}.bin", big)

    def fault(method: str, path: str, n: int) -> str | None:
        # Each object's first two GETs fail; for the streamed one, two ranged GETs after
        # the first, so the failures hit mid-stream.
        if method != "GET" or "/faulty/" not in path:
            return None
        if path.endswith("open_input.bin"):
            return action if n in (1, 2) else None
        return action if n < 2 else None

    with fault_proxy(s3_endpoint, fault) as proxy:
        use_endpoint(proxy.endpoint)
        assert storage.read_parquet(f"{base}/read_parquet.parquet").equals(table)
        data, e_tag = storage.read_with_etag(f"{base}/read_with_etag.parquet")
        assert pq.read_table(pa.BufferReader(data)).equals(table) and e_tag
        assert storage.read_bytes(f"{base}/read_bytes.bin") == big
        with storage.open_input(f"{base}/open_input.bin", buffer_size=64 << 10) as f:
            assert f.read() == big
    assert proxy.injected[action] == 8, proxy.injected
    for name in ("read_parquet.parquet", "read_with_etag.parquet", "read_bytes.bin"):
        assert proxy.seen[("GET", _proxy_path(f"{base}/{name}"))] == 3  # two faults, one ok


def test_a_404_through_the_proxy_is_final_and_a_lasting_500_fails(s3_endpoint: str) -> None:
    use_endpoint(s3_endpoint)
    storage.write_bytes("s3://warehouse/faulty/always500.json", b"x")
    with fault_proxy(s3_endpoint, lambda m, p, n: "500" if "always500" in p else None) as proxy:
        use_endpoint(proxy.endpoint)
        with pytest.raises(ObjectNotFound):
            storage.read_bytes("s3://warehouse/faulty/gone.json")
        assert proxy.seen[("GET", "/warehouse/faulty/gone.json")] == 1
        (result,) = storage.get_many(["s3://warehouse/faulty/always500.json"], retry=QUICK)
    assert (result.status, result.attempts) == ("failed", QUICK.max_attempts)
    assert "500" in (result.error or "")


# --- debris of killed writes ---------------------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def test_remove_debris_removes_exactly_old_staging_files(tmp_path: Path) -> None:
    root = tmp_path / "warehouse"
    cell = root / "grid_partition=81033ffffffffff" / "year=2020"
    cell.mkdir(parents=True)
    real = cell / "part_0001.parquet"
    real.write_bytes(b"real")
    old = [cell / "part_0001.parquet#1", cell / "part_0002.parquet#12", root / "x.json#3"]
    fresh = cell / "part_0003.parquet#1"  # a live writer's staging file
    keep = [cell / "notes#draft", cell / "a#1.parquet", cell / "part.tmp", cell / "#"]
    for path in [*old, fresh, *keep]:
        path.write_bytes(b"partial")
    for path in [*old, *keep, real]:
        _age(path, 3600)
    (cell / "dir#1").mkdir()  # a directory is never debris
    _age(cell / "dir#1", 3600)
    outside = tmp_path / "other#1"
    outside.write_bytes(b"not under the root")
    _age(outside, 3600)

    removed = storage.remove_debris(str(root))

    assert removed == sorted(str(p) for p in old)
    assert not any(p.exists() for p in old)
    assert fresh.exists() and real.exists() and outside.exists()
    assert all(p.exists() for p in keep) and (cell / "dir#1").is_dir()
    assert storage.remove_debris(str(root)) == []  # idempotent
    assert storage.remove_debris(str(root), min_age=0) == [str(fresh)]  # no live writer
    assert storage.remove_debris(str(tmp_path / "missing")) == []
    assert storage.remove_debris("s3://warehouse/anything") == []  # S3 leaves no debris


def test_a_killed_local_write_leaves_debris_that_remove_debris_cleans(tmp_path: Path) -> None:
    """Really kill a writer mid-put: its staging file has the name remove_debris matches."""
    target = tmp_path / "warehouse" / "grid_partition=a" / "year=2020" / "part_0.parquet"
    code = (
        "import sys\n"
        "from earthcatalog_dagster.core import storage\n"
        "data = b'x' * (256 << 20)\n"
        "print('go', flush=True)\n"
        f"storage.write_bytes({str(target)!r}, data)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == b"go\n"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if target.parent.is_dir() and any(target.parent.iterdir()):
                break
            time.sleep(0.002)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    names = sorted(p.name for p in target.parent.iterdir())
    if names == [target.name]:  # pragma: no cover - the put won the race on a fast disk
        pytest.skip("the write finished before the kill")
    assert names == [f"{target.name}#1"], names
    assert storage.remove_debris(str(tmp_path / "warehouse"), min_age=0) == [str(target) + "#1"]
    assert list(target.parent.iterdir()) == []
