"""The ``earthcatalog-dagster`` command line: flags, defaults, and errors without tracebacks.

Commands run in-process through :func:`earthcatalog_dagster.cli.main` (the console-script
contract: it returns the exit code), or as ``python -m earthcatalog_dagster.cli`` where the
process itself matters (a closed pipe).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from earthcatalog_dagster import cli, layout
from earthcatalog_dagster.config import ENV_VARS
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import lock, storage
from earthcatalog_dagster.options import DEFAULTS, NAMES, IngestOptions
from earthcatalog_dagster.pipeline import bulk as bulk_module
from earthcatalog_dagster.pipeline import ingest as ingest_module
from earthcatalog_dagster.synthetic import generate_day, write_inventory
from earthcatalog_dagster_tests.conftest import DAY_1

REPO = Path(__file__).resolve().parents[1]
OPERATORS = "s3://its-live-data/test-space/stac/catalog"


def _files(root: Path) -> set[str]:
    return {str(p) for p in root.rglob("*")} if root.exists() else set()


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


class _Calls:
    """Stands in for ``bulk_ingest``/``ingest`` and records how the CLI called it: the
    settings it ran with (options and keywords alike) and the other keywords."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __call__(
        self, inventory: str, options: IngestOptions | None = None, **kwargs: Any
    ) -> SimpleNamespace:
        settings = (options or DEFAULTS).with_values(
            **{k: v for k, v in kwargs.items() if k in NAMES}
        )
        self.calls.append((inventory, {**settings.as_dict(), **kwargs}))
        return SimpleNamespace(reconciles=True, render=lambda: "ok", as_dict=lambda: {})


@pytest.fixture
def calls(monkeypatch) -> _Calls:
    fake = _Calls()
    monkeypatch.setattr(bulk_module, "bulk_ingest", fake)
    monkeypatch.setattr(ingest_module, "ingest", fake)
    return fake


# --- flags and defaults ---------------------------------------------------------------------


def test_every_flag_of_the_operators_command_is_accepted(home, calls, tmp_path) -> None:
    """The operators' "full command with all parameters", plus every other flag."""
    argv = [
        "run-backfill",
        "--inventory",
        f"{OPERATORS}/delta/pending/delta_2026-04-28.parquet",
        "--catalog",
        str(tmp_path / "earthcatalog.db"),
        "--catalog-remote",
        f"{OPERATORS}/earthcatalog.db",
        "--warehouse",
        f"{OPERATORS}/warehouse",
        "--staging",
        f"{OPERATORS}/ingest/delta_2026-04-28",
        "--delta",
        "--update-hash-index",
        "--hash-index",
        f"{OPERATORS}/warehouse_id_hashes.parquet",
        "--skip-upload",
        "--skip-inventory",
        "--no-lock",
        "--limit",
        "1000",
        "--scheduler",
        "local",
        "--workers",
        "3",
        "--chunk-size",
        "500",
        "--since",
        "2026-04-27",
        "--h3-resolution",
        "2",
        "--compact-rows",
        "1000",
        "--fetch-concurrency",
        "16",
        "--retry-pending",
        "--skip-ingest",
        "--threads-per-worker",
        "2",
        "--coiled-n-workers",
        "10",
        "--coiled-vm-type",
        "m6i.large",
        "--source-root",
        str(tmp_path / "mirror"),
    ]
    assert cli.main(argv) == 0
    ((inventory, kwargs),) = calls.calls
    assert inventory.endswith("delta_2026-04-28.parquet")
    cfg = kwargs["settings"]
    assert cfg.warehouse == f"{OPERATORS}/warehouse"
    assert cfg.warehouse_hash == f"{OPERATORS}/warehouse_id_hashes.parquet"
    assert cfg.catalog == str(tmp_path / "earthcatalog.db")
    assert cfg.catalog_remote == f"{OPERATORS}/earthcatalog.db"
    assert cfg.source_root == str(tmp_path / "mirror")
    assert kwargs["staging"] == f"{OPERATORS}/ingest/delta_2026-04-28"
    expected = {
        "mode": "delta",
        "update_hash_index": True,
        "skip_upload": True,
        "skip_inventory": True,
        "use_lock": False,
        "limit": 1000,
        "scheduler": "local",
        "workers": 3,
        "chunk_size": 500,
        "since": "2026-04-27",
        "h3_resolution": 2,
        "compact_rows": 1000,
        "fetch_concurrency": 16,
        "retry_pending": True,
        "skip_ingest": True,
        "threads_per_worker": 2,
    }
    assert {k: kwargs[k] for k in expected} == expected


