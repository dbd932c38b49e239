"""Kills, concurrency and the CLI: real Dagster runs over real files converge to one catalog.

A run is killed (SIGKILL, no cleanup) inside a phase in a spawned process; the test process
then re-materializes the partition and checks the catalog is exactly what one clean run
gives. Two partitions also run side by side in two processes against one embedded home,
and ``dagster asset materialize`` runs as operators' CI runners call it.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, materialize

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import load_hash_index
from earthcatalog_dagster.definitions import build_definitions
from earthcatalog_dagster.orchestration.assets import ingest_assets
from earthcatalog_dagster.orchestration.resources import DaskCompute, StorageRoots
from earthcatalog_dagster.synthetic import GeneratedDay
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2
from earthcatalog_dagster_tests.helpers import (
    assert_pairs_match,
    catalog_holds_exactly,
    checks_pass,
    index_holds,
    load_table,
    metadata,
    table_pairs,
    warehouse_files,
    write_day,
)

pytestmark = pytest.mark.slow

N_ITEMS = 80
CHUNK_SIZE = 20
RUN_CONFIG = {"ops": {"staged_chunks": {"config": {"chunk_size": CHUNK_SIZE}}}}
REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 120

# What the child replaces with a killer, and after how many real calls it kills.
KILL_POINTS = {
    "ingest_chunk": ("earthcatalog_dagster.pipeline.phases", "ingest_chunk", 1),
    "write_bucket": ("earthcatalog_dagster.pipeline.phases", "write_bucket", 3),
    # The hash-index sync of the one commit path (pipeline/commit.py's sync_index).
    "sync_hash_index": ("earthcatalog_dagster.pipeline.commit", "sync_hash_index", 0),
}


# --- helpers ----------------------------------------------------------------------------------


def _resources(home_dir: str) -> dict[str, Any]:
    roots = StorageRoots(home=home_dir)
    defs = build_definitions(roots=roots, compute=DaskCompute(scheduler="synchronous"))
    return dict(defs.resources)


def _run(home_dir: str, date: str, **kwargs: Any):
    return materialize(
        ingest_assets,
        partition_key=date,
        resources=_resources(home_dir),
        instance=DagsterInstance.ephemeral(),
        run_config=RUN_CONFIG,
        **kwargs,
    )


def _child(
    home_dir: str, date: str, kill: str | None, barrier: Any = None, spans: str | None = None
) -> None:
    """Materialize one partition; with ``kill``, SIGKILL ourselves inside that function.

    ``spans``: a file to which the run's start and end times are appended.
    """
    if kill is not None:
        module_name, attribute, real_calls = KILL_POINTS[kill]
        module = sys.modules[module_name]
        real = getattr(module, attribute)
        calls = {"n": 0}

        def killer(*args: Any, **kwargs: Any) -> Any:
            if calls["n"] >= real_calls:
                os.kill(os.getpid(), signal.SIGKILL)
            result = real(*args, **kwargs)
            calls["n"] += 1  # counted once done: writer threads may be inside it together
            return result

        setattr(module, attribute, killer)
    if barrier is not None:
        barrier.wait(timeout=CHILD_TIMEOUT_S)
    start = time.time()
    result = _run(home_dir, date, raise_on_error=False)
    if spans is not None:
        with open(spans, "a") as out:
            out.write(f"{start} {time.time()}\n")
    sys.exit(0 if result.success else 3)


def _spawn(home: Settings, date, kill: str | None = None, barrier: Any = None, spans=None):
    ctx = multiprocessing.get_context("spawn")
    process = ctx.Process(
        target=_child, args=(home.home, date.isoformat(), kill, barrier, spans and str(spans))
    )
    process.start()
    return process


def _finish(process) -> int:
    process.join(CHILD_TIMEOUT_S)
    if process.is_alive():
        process.kill()
        process.join()
        pytest.fail("child run did not finish in time")
    return process.exitcode


def _delta_ingested(home: Settings, date) -> bool:
    return storage.exists(layout.delta_ingested(home.delta_prefix, date)) and not storage.exists(
        layout.delta_pending(home.delta_prefix, date)
    )


def _converged(home: Settings, result, *days: GeneratedDay) -> None:
    """The rerun succeeded and the catalog is exactly one clean run's."""
    assert result.success
    checks_pass(result)
    catalog_holds_exactly(home, *days)
    for day in days:
        assert _delta_ingested(home, day.date)


# --- killed mid-run -----------------------------------------------------------------------------


def test_killed_inside_ndjson_items_resumes_from_markers(home) -> None:
    day = write_day(home, DAY_1, N_ITEMS, seed=1)[0]
    staging = layout.staging_for(home.staging, DAY_1)

    assert _finish(_spawn(home, DAY_1, kill="ingest_chunk")) == -signal.SIGKILL
    assert storage.exists(layout.chunk_marker(staging, 0))
    assert not storage.exists(layout.chunk_marker(staging, 1))
    assert table_pairs(home) == []

    result = _run(home.home, DAY_1.isoformat())
    _converged(home, result, day)
    chunks = metadata(result, "staged_chunks")
    assert chunks["chunks"] >= 3
    assert chunks["reused from an earlier attempt"] is True
    ndjson = metadata(result, "ndjson_items")
    assert ndjson["chunks skipped (already done)"] >= 1
    assert ndjson["items staged"] == len(day.good_ids)


