"""``ingest()`` with every root on S3 (moto over HTTP): racing writers, faults, anonymity."""

from __future__ import annotations

import dataclasses
import multiprocessing
import zlib
from collections import Counter
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pytest

from earthcatalog_dagster import ingest, layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import lock, remote_catalog, storage
from earthcatalog_dagster.synthetic import (
    INVENTORY_BUCKET,
    SOURCE_BUCKET,
    generate_day,
    write_inventory,
)
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2
from earthcatalog_dagster_tests.core.fault_proxy import fault_proxy
from earthcatalog_dagster_tests.core.moto_s3 import KEY_ID, SECRET
from earthcatalog_dagster_tests.helpers import (
    assert_pairs_match,
    index_holds,
    pairs_match,
    scan_pairs,
    write_day,
)
from earthcatalog_dagster_tests.s3_fixtures import point_env_at

# End to end (whole ingests, Dagster runs, S3 servers): out of the fast lane.
pytestmark = pytest.mark.slow

N_ITEMS = 40
CHILD_TIMEOUT_S = 120


def _remote_table(settings: Settings):
    """The table as the shared catalog on S3 has it (not any local working copy)."""
    path = remote_catalog.read_copy(settings.catalog_remote)
    return iceberg.load_table(iceberg.open_catalog(path, settings.warehouse))


# --- two processes race for the catalog --------------------------------------------------------


def _child(settings: Settings, manifest: str, barrier: Any, timeout: float, out: Any) -> None:
    barrier.wait(timeout=CHILD_TIMEOUT_S)
    try:
        summary = ingest(manifest, settings=settings, lock_timeout=timeout, h3_resolution=1)
        out.put(("ok", summary.files_registered))
    except lock.LockHeld as exc:
        out.put(("lock held", str(exc)))


def _race(settings: Settings, tmp_path, manifests: list[str], timeout: float) -> list[tuple]:
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(len(manifests)), ctx.Queue()
    processes = []
    for n, manifest in enumerate(manifests):
        # Each process is its own machine: its own local working copy of catalog.db.
        own = dataclasses.replace(settings, catalog=str(tmp_path / f"runner{n}" / "catalog.db"))
        process = ctx.Process(target=_child, args=(own, manifest, barrier, timeout, out))
        process.start()
        processes.append(process)
    results = [out.get(timeout=CHILD_TIMEOUT_S) for _ in processes]
    for process in processes:
        process.join(CHILD_TIMEOUT_S)
        assert process.exitcode == 0
    return results


def test_two_processes_race_for_the_remote_catalog_and_both_land(s3_home, tmp_path) -> None:
    # The first run builds the table; then two runs commit at the same time.
    day0, manifest0 = write_day(s3_home, DAY_1, 20, seed=10)
    ingest(manifest0, settings=s3_home, h3_resolution=1)
    (day1, manifest1), (day2, manifest2) = (
        write_day(s3_home, DAY_2, N_ITEMS, seed=11),
        write_day(s3_home, DAY_2.replace(day=29), N_ITEMS, seed=12),
    )
    results = _race(s3_home, tmp_path, [manifest1, manifest2], timeout=CHILD_TIMEOUT_S)
    assert [r[0] for r in results] == ["ok", "ok"]  # the second waited for the first

    table = _remote_table(s3_home)
    pairs = scan_pairs(table)
    assert len(pairs) == len(set(pairs))
    assert_pairs_match(pairs, day0, day1, day2)  # no registration lost
    assert len(table.snapshots()) == 3
    index_holds(s3_home, day0, day1, day2)
    assert not storage.exists(layout.catalog_lock(s3_home.catalog_remote))


def test_a_racer_that_cannot_wait_fails_cleanly_and_its_rerun_lands(s3_home, tmp_path) -> None:
    day1, manifest1 = write_day(s3_home, DAY_1, N_ITEMS, seed=13)
    day2, manifest2 = write_day(s3_home, DAY_2, N_ITEMS, seed=14)
    results = _race(s3_home, tmp_path, [manifest1, manifest2], timeout=0.0)
    outcomes = sorted(r[0] for r in results)
    assert outcomes == ["lock held", "ok"], results
    (message,) = [r[1] for r in results if r[0] == "lock held"]
    assert layout.catalog_lock(s3_home.catalog_remote) in message and "expires at" in message

    # The catalog holds exactly the winner's day, intact.
    table = _remote_table(s3_home)
    pairs = scan_pairs(table)
    assert pairs_match(pairs, day1) or pairs_match(pairs, day2)
    loser = manifest2 if pairs_match(pairs, day1) else manifest1
    ingest(loser, settings=s3_home, h3_resolution=1)
    assert_pairs_match(scan_pairs(_remote_table(s3_home)), day1, day2)
    index_holds(s3_home, day1, day2)