def test_setting_flags_default_to_the_options_defaults(home, calls) -> None:
    assert cli.main(["run-backfill", "--inventory", "inv.parquet"]) == 0
    assert cli.main(["ingest", "inv.parquet"]) == 0
    (_, bulk), (_, single) = calls.calls
    for name in ("scheduler", "workers", "chunk_size", "compact_rows", "fetch_concurrency"):
        assert bulk[name] == getattr(DEFAULTS, name), name
    assert bulk["threads_per_worker"] == DEFAULTS.threads_per_worker
    assert bulk["mode"] == "full" and bulk["use_lock"] and not bulk["skip_upload"]
    for name in ("mode", "batch_rows", "compact_rows", "fetch_concurrency", "lock_timeout"):
        assert single[name] == getattr(DEFAULTS, name), name
    assert single["update_hash_index"] is DEFAULTS.update_hash_index


@pytest.mark.parametrize(
    "argv",
    [
        ["run-backfill", "--inventory", "inv.parquet", "--compact-rows", "0"],
        ["run-backfill", "--inventory", "inv.parquet", "--chunk-size", "-1"],
        ["run-backfill", "--inventory", "inv.parquet", "--h3-resolution", "99"],
        ["run-backfill", "--inventory", "inv.parquet", "--workers", "0"],
        ["run-backfill", "--inventory", "inv.parquet", "--fetch-concurrency", "0"],
        ["run-backfill", "--inventory", "inv.parquet", "--limit", "-5"],
        ["run-backfill", "--inventory", "inv.parquet", "--since", "yesterday"],
        ["ingest", "inv.parquet", "--compact-rows", "0"],
        ["ingest", "inv.parquet", "--h3-resolution", "16"],
        ["ingest", "inv.parquet", "--mode", "sideways"],
        ["ingest", "inv.parquet", "--workers", "many"],
    ],
    ids=lambda argv: " ".join(argv[2:]) if argv[0] == "ingest" else " ".join(argv[3:]),
)
def test_bad_numbers_fail_before_any_work(home, calls, capsys, argv) -> None:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2
    flag = next(a for a in argv if a.startswith("--") and a != "--inventory")
    line = _one_line_error(err)
    assert flag in line, line
    assert calls.calls == []  # no run started
    assert not os.path.exists(home.home)  # nothing created


def test_root_flags_count_as_configured(home, calls, tmp_path) -> None:
    """``--warehouse`` elsewhere: items come from their bucket, as with ``WAREHOUSE=``."""
    other = str(tmp_path / "some" / "warehouse")
    assert cli.main(["run-backfill", "--inventory", "inv.parquet", "--warehouse", other]) == 0
    assert cli.main(["ingest", "inv.parquet", "--warehouse", other]) == 0
    assert cli.main(["ingest", "inv.parquet", "--warehouse", f"{OPERATORS}/warehouse"]) == 0
    mirror = str(tmp_path / "mirror")
    assert cli.main(["ingest", "inv.parquet", "--warehouse", other, "--source-root", mirror]) == 0
    bulk, single, remote, mirrored = (kwargs["settings"] for _, kwargs in calls.calls)
    assert bulk.source_root is None and bulk.warehouse == other
    assert single.source_root is None
    assert bulk.catalog_remote is None  # a local warehouse: the catalog stays local
    assert remote.catalog_remote == f"{OPERATORS}/earthcatalog.db"  # beside the warehouse
    assert mirrored.source_root == mirror
    assert not os.path.exists(other)


# --- unwritable roots -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "root"),
    [("--warehouse", "warehouse"), ("--catalog", "catalog.db"), ("--hash-index", "h.parquet")],
)
@pytest.mark.parametrize("command", ["run-backfill", "ingest"])
def test_a_root_under_a_file_is_named(home, calls, capsys, tmp_path, command, flag, root) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    target = str(blocker / root)
    head = ["run-backfill", "--inventory", "inv.parquet"] if command != "ingest" else ["ingest"]
    argv = [*head, *(["inv.parquet"] if command == "ingest" else []), flag, target]
    code = cli.main(argv)
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2
    assert target in line and flag in line and "is a file, not a folder" in line, line
    assert calls.calls == [] and not os.path.exists(home.home)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_warehouse_is_named(home, calls, capsys, tmp_path) -> None:
    warehouse = tmp_path / "ro"
    warehouse.mkdir(mode=0o555)
    try:
        code = cli.main(["ingest", "inv.parquet", "--warehouse", str(warehouse)])
    finally:
        warehouse.chmod(0o755)
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2 and str(warehouse) in line and "not writable" in line


# --- info -------------------------------------------------------------------------------------


def test_info_on_a_home_that_does_not_exist(home, capsys) -> None:
    assert cli.main(["info"]) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert home.catalog in line and home.home in line
    assert not os.path.exists(home.home)


def test_info_on_a_catalog_that_does_not_exist(home, capsys, tmp_path) -> None:
    os.makedirs(home.home)
    assert cli.main(["info"]) == 2
    assert home.catalog in _one_line_error(capsys.readouterr().err)
    missing = tmp_path / "nowhere" / "catalog.db"
    assert cli.main(["info", "--catalog", str(missing)]) == 2
    assert str(missing) in _one_line_error(capsys.readouterr().err)
    assert os.listdir(home.home) == [] and not missing.parent.exists()