def test_killed_inside_warehouse_parquets_leaves_no_orphans(home) -> None:
    day = write_day(home, DAY_1, N_ITEMS, seed=2)[0]
    staging = layout.staging_for(home.staging, DAY_1)

    assert _finish(_spawn(home, DAY_1, kill="write_bucket")) == -signal.SIGKILL
    left = warehouse_files(home)
    assert len(left) >= 3, "the killed run should have written a few warehouse files"
    table = load_table(home)
    assert table is None or not iceberg.registered_files(table)
    done = storage.list_objects(layout.join(staging, "compacted"))
    assert len(done) >= 3  # a second writer thread may have finished one more bucket

    result = _run(home.home, DAY_1.isoformat())
    _converged(home, result, day)
    # The files of the killed run are the ones registered now, not copies beside them.
    assert left <= warehouse_files(home)
    warehouse = metadata(result, "warehouse_parquets")
    assert warehouse["buckets skipped (already done)"] == len(done)
    assert len(load_table(home).snapshots()) == 1


def test_killed_between_iceberg_table_and_hash_index_heals(home) -> None:
    day = write_day(home, DAY_1, N_ITEMS, seed=3)[0]

    assert _finish(_spawn(home, DAY_1, kill="sync_hash_index")) == -signal.SIGKILL
    # Registered, but neither indexed nor marked ingested.
    assert_pairs_match(table_pairs(home), day)
    assert len(load_hash_index(home.warehouse_hash)) == 0
    assert storage.exists(layout.delta_pending(home.delta_prefix, DAY_1))
    # Killed while holding the catalog lock: the rerun must not wait out its 6 h TTL.
    assert storage.exists(layout.catalog_lock(home.catalog))
    files = warehouse_files(home)

    result = _run(home.home, DAY_1.isoformat())
    _converged(home, result, day)
    assert warehouse_files(home) == files
    assert len(load_table(home).snapshots()) == 1
    registered = metadata(result, "iceberg_table")
    assert registered["files registered"] == 0
    assert registered["files already registered"] == len(files)
    hashes = metadata(result, "hash_index")
    assert hashes["hashes added"] == len(set(day.good_ids))
    assert not storage.exists(layout.catalog_lock(home.catalog))


# --- two partitions at once ----------------------------------------------------------------------


def _keys_under(prefix: str) -> set[str]:
    keys: set[str] = set()
    for obj in storage.list_objects(prefix, suffix=".parquet"):
        table = storage.read_parquet(obj.uri)
        if "key" in table.column_names:
            keys.update(table["key"].to_pylist())
    return keys


def test_two_partitions_in_two_processes_at_once(home, tmp_path) -> None:
    days = [write_day(home, DAY_1, N_ITEMS, seed=4)[0], write_day(home, DAY_2, N_ITEMS, seed=5)[0]]
    barrier = multiprocessing.get_context("spawn").Barrier(2)
    spans = tmp_path / "spans.txt"
    processes = [_spawn(home, day.date, barrier=barrier, spans=spans) for day in days]
    assert [_finish(p) for p in processes] == [0, 0]
    (_, end_a), (start_b, _) = sorted(
        tuple(map(float, line.split())) for line in spans.read_text().splitlines()
    )
    assert start_b < end_a, "the two runs did not overlap"

    for day, other in (days, days[::-1]):
        staging = layout.staging_for(home.staging, day.date)
        for asset in ingest_assets:
            descriptor = layout.asset_descriptor(staging, asset.key.path[-1])
            assert storage.exists(descriptor), descriptor
        delta = json.loads(storage.read_bytes(layout.asset_descriptor(staging, "delta_inventory")))
        assert delta["delta"] == layout.delta_pending(home.delta_prefix, day.date)
        keys = _keys_under(staging)
        assert keys, f"no chunks under {staging}"
        assert set(day.item_keys) <= keys  # every key of the day's own inventory is staged
        # A delta carries the rows of older deltas still pending (issue 6), never newer ones.
        if other.date > day.date:
            assert keys <= set(day.item_keys)
        else:
            assert keys <= set(day.item_keys) | set(other.item_keys)
        assert not any(other.date.isoformat() in o.uri for o in storage.list_objects(staging))

    assert_pairs_match(table_pairs(home), *days)
    index_holds(home, *days)
    table = load_table(home)
    assert len(table.snapshots()) == 2
    assert warehouse_files(home) == iceberg.registered_files(table)
    assert not storage.exists(layout.catalog_lock(home.catalog))
    for day in days:
        assert _delta_ingested(home, day.date)


# --- the CLI ------------------------------------------------------------------------------------


def test_dagster_cli_materializes_a_partition(home, tmp_path) -> None:
    day = write_day(home, DAY_1, N_ITEMS, seed=6)[0]
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("")
    env = {
        **os.environ,
        "EARTHCATALOG_HOME": home.home,
        "EARTHCATALOG_SCHEDULER": "synchronous",
        "DAGSTER_HOME": str(dagster_home),
    }

    def dagster(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dagster", *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
        )

    validate = dagster("definitions", "validate", "-m", "earthcatalog_dagster.definitions")
    assert validate.returncode == 0, validate.stdout + validate.stderr

    run = dagster(
        "asset",
        "materialize",
        "-m",
        "earthcatalog_dagster.definitions",
        "--select",
        "group:ingest",
        "--partition",
        DAY_1.isoformat(),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert_pairs_match(table_pairs(home), day)
    index_holds(home, day)
    assert _delta_ingested(home, DAY_1)
