"""Compaction (``compact()`` / ``earthcatalog-dagster compact``).

The history is a few small daily ingests of synthetic days at H3 resolution 1, so most
(cell, year) buckets hold several one- or two-row files. The oracles are the table's
(id, cell) pairs before compaction and the synthetic items themselves
(:func:`~earthcatalog_dagster_tests.helpers.assert_pairs_match`), never the code under test.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThan
from stac_geoparquet.arrow import stac_table_to_items

from earthcatalog_dagster import cli, compact, ingest, layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.geoparquet import write_geoparquet
from earthcatalog_dagster.core.remote_catalog import catalog_session
from earthcatalog_dagster.options import MAINTENANCE_DEFAULTS, MaintenanceOptions, OptionError
from earthcatalog_dagster.pipeline.maintenance import compact as compact_module
from earthcatalog_dagster.pipeline.maintenance.compact import (
    COMPACT_OPERATION,
    OPERATION_PROPERTY,
    CompactionError,
)
from earthcatalog_dagster_tests.conftest import local_and_s3
from earthcatalog_dagster_tests.helpers import (
    assert_pairs_match,
    load_table,
    scan_pairs,
    table_pairs,
    warehouse_files,
    write_day,
)

FIRST_DAY = dt.date(2026, 4, 1)


def build_history(settings: Settings, days: int, items: int) -> list:
    """``days`` consecutive small daily ingests; the synthetic days."""
    made = []
    for number in range(days):
        day, manifest = write_day(
            settings, FIRST_DAY + dt.timedelta(days=number), items, seed=100 + number
        )
        made.append(day)
        ingest(manifest, settings=settings, h3_resolution=1)
    return made


def registered(settings: Settings) -> set[str]:
    return iceberg.registered_files(load_table(settings))


def scan_rows(table, *columns: str) -> pa.Table:
    return table.scan(selected_fields=columns).to_arrow()


def add_updated_duplicates(settings: Settings, rows: int = 2) -> tuple[str, str, list[str]]:
    """Register one more file in a bucket of several files: an updated copy of ``rows`` of
    its rows (a later ``updated``, ``percent_valid_pixels`` 7). Returns the bucket
    and the duplicated ids."""
    table = load_table(settings)
    files = table.inspect.files().select(["file_path", "record_count"]).to_pylist()
    per_bucket: dict[tuple[str, str], list[dict]] = {}
    for file in files:
        per_bucket.setdefault(layout.parse_warehouse_file(file["file_path"]), []).append(file)
    (cell, year), members = max(
        per_bucket.items(), key=lambda kv: (len(kv[1]), sum(f["record_count"] for f in kv[1]))
    )
    source = storage.read_parquet(max(members, key=lambda f: f["record_count"])["file_path"])
    copy = source.slice(0, rows)
    later = pc.add(copy["updated"], pa.scalar(dt.timedelta(days=1)))
    copy = copy.set_column(copy.schema.get_field_index("updated"), "updated", later)
    index = copy.schema.get_field_index("percent_valid_pixels")
    copy = copy.set_column(
        index, "percent_valid_pixels", pa.array([7] * rows, copy.schema.field(index).type)
    )
    uri = layout.warehouse_file(settings.warehouse, cell, year, "duplicates", 0)
    written = write_geoparquet(copy, uri)
    with catalog_session(settings.catalog, settings.catalog_remote) as session:
        live = iceberg.load_table(iceberg.open_catalog(session.local, settings.warehouse))
        iceberg.register_files(live, [uri], footers={uri: written})
    return cell, year, copy["id"].to_pylist()


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
@local_and_s3
def test_compaction_keeps_every_row_drops_duplicates_and_keeps_readers(home) -> None:
    days = build_history(home, 4, 40 if storage.is_local(home.warehouse) else 20)
    pairs = table_pairs(home)
    assert_pairs_match(pairs, *days)
    cell, year, duplicated = add_updated_duplicates(home)
    reader = load_table(home)  # a reader that loaded the table before the compaction
    old_snapshot = reader.current_snapshot().snapshot_id
    old_files = registered(home)
    old_rows = scan_rows(reader, "id", "grid_partition", "datetime")
    assert len(scan_pairs(reader)) == len(pairs) + len(duplicated)

    result = compact(settings=home)

    # Every row and id kept, each (id, cell) once, the duplicates gone.
    assert result.buckets_planned == result.buckets_compacted > 0
    assert result.duplicates_dropped == len(duplicated)
    assert result.rows_in - result.rows_out == len(duplicated)
    after = table_pairs(home)
    assert after == pairs
    assert_pairs_match(after, *days)
    # The latest ``updated`` won.
    table = load_table(home)
    rows = table.scan(
        row_filter=EqualTo("grid_partition", cell), selected_fields=("id", "percent_valid_pixels")
    ).to_arrow()
    ids, valid = rows["id"].to_pylist(), rows["percent_valid_pixels"].to_pylist()
    values = dict(zip(ids, valid, strict=True))
    assert all(values[i] == 7 for i in duplicated)

    # One OVERWRITE snapshot saying it is a compaction; fewer files.
    snapshot = table.current_snapshot()
    assert snapshot.snapshot_id == result.snapshot_id
    assert snapshot.parent_snapshot_id == old_snapshot
    assert snapshot.summary.operation.value == "overwrite"
    assert snapshot.summary[OPERATION_PROPERTY] == COMPACT_OPERATION
    assert snapshot.summary["earthcatalog.compact.buckets"] == str(result.buckets_compacted)
    now = registered(home)
    assert len(now) == len(old_files) - result.files_before + result.files_after
    outputs = {uri for bucket in result.plan for uri in bucket.outputs}
    assert outputs <= now and not now & {p for b in result.plan for p in b.files}
    assert result.table_files_after == len(now)

    # GeoParquet 1.1 + stac-geoparquet metadata, readable by stac-geoparquet.
    for uri in outputs:
        with storage.open_input(uri) as stream:
            metadata = pq.read_schema(stream).metadata
        geo = json.loads(metadata[b"geo"])
        assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
        assert geo["columns"]["geometry"]["covering"]["bbox"]["xmin"] == ["bbox", "xmin"]
        assert json.loads(metadata[b"stac-geoparquet"])["collections"]
    sample = sorted(outputs)[0]
    items = list(stac_table_to_items(storage.read_parquet(sample)))
    assert items and all(i["geometry"]["type"] and len(i["bbox"]) == 4 for i in items)
    assert sorted(i["id"] for i in items) == sorted(
        storage.read_parquet(sample, columns=["id"])["id"].to_pylist()
    )

    # A PyIceberg scan with cell and year filters reads the bucket's rows, from its
    # compacted file(s) only.
    start = dt.datetime(int(year), 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(int(year) + 1, 1, 1, tzinfo=dt.UTC)
    row_filter = And(
        EqualTo("grid_partition", cell),
        And(
            GreaterThanOrEqual("datetime", start.isoformat()),
            LessThan("datetime", end.isoformat()),
        ),
    )
    scan = table.scan(row_filter=row_filter, selected_fields=("id",))
    bucket = next(b for b in result.plan if (b.cell, b.year) == (cell, year))
    assert {task.file.file_path for task in scan.plan_files()} == set(bucket.outputs)
    mask = pc.and_(
        pc.equal(old_rows["grid_partition"], cell),
        pc.equal(pc.year(old_rows["datetime"]), int(year)),
    )
    expected = set(old_rows.filter(mask)["id"].to_pylist())
    assert sorted(scan.to_arrow()["id"].to_pylist()) == sorted(expected)

    # The reader that loaded the table before still reads every file of its snapshot.
    assert all(storage.exists(uri) for uri in old_files)
    assert len(scan_pairs(reader)) == len(pairs) + len(duplicated)
    back = table.scan(snapshot_id=old_snapshot, selected_fields=("id", "grid_partition"))
    assert back.to_arrow().num_rows == len(pairs) + len(duplicated)

    # A second run finds nothing to do.
    again = compact(settings=home)
    assert again.buckets_planned == 0 and again.snapshot_id is None
    assert load_table(home).current_snapshot().snapshot_id == result.snapshot_id


@pytest.mark.slow
@local_and_s3
def test_dry_run_and_partial_runs(home, capsys) -> None:
    days = build_history(home, 3, 30 if storage.is_local(home.warehouse) else 16)
    pairs = table_pairs(home)
    snapshot = load_table(home).current_snapshot().snapshot_id
    files = warehouse_files(home)

    plan = compact(settings=home, dry_run=True)
    assert plan.dry_run and plan.buckets_planned > 0 and plan.snapshot_id is None
    assert all(b.status == "dry run" and not b.outputs for b in plan.plan)
    assert plan.files_before == sum(b.files_in for b in plan.plan) > plan.files_after
    assert cli.main(["compact", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and f"{plan.buckets_planned:,} planned" in out
    assert load_table(home).current_snapshot().snapshot_id == snapshot
    assert warehouse_files(home) == files

    # --cells, --years, --max-buckets narrow the plan; the most fragmented buckets first.
    bucket = max(plan.plan, key=lambda b: b.files_in)
    only_cell = compact(settings=home, dry_run=True, cells=[bucket.cell])
    assert {b.cell for b in only_cell.plan} == {bucket.cell}
    assert len(only_cell.plan) == sum(b.cell == bucket.cell for b in plan.plan)
    only_year = compact(settings=home, dry_run=True, years=[int(bucket.year)])
    assert {b.year for b in only_year.plan} == {bucket.year}
    top = compact(settings=home, dry_run=True, max_buckets=2)
    assert len(top.plan) == 2
    assert (
        min(b.files_in for b in top.plan)
        == sorted((b.files_in for b in plan.plan), reverse=True)[1]
    )

    # A partial run compacts only its buckets; the rest follows in the next run.
    first = compact(settings=home, cells=[bucket.cell])
    assert first.buckets_compacted == len(only_cell.plan)
    assert cli.main(["compact", "--json"]) == 0
    rest = json.loads(capsys.readouterr().out)
    assert rest["buckets_compacted"] == plan.buckets_planned - first.buckets_compacted
    assert compact(settings=home).buckets_planned == 0
    assert table_pairs(home) == pairs
    assert_pairs_match(pairs, *days)


@pytest.mark.slow
@local_and_s3
@pytest.mark.parametrize("kill", ["write", "verify", "commit"])
def test_kill_inside_compaction_then_rerun_converges(home, monkeypatch, kill) -> None:
    days = build_history(home, 3, 30 if storage.is_local(home.warehouse) else 20)
    pairs = table_pairs(home)
    snapshot = load_table(home).current_snapshot().snapshot_id
    before = registered(home)
    assert compact(settings=home, dry_run=True).buckets_planned >= 2

    class Killed(RuntimeError):
        pass

    calls = {"n": 0}
    real_write = compact_module.write_geoparquet

    def dying_write(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # after one bucket's file
            raise Killed("killed while writing")
        return real_write(*args, **kwargs)

    def dying(*args, **kwargs):
        raise Killed(f"killed at {kill}")

    target = {"write": "write_geoparquet", "verify": "verify_bucket", "commit": "commit_compaction"}
    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(compact_module, target[kill], dying_write if kill == "write" else dying)
        compact(settings=home)

    # Nothing changed in the table; what was written is unregistered.
    assert load_table(home).current_snapshot().snapshot_id == snapshot
    assert registered(home) == before
    assert table_pairs(home) == pairs
    left = warehouse_files(home) - before

    result = compact(settings=home)
    assert result.buckets_compacted == result.buckets_planned > 0
    after = table_pairs(home)
    assert after == pairs
    assert_pairs_match(after, *days)
    now = registered(home)
    assert now <= warehouse_files(home)  # no registered file is missing
    outputs = {uri for bucket in result.plan for uri in bucket.outputs}
    assert left <= outputs  # the rerun wrote the same names over the killed run's files
    assert warehouse_files(home) == before | outputs
    assert compact(settings=home).buckets_planned == 0


@pytest.mark.slow
def test_a_mismatch_commits_nothing(home, monkeypatch) -> None:
    build_history(home, 3, 20)
    snapshot = load_table(home).current_snapshot().snapshot_id
    real = compact_module.dedupe_latest
    monkeypatch.setattr(compact_module, "dedupe_latest", lambda rows: real(rows).slice(1))
    with pytest.raises(CompactionError, match="distinct ids"):
        compact(settings=home)
    assert load_table(home).current_snapshot().snapshot_id == snapshot


@pytest.mark.slow
def test_a_bucket_changed_before_the_commit_is_skipped(home, monkeypatch) -> None:
    """Another compaction commits one bucket while this run works: this run skips that
    bucket at its commit (its inputs are gone) and compacts the others."""
    days = build_history(home, 3, 30)
    pairs = table_pairs(home)
    real = compact_module.compact_bucket
    raced: list[tuple[str, str]] = []

    def racing(bucket, warehouse, compact_rows):
        if not raced:
            raced.append((bucket.cell, bucket.year))
            other = compact(settings=home, cells=[bucket.cell], years=[int(bucket.year)])
            assert other.buckets_compacted == 1
        return real(bucket, warehouse, compact_rows)

    monkeypatch.setattr(compact_module, "compact_bucket", racing)
    result = compact(settings=home)
    skipped = [(b.cell, b.year) for b in result.plan if b.status == "skipped"]
    assert skipped == raced
    assert result.buckets_compacted == result.buckets_planned - 1 and result.buckets_skipped == 1
    after = table_pairs(home)
    assert after == pairs
    assert_pairs_match(after, *days)


# --- options and the command line ----------------------------------------------------------


def test_options_take_values_and_comma_lists() -> None:
    options = MAINTENANCE_DEFAULTS.with_values(cells="a, b", years="2020,2021", min_files=None)
    assert options.cells == ("a", "b") and options.years == (2020, 2021)
    assert options.min_files == MAINTENANCE_DEFAULTS.min_files
    assert MaintenanceOptions(years=[2019]).years == (2019,)
    with pytest.raises(OptionError, match="min_files"):
        MAINTENANCE_DEFAULTS.with_values(min_files=0)
    with pytest.raises(OptionError, match="unknown"):
        MAINTENANCE_DEFAULTS.with_values(chunk_size=3)
    with pytest.raises(OptionError, match="years"):
        MAINTENANCE_DEFAULTS.with_values(years="twenty")


def test_cli_refuses_bad_values_before_any_work(home, capsys) -> None:
    assert cli.main(["compact", "--min-files", "0"]) == cli.EXIT_USAGE
    assert "--min-files must be a positive number" in capsys.readouterr().err
    assert cli.main(["compact", "--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--min-files", "--small-file-bytes", "--compact-rows", "--cells", "--years"):
        assert flag in text
    assert f"[default: {MAINTENANCE_DEFAULTS.min_files}]" in text


def test_compact_without_a_table_does_nothing(home) -> None:
    result = compact(settings=home)
    assert result.buckets_planned == 0 and result.snapshot_id is None
    assert "nothing to compact" in result.render()
    assert not os.path.exists(home.catalog)  # asking created no catalog
