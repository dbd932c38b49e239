"""Issue 9 through the Dagster assets, on a real instance and real files.

- Rerunning an ingested date is a no-op that succeeds and says so; a range over ingested
  and new dates succeeds.
- A run whose source objects are all missing fails, naming the source root; the rerun
  with the right root fetches again.
- The resolution policy of the one commit path: the ``catalog`` resource's
  ``h3_resolution`` builds the table; a different one on the table is refused; none on a
  fresh catalog is refused before any fetch.
- A bad ingest setting fails the step naming the setting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any

import pytest
from dagster import DagsterInstance, materialize

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.definitions import build_definitions
from earthcatalog_dagster.orchestration.assets import ingest_assets
from earthcatalog_dagster.orchestration.resources import DaskCompute, IcebergCatalog
from earthcatalog_dagster.synthetic import GeneratedDay
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2, roots_for
from earthcatalog_dagster_tests.helpers import checks_pass, load_table, metadata, write_day

pytestmark = pytest.mark.slow

ASSETS = [a.key.path[-1] for a in ingest_assets]


def _resources(home: Settings, **catalog: Any) -> dict[str, Any]:
    roots, default_catalog = roots_for(home)
    resource = IcebergCatalog(
        catalog_path=default_catalog.catalog_path, remote_uri=default_catalog.remote_uri, **catalog
    )
    compute = DaskCompute(scheduler="synchronous")
    return dict(build_definitions(roots=roots, catalog=resource, compute=compute).resources)


def _run(home: Settings, date, *, run_config=None, instance=None, **catalog: Any):
    return materialize(
        ingest_assets,
        partition_key=date.isoformat(),
        resources=_resources(home, **catalog),
        instance=instance or DagsterInstance.ephemeral(),
        run_config=run_config,
        raise_on_error=False,
    )


def _day(home: Settings, date, seed: int, n: int = 30) -> GeneratedDay:
    return write_day(home, date, n, seed=seed)[0]


def _table(home: Settings):
    return load_table(home)


def _digest(uri: str) -> str:
    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()


def _state(home: Settings) -> dict[str, Any]:
    """Everything a run could change, besides the staging descriptors."""
    table = _table(home)
    return {
        "snapshot": table.current_snapshot().snapshot_id,
        "snapshots": len(table.snapshots()),
        "warehouse": [(o.uri, o.size) for o in storage.list_objects(home.warehouse)],
        "deltas": [(o.uri, o.last_modified) for o in storage.list_objects(home.delta_prefix)],
        "hash index": _digest(home.warehouse_hash),
        "catalog": _digest(home.catalog),
    }


def _failure_text(result) -> str:
    return "\n".join(
        str(event.event_specific_data) for event in result.all_events if event.is_failure
    )


def test_rerunning_an_ingested_date_is_a_no_op_that_says_so(home) -> None:
    _day(home, DAY_1, seed=41)
    assert _run(home, DAY_1).success
    before = _state(home)
    done = layout.delta_ingested(home.delta_prefix, DAY_1)
    (marker,) = [o for o in storage.list_objects(home.delta_prefix) if o.uri == done]

    again = _run(home, DAY_1)
    assert again.success, _failure_text(again)
    assert _state(home) == before  # no snapshot, no file, index and catalog untouched
    assert not storage.exists(layout.delta_pending(home.delta_prefix, DAY_1))
    at = marker.last_modified.astimezone(dt.UTC).isoformat(timespec="seconds")
    expected = f"already ingested at {at}"
    for asset in ASSETS:
        assert metadata(again, asset)["status"] == expected, asset
    assert again.get_asset_check_evaluations()
    checks_pass(again)

    # A range over an ingested date and a new one (what a backfill runs, one date per
    # run) succeeds; only the new date changes the table.
    _day(home, DAY_2, seed=42)
    instance = DagsterInstance.ephemeral()
    for date in (DAY_1, DAY_2):
        assert _run(home, date, instance=instance).success, date
    assert len(_table(home).snapshots()) == before["snapshots"] + 1
    assert storage.exists(layout.delta_ingested(home.delta_prefix, DAY_2))


def test_a_pending_delta_beside_its_done_marker_is_ingested_not_skipped(home) -> None:
    """A crash between the copy to ingested/ and the delete of pending/: not a no-op."""
    _day(home, DAY_1, seed=43)
    assert _run(home, DAY_1).success
    pending = layout.delta_pending(home.delta_prefix, DAY_1)
    done = layout.delta_ingested(home.delta_prefix, DAY_1)
    storage.write_bytes(pending, storage.read_bytes(done))
    again = _run(home, DAY_1)
    assert again.success
    delta = metadata(again, "delta_inventory")
    assert "status" not in delta and delta["reused"] is True
    assert not storage.exists(pending) and storage.exists(done)


def test_all_source_objects_missing_fails_naming_the_source_root(home, tmp_path) -> None:
    day = _day(home, DAY_1, seed=44)
    wrong = str(tmp_path / "empty-mirror")
    roots, catalog = roots_for(dataclasses.replace(home, source_root=wrong))
    assert roots.settings().source_root == wrong
    resources = dict(
        build_definitions(
            roots=roots,
            catalog=catalog,
            compute=DaskCompute(scheduler="synchronous"),
        ).resources
    )
    result = materialize(
        ingest_assets,
        partition_key=DAY_1.isoformat(),
        resources=resources,
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    text = _failure_text(result)
    assert wrong in text and "missing" in text
    assert any(key.split("/")[-1] in text for key in day.item_keys)  # one example key
    assert _table(home) is None  # nothing committed, no table created
    assert not storage.exists(layout.delta_ingested(home.delta_prefix, DAY_1))

    # With the right root, the rerun fetches again (no marker of the failed run trusted).
    rerun = _run(home, DAY_1)
    assert rerun.success, _failure_text(rerun)
    staged = metadata(rerun, "ndjson_items")
    assert staged["items staged"] == len(day.good_ids)
    assert staged["chunks skipped (already done)"] == 0


def test_the_catalog_resource_resolution_builds_the_table_and_a_different_one_fails(
    home,
) -> None:
    _day(home, DAY_1, seed=45)
    _day(home, DAY_2, seed=46)

    # No resolution configured and no table: refused before anything is fetched.
    unset = _run(home, DAY_1, h3_resolution=None)
    assert not unset.success
    assert "a first build needs its H3 resolution" in _failure_text(unset)
    assert _table(home) is None
    assert not storage.list_objects(layout.join(layout.staging_for(home.staging, DAY_1), "markers"))

    first = _run(home, DAY_1, h3_resolution=2)
    assert first.success, _failure_text(first)
    assert iceberg.table_resolution(_table(home)) == 2
    assert metadata(first, "ndjson_items")["h3 resolution"] == 2
    snapshot = _table(home).current_snapshot().snapshot_id

    different = _run(home, DAY_2, h3_resolution=3)
    assert not different.success
    text = _failure_text(different)
    assert "differs from the table's resolution 2" in text
    assert _table(home).current_snapshot().snapshot_id == snapshot

    # Unset on an existing table: the table's resolution.
    follow = _run(home, DAY_2, h3_resolution=None)
    assert follow.success, _failure_text(follow)
    assert iceberg.table_resolution(_table(home)) == 2


def test_a_bad_setting_fails_the_step_naming_it(home) -> None:
    _day(home, DAY_1, seed=47, n=10)
    config = {"ops": {"ndjson_items": {"config": {"fetch_concurrency": 0}}}}
    result = _run(home, DAY_1, run_config=config)
    assert not result.success
    assert "fetch_concurrency must be a positive number" in _failure_text(result)
    assert _table(home) is None
