"""``bulk_ingest()`` and ``earthcatalog-dagster run-backfill`` over real files and real Iceberg.

Every test ingests synthetic ITS_LIVE days (good items plus a few bad objects of each
kind) and checks outcomes: the exact (id, grid_partition) pairs of the table, the hash
index against the ids, the warehouse listing against the registered files, the snapshot
count and the summary's reconciliation. The CLI runs as a subprocess, killed with SIGKILL
inside each phase by a small wrapper that replaces one pipeline function with a killer
after a few real calls, then rerun as the operators would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dask
import dask.distributed as distributed
import pyarrow as pa
import pytest

from earthcatalog_dagster import bulk_ingest, ingest, layout
from earthcatalog_dagster.cli import main as cli_main
from earthcatalog_dagster.config import ENV_VARS, Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import load_hash_index
from earthcatalog_dagster.pipeline import phases
from earthcatalog_dagster.pipeline.delta import daily_delta
from earthcatalog_dagster.synthetic import (
    SOURCE_BUCKET,
    GeneratedDay,
    generate_day,
    write_inventory,
)
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2
from earthcatalog_dagster_tests.helpers import (
    assert_pairs_match,
    catalog_holds_exactly,
    index_is_exactly,
    load_table,
    table_pairs,
    warehouse_files,
    write_day,
)

# End to end (whole ingests, Dagster runs, S3 servers): out of the fast lane.
pytestmark = pytest.mark.slow

DAY_3 = DAY_2.replace(day=DAY_2.day + 1)
N_ITEMS = 60
CHUNK_SIZE = 25
RESOLUTION = 1
REPO = Path(__file__).resolve().parents[2]
CLI_TIMEOUT_S = 180
PROFILER = "distributed.worker.profile.enabled"
SYNC = {"scheduler": "synchronous", "chunk_size": CHUNK_SIZE, "progress": False}

# The CLI wrapper: replace ``module.attribute`` with a function that SIGKILLs the process
# once ``real_calls`` real calls have returned, then run the CLI in this process.
KILLER = """\
import importlib, os, signal, sys

module_name, attribute, real_calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
module = importlib.import_module(module_name)
real = getattr(module, attribute)
calls = [0]


def killer(*args, **kwargs):
    if calls[0] >= real_calls:
        os.kill(os.getpid(), signal.SIGKILL)
    result = real(*args, **kwargs)
    calls[0] += 1  # counted once done: writer threads may be inside it together
    return result


setattr(module, attribute, killer)
from earthcatalog_dagster.cli import main

sys.exit(main(sys.argv[4:]))
"""


# --- helpers ------------------------------------------------------------------------------------


def _sorted_rows(settings: Settings) -> pa.Table:
    """The whole table, sorted by (id, grid_partition): row content to compare catalogs."""
    rows = load_table(settings).scan().to_arrow()
    return rows.sort_by([("id", "ascending"), ("grid_partition", "ascending")])


def _converged(settings: Settings, *days: GeneratedDay, snapshots: int | None = None) -> None:
    """The catalog is exactly what one clean run of ``days`` gives."""
    catalog_holds_exactly(settings, *days, resolution=RESOLUTION)
    if snapshots is not None:
        assert len(load_table(settings).snapshots()) == snapshots


def _bad_counts(day: GeneratedDay) -> tuple[int, int]:
    """(rejected, missing) rows of a day's inventory."""
    bad = day.expected
    rejected = sum(len(bad[k]) for k in ("truncated", "error_page", "no_id", "uncoercible"))
    return rejected, len(bad["missing"])


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    return {**env, "EARTHCATALOG_HOME": settings.home}


