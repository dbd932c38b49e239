from __future__ import annotations

import pytest
from dagster import DagsterInstance, materialize

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import load_hash_index
from earthcatalog_dagster.orchestration.assets import ingest_assets
from earthcatalog_dagster.synthetic import generate_day, write_inventory
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2, local_and_s3
from earthcatalog_dagster_tests.helpers import (
    assert_pairs_match,
    materialize_partition,
    resources_for,
    table_pairs,
)

# End to end (whole ingests, Dagster runs, S3 servers): out of the fast lane.
pytestmark = pytest.mark.slow


@pytest.fixture
def two_days(home):
    days = []
    for seed, date in enumerate((DAY_1, DAY_2)):
        day = generate_day(date, 60, source_root=home.source_root, seed=seed)
        write_inventory(home.inventory, date, day.refs)
        days.append(day)
    return days


@local_and_s3
def test_two_partitions_build_the_catalog(home, two_days) -> None:
    day1, day2 = two_days
    first = materialize_partition(home, DAY_1)
    assert first.success
    assert_pairs_match(table_pairs(home), day1)
    second = materialize_partition(home, DAY_2)
    assert second.success
    assert_pairs_match(table_pairs(home), day1, day2)
    assert len(load_hash_index(home.warehouse_hash)) == len(set(day1.good_ids) | set(day2.good_ids))

    # Deltas moved to ingested/, one staging prefix per date.
    for date in (DAY_1, DAY_2):
        assert storage.exists(layout.delta_ingested(home.delta_prefix, date))
        assert not storage.exists(layout.delta_pending(home.delta_prefix, date))
        assert storage.exists(
            layout.asset_descriptor(layout.staging_for(home.staging, date), "hash_index")
        )

    # Metadata a person reads at a glance.
    ndjson = second.asset_materializations_for_node("ndjson_items")[0].metadata
    bad = day2.expected
    assert ndjson["items missing (404)"].value == len(bad["missing"])
    assert ndjson["items rejected"].value == sum(
        len(bad[k]) for k in ("truncated", "error_page", "no_id", "uncoercible")
    )
    assert ndjson["items staged"].value == len(day2.good_ids)
    registered = second.asset_materializations_for_node("iceberg_table")[0].metadata
    assert registered["files registered"].value > 0
    hashes = second.asset_materializations_for_node("hash_index")[0].metadata
    assert hashes["hashes after"].value - hashes["hashes before"].value == len(set(day2.good_ids))

    checks = second.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {
        "files_match_their_bucket",
        "no_duplicate_rows",
        "delta_accounted_for",
        "index_holds_new_ids",
    }
    assert all(c.passed for c in checks), [
        (c.check_name, c.metadata) for c in checks if not c.passed
    ]


def test_missing_delta_done_marker_and_manifest_fail_naming_all_three(home) -> None:
    result = materialize(
        ingest_assets[:1],
        partition_key=DAY_1.isoformat(),
        resources=resources_for(home),
        instance=DagsterInstance.ephemeral(),
        raise_on_error=False,
    )
    assert not result.success
    message = str(result.all_events)
    assert "delta file not found" in message
    assert layout.delta_pending(home.delta_prefix, DAY_1) in message
    assert layout.delta_ingested(home.delta_prefix, DAY_1) in message
    assert layout.inventory_manifest(home.inventory, DAY_1) in message


def test_local_dask_cluster_gives_the_same_catalog(home, two_days) -> None:
    day1, _ = two_days
    assert materialize_partition(home, DAY_1, scheduler="local", workers=2).success
    assert_pairs_match(table_pairs(home), day1)