def test_info_says_where_the_catalog_is_read_from(home, capsys) -> None:
    iceberg.open_catalog(home.catalog, home.warehouse)
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"Catalog : {home.catalog} (local)" in out
    assert "Unique items : 0 (distinct ids counted in the table; no hash index)" in out


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_info_on_a_corrupt_catalog(home, capsys, tmp_path, damage) -> None:
    good = tmp_path / "good.db"
    iceberg.open_catalog(str(good), home.warehouse).create_namespace("extra")
    data = good.read_bytes()
    body = os.urandom(8192) if damage == "garbage" else data[: len(data) // 2]
    os.makedirs(home.home)
    Path(home.catalog).write_bytes(body)
    assert cli.main(["info"]) == 1
    line = _one_line_error(capsys.readouterr().err)
    assert line.startswith(f"error: {home.catalog} is not a readable SQLite Iceberg catalog")
    assert "remote copy" in line and "move it aside" in line
    assert Path(home.catalog).read_bytes() == body
    assert sorted(os.listdir(home.home)) == ["earthcatalog.db"]


def test_info_reads_the_shared_catalog_beside_a_remote_warehouse(s3_home, monkeypatch, capsys):
    monkeypatch.delenv("CATALOG_REMOTE")
    beside = layout.catalog_beside(s3_home.warehouse)
    assert beside == s3_home.catalog_remote  # <parent of WAREHOUSE>/earthcatalog.db
    assert cli.main(["info"]) == 2
    assert f"no catalog at {beside}" in _one_line_error(capsys.readouterr().err)

    work = os.path.join(s3_home.home, "made.db")
    iceberg.open_catalog(work, s3_home.warehouse)
    with open(work, "rb") as f:
        storage.write_bytes(beside, f.read())
    assert cli.main(["info"]) == 0
    assert f"Catalog : {beside} (the shared copy, beside WAREHOUSE)" in capsys.readouterr().out


def test_info_into_a_closed_pipe_has_no_traceback(home, tmp_path) -> None:
    """``info | head -1``: the reader is gone before we write."""
    iceberg.open_catalog(home.catalog, home.warehouse)
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env["EARTHCATALOG_HOME"] = home.home
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "earthcatalog_dagster.cli", "info"],
            stdout=write,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr
    assert done.stderr == ""
    assert done.returncode == cli.EXIT_BROKEN_PIPE


# --- the lock ---------------------------------------------------------------------------------


def test_a_held_lock_names_its_holder_at_once_and_in_the_error(home, capsys, caplog) -> None:
    day = generate_day(DAY_1, 5, source_root=home.source_root, seed=1)
    manifest = write_inventory(home.inventory, DAY_1, day.refs)
    uri = layout.catalog_lock(home.catalog)
    holder = lock.LockInfo(
        "nightly-ingest", "ci-runner-7", 4242, datetime.now(UTC).isoformat(), 6.0, "t", "?"
    )
    storage.write_bytes(uri, holder.to_json())
    caplog.set_level("WARNING")

    code = cli.main(["ingest", manifest, "--h3-resolution", "1", "--lock-timeout", "1"])
    line = _one_line_error(capsys.readouterr().err)
    assert code == 1
    assert "nightly-ingest on ci-runner-7 (pid 4242)" in line
    assert holder.expires.isoformat() in line
    waiting = [r.getMessage() for r in caplog.records if r.getMessage().startswith("waiting")]
    assert waiting and "nightly-ingest on ci-runner-7 (pid 4242)" in waiting[0]
    assert holder.expires.isoformat() in waiting[0]
    assert storage.exists(uri)  # their lock is left alone


# --- real runs --------------------------------------------------------------------------------


def test_ingest_then_run_backfill_then_info(home, capsys) -> None:
    """The commands end to end on the embedded home: options reach the engine."""
    day = generate_day(DAY_1, 40, source_root=home.source_root, seed=2)
    manifest = write_inventory(home.inventory, DAY_1, day.refs)
    assert cli.main(["ingest", manifest, "--h3-resolution", "1", "--compact-rows", "7"]) == 0
    capsys.readouterr()
    table = iceberg.load_table(iceberg.open_catalog(home.catalog, home.warehouse))
    files = table.inspect.files()
    assert max(files["record_count"].to_pylist()) <= 7  # --compact-rows reached the writer

    day2 = generate_day(DAY_1, 20, source_root=home.source_root, seed=5)
    manifest2 = write_inventory(home.inventory, "2026-04-28", day2.refs)
    argv = ["run-backfill", "--inventory", manifest2, "--scheduler", "synchronous", "--delta"]
    assert cli.main([*argv, "--update-hash-index", "--skip-upload", "--chunk-size", "8"]) == 0
    assert "Mode : delta" in capsys.readouterr().out

    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    distinct = len(set(day.good_ids) | set(day2.good_ids))
    assert f"Unique items : {distinct:,} (from hash index)" in out
    assert f"Catalog : {home.catalog} (local)" in out
