"""Phase 3 in groups of buckets (``phases.compact_buckets``): what a group writes is what
one bucket per task writes, byte for byte, and each bucket is deduplicated on its own.

Oracles: the staged NDJSON read back with the standard ``json`` module (which rows each
bucket must hold), and the same buckets compacted one per call into another warehouse.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pytest

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.pipeline import phases
from earthcatalog_dagster.synthetic import generate_day, write_inventory
from earthcatalog_dagster.synthetic.items import make_item

DAY = dt.date(2026, 4, 28)


def _staged(tmp_path: Path, n: int = 120) -> tuple[Settings, str, list[tuple[str, str]]]:
    """A synthetic day staged by Phase 2 in two chunks, the second chunk staging the
    first chunk's items again (so buckets hold duplicates across chunk files)."""
    settings = Settings.embedded(tmp_path)
    day = generate_day(DAY, n, source_root=settings.source_root, seed=5)
    manifest = write_inventory(settings.inventory, DAY, day.refs)
    staging = layout.join(settings.staging, "delta_test")
    plan = phases.write_chunks(manifest, staging, chunk_size=n // 2)
    results = [
        phases.ingest_chunk(c, staging, source_root=settings.source_root, resolution=1)
        for c in plan.chunks
    ]
    for info in storage.list_objects(layout.ndjson_dir(staging), suffix="chunk_000000.ndjson"):
        copy = info.uri.replace("chunk_000000.ndjson", "chunk_000007.ndjson")
        storage.write_bytes(copy, storage.read_bytes(info.uri))  # chunk 0 again, as chunk 7
    buckets = sorted({(cell, year) for r in results for cell, year, _ in r.buckets})
    return settings, staging, buckets


def _files(root: str) -> dict[str, bytes]:
    out = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, root)] = Path(path).read_bytes()
    return out


def _expected_ids(staging: str, cell: str, year: str) -> list[str]:
    """The ids a bucket must hold, from its NDJSON read with ``json``: one per id, in
    warehouse order (platform, datetime, id)."""
    latest: dict[str, dict] = {}
    prefix = layout.join(layout.ndjson_dir(staging), cell, year)
    for info in storage.list_objects(prefix, suffix=".ndjson"):
        for line in storage.read_bytes(info.uri).splitlines():
            item = json.loads(line)
            seen = latest.get(item["id"])
            if seen is None or item["properties"]["updated"] > seen["properties"]["updated"]:
                latest[item["id"]] = item
    order = sorted(
        latest.values(),
        key=lambda i: (i["properties"]["platform"], i["properties"]["datetime"], i["id"]),
    )
    return [i["id"] for i in order]


@pytest.mark.parametrize("small_reads", [False, True], ids=["one-read", "a-read-per-file"])
def test_a_group_writes_exactly_what_one_bucket_per_task_writes(
    tmp_path, monkeypatch, small_reads
) -> None:
    settings, staging, buckets = _staged(tmp_path)
    assert len(buckets) > 10
    alone_root = str(tmp_path / "alone")
    # The per-bucket oracle run reads a copy of the staging prefix (markers are per run).
    for info in storage.list_objects(layout.ndjson_dir(staging)):
        relative = info.uri[len(layout.ndjson_dir(staging)) :]
        storage.write_bytes(
            layout.ndjson_dir(staging + "_alone") + relative, storage.read_bytes(info.uri)
        )
    alone = [
        phases.compact_buckets(staging + "_alone", [bucket], warehouse=alone_root, token="t")[0]
        for bucket in buckets
    ]
    if small_reads:  # every file its own read and parse: batches split inside the group
        monkeypatch.setattr(phases, "READ_BYTES", 1)
        monkeypatch.setattr(phases, "READ_FILES", 1)
    grouped = phases.compact_task(
        buckets,
        staging_dir=staging,
        warehouse=settings.warehouse,
        token="t",
        keep_ids=True,
        writers=2,
    )

    assert [(r.cell, r.year) for r in grouped] == buckets
    assert _files(settings.warehouse) == _files(alone_root)
    for one, many in zip(alone, grouped, strict=True):
        assert (one.rows, one.bytes, one.duplicates_dropped) == (
            many.rows,
            many.bytes,
            many.duplicates_dropped,
        )
        assert [f.replace(alone_root, "") for f in one.files] == [
            f.replace(settings.warehouse, "") for f in many.files
        ]
        ids = [i for part in many.ids or [] for i in part.to_pylist()]
        assert ids == _expected_ids(staging, many.cell, many.year)
        assert many.file_cells == [[many.cell]] * len(many.files)
        assert [w.uri for w in many.written or []] == many.files
    assert sum(r.duplicates_dropped for r in grouped) > 0  # chunk 7 repeated chunk 0

    # Rerun: every bucket is skipped by its marker, nothing is written again.
    before = _files(settings.warehouse)
    again = phases.compact_task(
        buckets, staging_dir=staging, warehouse=settings.warehouse, token="t"
    )
    assert all(r.skipped for r in again)
    assert [r.files for r in again] == [r.files for r in grouped]
    assert _files(settings.warehouse) == before


