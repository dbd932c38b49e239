"""``ingest()`` against an S3 endpoint that fails a quarter of the objects' first two GETs.

S3's transient faults — 500 InternalError, 503 SlowDown, a dropped connection, a body cut
short — are retried on every read path, so the run writes every item exactly once and
reports nothing failed. The oracle is independent of the code under test: the ids in the
warehouse Parquet files, read back with pyarrow, against the synthetic day's ids.
"""

from __future__ import annotations

import zlib
from collections import Counter

import pyarrow.parquet as pq
import pytest

from earthcatalog_dagster import bulk_ingest, ingest
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.synthetic import generate_day, write_inventory
from earthcatalog_dagster_tests.conftest import DAY_1
from earthcatalog_dagster_tests.core.fault_proxy import TRANSIENT, fault_proxy
from earthcatalog_dagster_tests.helpers import materialize_partition, metadata
from earthcatalog_dagster_tests.s3_fixtures import point_env_at


def quarter_fail_first_two_gets(method: str, path: str, n: int) -> str | None:
    """Every object whose path hashes to 0 mod 4 fails its first two GETs, each object
    with one of the four transient faults. Applies to every GET of the run: items,
    inventory manifest and data, catalog, hash index."""
    if method != "GET":
        return None
    h = zlib.crc32(path.encode())
    return TRANSIENT[(h // 4) % len(TRANSIENT)] if h % 4 == 0 and n < 2 else None


def _warehouse_rows(warehouse: str) -> list[tuple[str, str]]:
    """(id, grid_partition) of every row of every warehouse Parquet file."""
    rows: list[tuple[str, str]] = []
    for info in storage.list_objects(warehouse, suffix=".parquet"):
        with storage.open_input(info.uri) as f:
            table = pq.read_table(f, columns=["id", "grid_partition"])
        rows += zip(table["id"].to_pylist(), table["grid_partition"].to_pylist(), strict=True)
    return rows


@pytest.mark.slow
def test_ingest_writes_every_item_once_through_transient_faults(
    s3_server, s3_home, monkeypatch
) -> None:
    day = generate_day(DAY_1, 80, source_root=s3_home.source_root, seed=21)
    manifest = write_inventory(s3_home.inventory, DAY_1, day.refs)

    with fault_proxy(s3_server.endpoint, quarter_fail_first_two_gets) as proxy:
        point_env_at(monkeypatch, s3_server.env(proxy.endpoint))
        summary = ingest(manifest, settings=s3_home, h3_resolution=1)
    point_env_at(monkeypatch, s3_server.env())  # the proxy is gone

    item_gets = {p for (m, p) in proxy.seen if m == "GET" and p.endswith(".stac.json")}
    assert len(item_gets) >= len(day.good_ids)
    assert set(proxy.injected) == set(TRANSIENT), proxy.injected
    assert sum(proxy.injected.values()) >= len(day.good_ids) // 4, proxy.injected

    rows = _warehouse_rows(s3_home.warehouse)
    duplicates = [pair for pair, n in Counter(rows).items() if n > 1]
    assert not duplicates, duplicates[:5]
    assert {item_id for item_id, _ in rows} == set(day.good_ids)  # every item, nothing else
    assert summary.failed == 0, summary.as_dict()
    assert summary.reconciles, summary.as_dict()
    assert summary.items_written == len(day.good_ids)


@pytest.mark.slow
def test_bulk_ingest_writes_every_item_once_through_transient_faults(
    s3_server, s3_home, monkeypatch
) -> None:
    day = generate_day(DAY_1, 80, source_root=s3_home.source_root, seed=22)
    manifest = write_inventory(s3_home.inventory, DAY_1, day.refs)

    with fault_proxy(s3_server.endpoint, quarter_fail_first_two_gets) as proxy:
        point_env_at(monkeypatch, s3_server.env(proxy.endpoint))
        summary = bulk_ingest(
            manifest,
            settings=s3_home,
            h3_resolution=1,
            scheduler="synchronous",
            chunk_size=30,
            progress=False,
        )
    point_env_at(monkeypatch, s3_server.env())

    assert set(proxy.injected) == set(TRANSIENT), proxy.injected
    rows = _warehouse_rows(s3_home.warehouse)
    duplicates = [pair for pair, n in Counter(rows).items() if n > 1]
    assert not duplicates, duplicates[:5]
    assert {item_id for item_id, _ in rows} == set(day.good_ids)
    assert summary.pending == 0 and summary.reconciles, summary.render()


@pytest.mark.slow
def test_a_dagster_partition_writes_every_item_once_through_transient_faults(
    s3_server, s3_home, monkeypatch
) -> None:
    day = generate_day(DAY_1, 60, source_root=s3_home.source_root, seed=23)
    write_inventory(s3_home.inventory, DAY_1, day.refs)

    with fault_proxy(s3_server.endpoint, quarter_fail_first_two_gets) as proxy:
        point_env_at(monkeypatch, s3_server.env(proxy.endpoint))
        result = materialize_partition(s3_home, DAY_1)
    point_env_at(monkeypatch, s3_server.env())

    assert result.success
    assert set(proxy.injected) == set(TRANSIENT), proxy.injected
    staged = metadata(result, "ndjson_items")
    assert staged["items failed (pending retry)"] == 0
    rows = _warehouse_rows(s3_home.warehouse)
    duplicates = [pair for pair, n in Counter(rows).items() if n > 1]
    assert not duplicates, duplicates[:5]
    assert {item_id for item_id, _ in rows} == set(day.good_ids)