# --- faults on the item GETs ---------------------------------------------------------------------


def test_slowdowns_and_dropped_connections_on_item_gets_lose_nothing(
    s3_server, s3_home, monkeypatch
) -> None:
    day, manifest = write_day(s3_home, DAY_1, 50, seed=15)

    def fault(method: str, path: str, n: int) -> str | None:
        # About two thirds of the items fail their first one or two GETs.
        if method != "GET" or not path.endswith(".stac.json"):
            return None
        failures = zlib.crc32(path.encode()) % 3
        return ("503", "drop")[n % 2] if n < failures else None

    with fault_proxy(s3_server.endpoint, fault) as proxy:
        point_env_at(monkeypatch, s3_server.env(proxy.endpoint))
        summary = ingest(manifest, settings=s3_home, h3_resolution=1)
    point_env_at(monkeypatch, s3_server.env())  # the proxy is gone
    assert proxy.injected["503"] >= 10 and proxy.injected["drop"] >= 5, proxy.injected
    # Every object is written by whole single PUTs: no multipart upload, no append. (A PUT
    # the client retried after a slow answer under load repeats the same whole object.)
    assert not [t for _, t in proxy.requests if "uploads" in t or "partNumber=" in t]
    puts = Counter(unquote(t) for m, t in proxy.requests if m == "PUT")
    warehouse_path = "/" + s3_home.warehouse.removeprefix("s3://") + "/grid_partition="
    data_puts = {t: n for t, n in puts.items() if t.startswith(warehouse_path)}
    assert len(data_puts) == summary.files_written, (len(data_puts), summary.as_dict())
    assert max(data_puts.values()) <= 3, data_puts
    assert summary.reconciles, summary.as_dict()
    assert summary.failed == 0
    assert summary.items_written == len(day.good_ids)
    assert_pairs_match(scan_pairs(_remote_table(s3_home)), day)
    index_holds(s3_home, day)


# --- anonymous reads of the public source bucket -------------------------------------------------


def test_items_are_read_unsigned_from_the_public_bucket(s3_home, tmp_path) -> None:
    # The day's objects in the public bucket itself, at s3://its-live-data/<key>.
    day = generate_day("2026-03-03", 30, source_root=str(tmp_path / "source"), seed=16)
    for key in day.item_keys:
        path = layout.source_object(SOURCE_BUCKET, key, str(tmp_path / "source"))
        if storage.exists(path):
            storage.write_bytes(f"s3://{SOURCE_BUCKET}/{key}", storage.read_bytes(path))
    manifest = write_inventory(s3_home.inventory, "2026-03-03", day.refs)
    public = dataclasses.replace(s3_home, source_root=None)
    summary = ingest(manifest, settings=public, h3_resolution=1)
    assert summary.reconciles and summary.failed == 0
    assert summary.items_written == len(day.good_ids)
    assert_pairs_match(scan_pairs(_remote_table(public)), day)


def test_a_private_source_object_fails_clearly_naming_bucket_and_key(s3_home) -> None:
    key = "velocity_image_pair/private/v02/secret.stac.json"
    storage.write_bytes(f"s3://{INVENTORY_BUCKET}/{key}", b"{}")  # exists; not public
    refs = pa.table({"bucket": [INVENTORY_BUCKET], "key": [key]})
    inventory = layout.join(s3_home.staging, "private_refs.parquet")
    storage.write_parquet(refs, inventory)
    with pytest.raises(storage.AccessDenied) as err:
        ingest(inventory, settings=dataclasses.replace(s3_home, source_root=None), h3_resolution=1)
    assert (err.value.bucket, err.value.key) == (INVENTORY_BUCKET, key)
    assert INVENTORY_BUCKET in str(err.value) and key in str(err.value)
    assert KEY_ID not in str(err.value) and SECRET not in str(err.value)
    assert not storage.exists(layout.catalog_lock(s3_home.catalog_remote))  # released