def _line(item: dict, cell: str) -> bytes:
    item = {**item, "properties": {**item["properties"], "grid_partition": cell}}
    return json.dumps(item).encode()


def test_an_id_in_two_years_of_one_cell_is_kept_in_each(tmp_path) -> None:
    """Deduplication is per bucket: the same id staged under (cell, 2024) and
    (cell, 2025) of one group stays in both; within a bucket the latest ``updated`` wins."""
    rng = np.random.default_rng(1)
    old = make_item(rng, region="alaska_yukon", when=dt.datetime(2024, 6, 1, tzinfo=dt.UTC))
    moved = json.loads(json.dumps(old))
    moved["properties"]["datetime"] = "2025-06-01T00:00:00Z"
    moved["properties"]["updated"] = "2026-01-01T00:00:00Z"
    stale = json.loads(json.dumps(moved))
    stale["properties"]["updated"] = "2025-12-01T00:00:00Z"
    stale["properties"]["percent_valid_pixels"] = 1
    staging, cell = str(tmp_path / "staging"), "81003ffffffffff"
    storage.write_bytes(layout.ndjson_file(staging, cell, "2024", 0), _line(old, cell) + b"\n")
    storage.write_bytes(layout.ndjson_file(staging, cell, "2025", 0), _line(stale, cell) + b"\n")
    storage.write_bytes(layout.ndjson_file(staging, cell, "2025", 1), _line(moved, cell) + b"\n")

    results = phases.compact_task(
        [(cell, "2024"), (cell, "2025")],
        staging_dir=staging,
        warehouse=str(tmp_path / "warehouse"),
        token="t",
    )
    by_year = {r.year: r for r in results}
    assert (by_year["2024"].rows, by_year["2024"].duplicates_dropped) == (1, 0)
    assert (by_year["2025"].rows, by_year["2025"].duplicates_dropped) == (1, 1)
    kept = storage.read_parquet(by_year["2025"].files[0])
    assert kept["id"].to_pylist() == [old["id"]]
    assert kept["updated"][0].as_py().year == 2026  # the latest version, not the stale one
    assert by_year["2024"].file_years == [["2024"]] and by_year["2025"].file_years == [["2025"]]


def test_bucket_groups_bound_buckets_and_rows_and_keep_order() -> None:
    buckets = [(f"c{i:02d}", "2024") for i in range(10)]
    rows = [5, 5, 5, 50, 1, 1, 1, 1, 1, 1]
    groups = phases.bucket_groups(buckets, rows, max_buckets=4, max_rows=12)
    assert [b for g in groups for b in g] == buckets
    assert [len(g) for g in groups] == [2, 1, 1, 4, 2]  # 5+5, 5, the 50 alone, 4 + 2
    assert phases.bucket_groups(buckets, max_buckets=3) == [
        buckets[0:3],
        buckets[3:6],
        buckets[6:9],
        buckets[9:10],
    ]
    assert phases.bucket_groups([], []) == []