def _cli(settings: Settings, *args: str, entry: str = "module") -> subprocess.CompletedProcess:
    command = {
        "module": [sys.executable, "-m", "earthcatalog_dagster.cli"],
        "script": [str(Path(sys.executable).with_name("earthcatalog-dagster"))],
    }[entry]
    return subprocess.run(
        [*command, "run-backfill", *args],
        env=_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def _cli_killed(
    settings: Settings, tmp_path: Path, kill: tuple[str, str, int], *args: str
) -> subprocess.CompletedProcess:
    wrapper = tmp_path / "killer.py"
    wrapper.write_text(KILLER)
    module, attribute, real_calls = kill
    return subprocess.run(
        [sys.executable, str(wrapper), module, attribute, str(real_calls), "run-backfill", *args],
        env=_env(settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
    )


def _ok(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[reconciles]" in done.stdout, done.stdout
    return done.stdout


# --- bulk_ingest() --------------------------------------------------------------------------------


def test_full_build_reconciles_and_a_rerun_is_a_no_op(home) -> None:
    day, manifest = write_day(home, DAY_1, N_ITEMS, seed=1)
    summary = bulk_ingest(manifest, mode="full", h3_resolution=RESOLUTION, settings=home, **SYNC)

    rejected, missing = _bad_counts(day)
    assert summary.mode == "full"
    assert summary.reconciles, summary.render()
    assert summary.source_rows == len(day.item_keys)
    assert (summary.items_written, summary.rejected, summary.missing) == (
        len(day.good_ids),
        rejected,
        missing,
    )
    assert summary.pending == summary.already_ingested == 0
    assert summary.chunks == -(-len(day.item_keys) // CHUNK_SIZE) and summary.chunks_skipped == 0
    assert summary.rows_written == len(table_pairs(home))
    assert summary.files_registered == summary.files_written == len(warehouse_files(home))
    assert summary.hashes_after == len(day.good_ids)
    _converged(home, day, snapshots=1)
    assert load_table(home).current_snapshot().snapshot_id == summary.snapshot_id
    # No work file of the run survives but the small descriptors.
    assert not storage.list_objects(layout.ndjson_dir(summary.staging))

    files = {o.uri: o.last_modified for o in storage.list_objects(home.warehouse)}
    again = bulk_ingest(manifest, mode="full", h3_resolution=RESOLUTION, settings=home, **SYNC)
    assert again.snapshot_id == summary.snapshot_id
    assert load_table(home).current_snapshot().snapshot_id == summary.snapshot_id
    assert {o.uri: o.last_modified for o in storage.list_objects(home.warehouse)} == files
    _converged(home, day, snapshots=1)


def test_ingest_and_bulk_ingest_give_the_same_catalog(tmp_path) -> None:
    single, bulk = Settings.embedded(tmp_path / "single"), Settings.embedded(tmp_path / "bulk")
    day, manifest = write_day(single, DAY_1, N_ITEMS, seed=2)
    # The same objects and inventory, elsewhere.
    _, manifest_bulk = write_day(bulk, DAY_1, N_ITEMS, seed=2)

    ingest(manifest, settings=single, h3_resolution=RESOLUTION)
    bulk_ingest(manifest_bulk, mode="full", h3_resolution=RESOLUTION, settings=bulk, **SYNC)

    assert table_pairs(single) == table_pairs(bulk)
    assert_pairs_match(table_pairs(single), day, resolution=RESOLUTION)
    a, b = _sorted_rows(single), _sorted_rows(bulk)
    assert a.schema == b.schema
    assert a.num_rows == b.num_rows == len(table_pairs(single))
    for name in a.column_names:
        assert a[name].equals(b[name]), name
    assert load_hash_index(single.warehouse_hash).hashes.tolist() == (
        load_hash_index(bulk.warehouse_hash).hashes.tolist()
    )


def test_local_cluster_gives_the_same_catalog_as_synchronous(tmp_path, monkeypatch) -> None:
    sync, local = Settings.embedded(tmp_path / "sync"), Settings.embedded(tmp_path / "local")
    day, manifest = write_day(sync, DAY_1, N_ITEMS, seed=3)
    _, manifest_local = write_day(local, DAY_1, N_ITEMS, seed=3)
    started = []

    class CountedCluster(distributed.LocalCluster):
        def __init__(self, *args, **kwargs):
            started.append({**kwargs, "profiler": dask.config.get(PROFILER)})
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(distributed, "LocalCluster", CountedCluster)

    first = bulk_ingest(manifest, mode="full", h3_resolution=RESOLUTION, settings=sync, **SYNC)
    second = bulk_ingest(
        manifest_local,
        mode="full",
        h3_resolution=RESOLUTION,
        settings=local,
        scheduler="local",
        workers=2,
        chunk_size=CHUNK_SIZE,
        progress=False,
    )
    assert second.reconciles, second.render()
    # One cluster of 2 worker processes for Phases 2 and 3 together.
    assert [(k["n_workers"], k["processes"]) for k in started] == [(2, True)]
    # Without the statistical profiler on Python 3.11 (CPython gh-106883 deadlocks).
    assert started[0]["profiler"] is (sys.version_info >= (3, 12))
    for field in ("source_rows", "items_written", "rejected", "missing", "rows_written", "chunks"):
        assert getattr(first, field) == getattr(second, field), field
    assert second.buckets == first.buckets and second.files_written == first.files_written
    _converged(local, day, snapshots=1)
    a, b = _sorted_rows(sync), _sorted_rows(local)
    for name in a.column_names:
        assert a[name].equals(b[name]), name


def test_delta_appends_and_skips_ids_already_in_the_index(home) -> None:
    day1, manifest1 = write_day(home, DAY_1, N_ITEMS, seed=4)
    bulk_ingest(manifest1, mode="full", h3_resolution=RESOLUTION, settings=home, **SYNC)
    day2, manifest2 = write_day(home, DAY_2, N_ITEMS, seed=5)

    delta = bulk_ingest(manifest2, mode="delta", settings=home, **SYNC)
    assert delta.mode == "delta" and delta.reconciles, delta.render()
    assert delta.already_ingested == 0 and delta.items_written == len(day2.good_ids)
    _converged(home, day1, day2, snapshots=2)
    snapshot = load_table(home).current_snapshot().snapshot_id
    files = warehouse_files(home)

    # The first day again, in delta mode (its own staging): every item is skipped at
    # chunking, only the bad objects go through the pipeline, and nothing is written.
    again = bulk_ingest(
        manifest1,
        mode="delta",
        settings=home,
        staging=str(Path(home.staging) / "day1_again"),
        **SYNC,
    )
    rejected, missing = _bad_counts(day1)
    assert again.reconciles, again.render()
    assert again.already_ingested == len(day1.good_ids)
    assert (again.items_written, again.rejected, again.missing) == (0, rejected, missing)
    assert again.files_written == again.files_registered == 0
    assert again.snapshot_id is None
    assert load_table(home).current_snapshot().snapshot_id == snapshot
    assert warehouse_files(home) == files
    _converged(home, day1, day2, snapshots=2)
    # In the chunks themselves: only the keys that are not items of the index.
    chunked = set()
    for chunk in phases.reuse_chunks(again.staging).chunks:
        chunked.update(storage.read_parquet(chunk)["key"].to_pylist())
    assert chunked == set(day1.item_keys) - {
        k for k in day1.item_keys if layout.item_id_from_key(k) in set(day1.good_ids)
    }


def test_full_build_over_an_existing_table_does_not_double_it(home) -> None:
    day1, manifest1 = write_day(home, DAY_1, N_ITEMS, seed=6)
    bulk_ingest(manifest1, mode="full", h3_resolution=RESOLUTION, settings=home, **SYNC)
    day2, manifest2 = write_day(home, DAY_2, N_ITEMS, seed=7)
    bulk_ingest(manifest2, mode="delta", settings=home, **SYNC)
    assert len(load_table(home).snapshots()) == 2

    # A full build of an inventory listing day 1 again beside a new day 3: every item is
    # fetched (full mode skips nothing), and day 1's rows, already in the table, are
    # dropped at commit instead of being registered a second time.
    day3 = generate_day(DAY_3, N_ITEMS, source_root=home.source_root, seed=8)
    both = write_inventory(home.inventory, DAY_3, pa.concat_tables([day1.refs, day3.refs]))
    summary = bulk_ingest(both, mode="full", settings=home, **SYNC)
    assert summary.mode == "full" and summary.reconciles, summary.render()
    assert summary.already_ingested == 0
    assert summary.items_written == len(day1.good_ids) + len(day3.good_ids)
    assert summary.rows_already_registered > 0
    _converged(home, day1, day2, day3, snapshots=3)
    table_ids = load_table(home).scan(selected_fields=("id",)).to_arrow()["id"].to_pylist()
    index_is_exactly(home, table_ids)
    assert iceberg.table_resolution(load_table(home)) == RESOLUTION


@pytest.mark.parametrize("killed", [False, True], ids=["retry", "retry-killed-in-phase-3"])
def test_retry_pending_lands_the_failed_objects(home, tmp_path, monkeypatch, killed) -> None:
    day, manifest = write_day(home, DAY_1, N_ITEMS, seed=9)
    # A directory in place of an object: the read fails with a non-404 error (recorded
    # as pending, not as missing); the object is restored afterwards.
    broken = [k for k in day.item_keys if layout.item_id_from_key(k) in set(day.good_ids)][:3]
    aside = tmp_path / "aside"
    aside.mkdir()
    for n, key in enumerate(broken):
        path = Path(layout.source_object(SOURCE_BUCKET, key, home.source_root))
        shutil.move(path, aside / str(n))
        path.mkdir()

    first = bulk_ingest(manifest, mode="full", h3_resolution=RESOLUTION, settings=home, **SYNC)
    assert first.reconciles, first.render()
    assert first.pending == len(broken)
    assert first.items_written == len(day.good_ids) - len(broken)
    pending = storage.list_objects(layout.join(first.staging, "pending_chunks"))
    failed = pa.concat_tables(storage.read_parquet(o.uri) for o in pending)
    assert sorted(failed["key"].to_pylist()) == sorted(broken)
    assert all(failed["error"].to_pylist())
    landed = [d for d in day.items if d["id"] not in {layout.item_id_from_key(k) for k in broken}]
    assert_pairs_match(
        table_pairs(home),
        GeneratedDay(day.date, landed, day.refs, day.expected, [i["id"] for i in landed]),
        resolution=RESOLUTION,
    )

    for n, key in enumerate(broken):
        path = Path(layout.source_object(SOURCE_BUCKET, key, home.source_root))
        path.rmdir()
        shutil.move(aside / str(n), path)
    retry = [
        "run-backfill",
        "--inventory",
        manifest,
        "--scheduler",
        "synchronous",
        "--chunk-size",
        str(CHUNK_SIZE),
        "--update-hash-index",
        "--retry-pending",
    ]
    if killed:  # the retry itself dies right after compacting its first non-empty bucket
        real = phases.write_bucket

        def dies(*args, **kwargs):
            result = real(*args, **kwargs)
            if result.files:
                raise SystemExit("killed")
            return result

        monkeypatch.setattr(phases, "write_bucket", dies)
        with pytest.raises(SystemExit):
            cli_main(retry)
        monkeypatch.setattr(phases, "write_bucket", real)
        assert not storage.list_objects(layout.join(first.staging, "pending_chunks"))
    assert cli_main(retry) == 0
    _converged(home, day, snapshots=2)  # the first run's, and the retried objects'

    record = storage.read_bytes(layout.run_complete(first.staging))
    assert b'"pending": 0' in record
    again = bulk_ingest(manifest, mode="full", settings=home, **SYNC)
    assert again.reconciles and again.pending == 0
    assert again.items_written == len(day.good_ids)


# --- the CLI --------------------------------------------------------------------------------------

FULL_BUILD = (
    "--scheduler",
    "synchronous",
    "--chunk-size",
    str(CHUNK_SIZE),
    "--h3-resolution",
    str(RESOLUTION),
    "--update-hash-index",
    "--skip-upload",
)

# (what is killed, after how many real calls): inside each phase of a full build.
KILL_POINTS = {
    "phase 2, after 2 chunks": ("earthcatalog_dagster.pipeline.phases", "ingest_chunk", 2),
    "phase 3, after 5 buckets": ("earthcatalog_dagster.pipeline.phases", "write_bucket", 5),
    # The table is created at the first commit, then killed before its files.
    "phase 4, before registering": ("earthcatalog_dagster.core.catalog", "register_files", 0),
    "phase 4, before the hash sync": ("earthcatalog_dagster.pipeline.commit", "sync_hash_index", 0),
}


@pytest.mark.parametrize("skip_inventory", [False, True], ids=["same-command", "skip-inventory"])
@pytest.mark.parametrize("kill", list(KILL_POINTS))
def test_cli_killed_inside_a_phase_converges_on_rerun(home, tmp_path, kill, skip_inventory) -> None:
    day, manifest = write_day(home, DAY_1, N_ITEMS, seed=10)
    command = ("--inventory", manifest, *FULL_BUILD)

    killed = _cli_killed(home, tmp_path, KILL_POINTS[kill], *command)
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr[-3000:]
    if kill.startswith("phase 2"):
        assert load_table(home) is None
    elif kill.startswith("phase 3"):
        assert load_table(home) is None
        assert len(warehouse_files(home)) >= 5
    elif kill == "phase 4, before registering":
        assert table_pairs(home) == []  # a fresh empty table
    else:
        assert_pairs_match(table_pairs(home), day, resolution=RESOLUTION)
        assert len(load_hash_index(home.warehouse_hash)) == 0

    rerun = _cli(home, *command, *(["--skip-inventory"] if skip_inventory else []))
    out = _ok(rerun)
    _converged(home, day, snapshots=1)
    chunks = -(-len(day.item_keys) // CHUNK_SIZE)
    done = 2 if kill.startswith("phase 2") else chunks
    assert f"Chunks : {chunks} ({done} already done)" in out
    # And once more: a no-op.
    snapshot = load_table(home).current_snapshot().snapshot_id
    again = bulk_ingest(manifest, mode="full", settings=home, **SYNC)
    assert again.reconciles
    assert load_table(home).current_snapshot().snapshot_id == snapshot
    _converged(home, day, snapshots=1)


def test_operators_smoke_test_and_rerun_after_crash(home, tmp_path) -> None:
    day1, manifest1 = write_day(home, DAY_1, N_ITEMS, seed=11)
    _ok(_cli(home, "--inventory", manifest1, *FULL_BUILD, entry="script"))
    _converged(home, day1, snapshots=1)

    # The daily delta of the next day, as daily_delta produces it.
    day2, manifest2 = write_day(home, DAY_2, N_ITEMS, seed=12)
    pending2 = layout.delta_pending(home.delta_prefix, DAY_2)
    made = daily_delta(
        manifest2, delta_prefix=home.delta_prefix, date=DAY_2, hash_index_uri=home.warehouse_hash
    )
    assert made.uri == pending2
    assert storage.read_parquet(pending2).num_rows == len(day2.item_keys)
    smoke = _cli(
        home,
        "--inventory",
        pending2,
        "--limit",
        "1000",
        "--scheduler",
        "synchronous",
        "--delta",
        "--update-hash-index",
        "--skip-upload",
        entry="script",
    )
    assert "Mode : delta" in _ok(smoke)
    _converged(home, day1, day2, snapshots=2)

    # A third day: the same smoke test killed in Phase 3, then the operators' re-run
    # after a crash (existing chunks, no lock, a local Dask cluster).
    day3, manifest3 = write_day(home, DAY_3, N_ITEMS, seed=13)
    pending3 = layout.delta_pending(home.delta_prefix, DAY_3)
    daily_delta(
        manifest3, delta_prefix=home.delta_prefix, date=DAY_3, hash_index_uri=home.warehouse_hash
    )
    rest = ("--limit", "1000", "--delta", "--update-hash-index", "--skip-upload")
    kill = ("earthcatalog_dagster.pipeline.phases", "write_bucket", 3)
    killed = _cli_killed(
        home, tmp_path, kill, "--inventory", pending3, "--scheduler", "synchronous", *rest
    )
    assert killed.returncode == -signal.SIGKILL
    rerun = _cli(
        home,
        "--inventory",
        pending3,
        "--skip-inventory",
        "--no-lock",
        "--scheduler",
        "local",
        "--workers",
        "1",
        *rest,
        entry="script",
    )
    assert "Mode : delta" in _ok(rerun)
    _converged(home, day1, day2, day3, snapshots=3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--scheduler", "kubernetes"), "unknown scheduler 'kubernetes'"),
        (("--skip-inventory",), "--skip-inventory: no chunks to reuse"),
        (("--inventory-missing",), "inventory not found"),
    ],
    ids=["unknown-scheduler", "skip-inventory-without-chunks", "missing-inventory"],
)
def test_bad_arguments_fail_at_once(home, capsys, args, message) -> None:
    _, manifest = write_day(home, DAY_1, 10, seed=14)
    if args == ("--inventory-missing",):
        manifest, args = str(Path(home.inventory) / "nope" / "manifest.json"), ()
    before = {str(p) for p in Path(home.home).rglob("*")}
    started = time.perf_counter()
    code = cli_main(["run-backfill", "--inventory", manifest, *FULL_BUILD, *args])
    assert code == 2
    assert time.perf_counter() - started < 5
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert {str(p) for p in Path(home.home).rglob("*")} == before  # nothing was touched


def test_bad_arguments_exit_code_of_the_command(home) -> None:
    done = _cli(home, "--inventory", "/nonexistent/manifest.json", "--scheduler", "nope")
    assert done.returncode == 2
    assert "error: unknown scheduler 'nope'" in done.stderr


def test_process_pool_gives_the_same_catalog_as_synchronous(tmp_path, monkeypatch) -> None:
    """``processes`` (the pool ``auto`` picks on a multi-core machine) is the loop's work
    on every core: the same summary and rows, one pool for Phases 2 and 3, no cluster."""
    from earthcatalog_dagster.pipeline import compute

    sync, pooled = Settings.embedded(tmp_path / "sync"), Settings.embedded(tmp_path / "pool")
    day, manifest = write_day(sync, DAY_1, N_ITEMS, seed=3)
    _, manifest_pooled = write_day(pooled, DAY_1, N_ITEMS, seed=3)
    pools = []
    real_pool = compute.process_pool
    monkeypatch.setattr(compute, "process_pool", lambda n: pools.append(n) or real_pool(n))
    monkeypatch.setattr(distributed, "LocalCluster", None)  # never started

    first = bulk_ingest(manifest, mode="full", h3_resolution=RESOLUTION, settings=sync, **SYNC)
    second = bulk_ingest(
        manifest_pooled,
        mode="full",
        h3_resolution=RESOLUTION,
        settings=pooled,
        scheduler="processes",
        workers=2,
        chunk_size=CHUNK_SIZE,
        progress=False,
    )
    assert second.reconciles, second.render()
    assert len(pools) == 2 and compute._pool is None  # Phases 2 and 3; stopped before 4
    for field in ("source_rows", "items_written", "rejected", "missing", "rows_written", "chunks"):
        assert getattr(first, field) == getattr(second, field), field
    assert second.buckets == first.buckets and second.files_written == first.files_written
    _converged(pooled, day, snapshots=1)
    a, b = _sorted_rows(sync), _sorted_rows(pooled)
    for name in a.column_names:
        assert a[name].equals(b[name]), name
