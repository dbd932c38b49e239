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
from earthcatalog_dagster.core.hash_index import hash_ids, load_hash_index
from earthcatalog_dagster.core.partitioning import cells_for_geometry
from earthcatalog_dagster.definitions import build_definitions
from earthcatalog_dagster.orchestration.assets import ingest_assets
from earthcatalog_dagster.orchestration.resources import DaskCompute, StorageRoots
from earthcatalog_dagster.synthetic import GeneratedDay, generate_day, write_inventory
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2

pytestmark = pytest.mark.slow

N_ITEMS = 80
CHUNK_SIZE = 20
RUN_CONFIG = {"ops": {"staged_chunks": {"config": {"chunk_size": CHUNK_SIZE}}}}
REPO = Path(__file__).resolve().parents[2]
CHILD_TIMEOUT_S = 120

# What the child replaces with a killer, and after how many real calls it kills.
KILL_POINTS = {
    "ingest_chunk": ("earthcatalog_dagster.pipeline.phases", "ingest_chunk", 1),
    "compact_bucket": ("earthcatalog_dagster.pipeline.phases", "compact_bucket", 3),
    "sync_hash_index": ("earthcatalog_dagster.orchestration.assets", "sync_hash_index", 0),
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
            calls["n"] += 1
            return real(*args, **kwargs)

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


def _day(home: Settings, date, seed: int) -> GeneratedDay:
    day = generate_day(date, N_ITEMS, source_root=home.source_root, seed=seed)
    write_inventory(home.inventory, date, day.refs)
    return day


def _expected_pairs(*days: GeneratedDay) -> list[tuple[str, str]]:
    return sorted(
        (i["id"], c)
        for day in days
        for i in day.items
        for c in cells_for_geometry(i["geometry"], 1)
    )


def _table(home: Settings):
    return iceberg.load_table(iceberg.open_catalog(home.catalog, home.warehouse))


def _table_pairs(home: Settings) -> list[tuple[str, str]]:
    table = _table(home)
    if table is None or table.current_snapshot() is None:
        return []
    rows = table.scan(selected_fields=("id", "grid_partition")).to_arrow()
    return sorted(zip(rows["id"].to_pylist(), rows["grid_partition"].to_pylist(), strict=True))


def _warehouse_files(home: Settings) -> set[str]:
    return {o.uri for o in storage.list_objects(home.warehouse, suffix=".parquet")}


def _index_holds(home: Settings, *days: GeneratedDay) -> None:
    ids = sorted({i for day in days for i in day.good_ids})
    index = load_hash_index(home.warehouse_hash)
    assert len(index) == len(ids)
    assert bool(index.contains(hash_ids(ids)).all())


def _delta_ingested(home: Settings, date) -> bool:
    return storage.exists(layout.delta_ingested(home.delta_prefix, date)) and not storage.exists(
        layout.delta_pending(home.delta_prefix, date)
    )


def _checks_pass(result) -> None:
    failed = [
        (c.check_name, c.metadata) for c in result.get_asset_check_evaluations() if not c.passed
    ]
    assert not failed, failed


def _converged(home: Settings, result, *days: GeneratedDay) -> None:
    """The rerun succeeded and the catalog is exactly one clean run's."""
    assert result.success
    _checks_pass(result)
    pairs = _table_pairs(home)
    assert len(pairs) == len(set(pairs)), "duplicate (id, grid_partition) pairs"
    assert pairs == _expected_pairs(*days)
    _index_holds(home, *days)
    assert _warehouse_files(home) == iceberg.registered_files(_table(home))
    for day in days:
        assert _delta_ingested(home, day.date)


def _metadata(result, asset: str) -> dict[str, Any]:
    return {
        k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()
    }


# --- killed mid-run -----------------------------------------------------------------------------


def test_killed_inside_ndjson_items_resumes_from_markers(home) -> None:
    day = _day(home, DAY_1, seed=1)
    staging = layout.staging_for(home.staging, DAY_1)

    assert _finish(_spawn(home, DAY_1, kill="ingest_chunk")) == -signal.SIGKILL
    assert storage.exists(layout.chunk_marker(staging, 0))
    assert not storage.exists(layout.chunk_marker(staging, 1))
    assert _table_pairs(home) == []

    result = _run(home.home, DAY_1.isoformat())
    _converged(home, result, day)
    chunks = _metadata(result, "staged_chunks")
    assert chunks["chunks"] >= 3
    assert chunks["reused from an earlier attempt"] is True
    ndjson = _metadata(result, "ndjson_items")
    assert ndjson["chunks skipped (already done)"] >= 1
    assert ndjson["items staged"] == len(day.good_ids)


def test_killed_inside_warehouse_parquets_leaves_no_orphans(home) -> None:
    day = _day(home, DAY_1, seed=2)
    staging = layout.staging_for(home.staging, DAY_1)

    assert _finish(_spawn(home, DAY_1, kill="compact_bucket")) == -signal.SIGKILL
    left = _warehouse_files(home)
    assert len(left) >= 3, "the killed run should have written a few warehouse files"
    table = _table(home)
    assert table is None or not iceberg.registered_files(table)
    done = storage.list_objects(layout.join(staging, "compacted"))
    assert len(done) == 3

    result = _run(home.home, DAY_1.isoformat())
    _converged(home, result, day)
    # The files of the killed run are the ones registered now, not copies beside them.
    assert left <= _warehouse_files(home)
    warehouse = _metadata(result, "warehouse_parquets")
    assert warehouse["buckets skipped (already done)"] == 3
    assert len(_table(home).snapshots()) == 1


def test_killed_between_iceberg_table_and_hash_index_heals(home) -> None:
    day = _day(home, DAY_1, seed=3)

    assert _finish(_spawn(home, DAY_1, kill="sync_hash_index")) == -signal.SIGKILL
    # Registered, but neither indexed nor marked ingested.
    assert _table_pairs(home) == _expected_pairs(day)
    assert len(load_hash_index(home.warehouse_hash)) == 0
    assert storage.exists(layout.delta_pending(home.delta_prefix, DAY_1))
    # Killed while holding the catalog lock: the rerun must not wait out its 6 h TTL.
    assert storage.exists(layout.catalog_lock(home.catalog))
    files = _warehouse_files(home)

    result = _run(home.home, DAY_1.isoformat())
    _converged(home, result, day)
    assert _warehouse_files(home) == files
    assert len(_table(home).snapshots()) == 1
    registered = _metadata(result, "iceberg_table")
    assert registered["files registered"] == 0
    assert registered["files already registered"] == len(files)
    hashes = _metadata(result, "hash_index")
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
    days = [_day(home, DAY_1, seed=4), _day(home, DAY_2, seed=5)]
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

    pairs = _table_pairs(home)
    assert len(pairs) == len(set(pairs))
    assert pairs == _expected_pairs(*days)
    _index_holds(home, *days)
    table = _table(home)
    assert len(table.snapshots()) == 2
    assert _warehouse_files(home) == iceberg.registered_files(table)
    assert not storage.exists(layout.catalog_lock(home.catalog))
    for day in days:
        assert _delta_ingested(home, day.date)


# --- the CLI ------------------------------------------------------------------------------------


def test_dagster_cli_materializes_a_partition(home, tmp_path) -> None:
    day = _day(home, DAY_1, seed=6)
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
    pairs = _table_pairs(home)
    assert len(pairs) == len(set(pairs))
    assert pairs == _expected_pairs(day)
    _index_holds(home, day)
    assert _delta_ingested(home, DAY_1)
