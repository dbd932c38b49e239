"""The Dagster platform on S3: the ``s3`` resource configures the data plane, credentials go
nowhere else, and the delta's move to ``ingested/`` survives a crash between copy and
delete."""

from __future__ import annotations

import pickle

import pytest
from dagster import DagsterInstance, materialize

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.orchestration.assets import ingest_assets
from earthcatalog_dagster.orchestration.resources import DataPlaneS3
from earthcatalog_dagster.synthetic import generate_day, write_inventory
from earthcatalog_dagster_tests.conftest import DAY_1
from earthcatalog_dagster_tests.core.moto_s3 import KEY_ID, REGION, SECRET
from earthcatalog_dagster_tests.helpers import resources_for

# End to end (whole ingests, Dagster runs, S3 servers): out of the fast lane.
pytestmark = pytest.mark.slow

_AWS_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
)


def test_the_s3_resource_configures_the_data_plane_and_hides_credentials(
    s3_server, s3_home, monkeypatch
) -> None:
    day = generate_day(DAY_1, 30, source_root=s3_home.source_root, seed=21)
    write_inventory(s3_home.inventory, DAY_1, day.refs)
    # From here on the AWS variables say nothing: only the resource knows the endpoint.
    for name in _AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    storage.configure_s3()
    s3 = DataPlaneS3(
        region_name=REGION,
        endpoint_url=s3_server.endpoint,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )
    result = materialize(
        ingest_assets,
        partition_key=DAY_1.isoformat(),
        resources=resources_for(s3_home, s3=s3),
        instance=DagsterInstance.ephemeral(),
    )
    assert result.success
    assert storage.s3_overrides()["endpoint_url"] == s3_server.endpoint
    hashes = result.asset_materializations_for_node("hash_index")[0].metadata
    assert hashes["hashes after"].value == len(set(day.good_ids))

    # Credentials appear in no event, metadata, descriptor, or lock.
    events = "\n".join(repr(event) for event in result.all_events)
    staging = layout.staging_for(s3_home.staging, DAY_1)
    descriptors = [storage.read_bytes(o.uri) for o in storage.list_objects(staging, suffix=".json")]
    assert len(descriptors) >= 6
    for text in (events, *(d.decode() for d in descriptors)):
        assert SECRET not in text and KEY_ID not in text

    # The same settings travel with Dask tasks, and their repr shows none of them.
    task = pickle.loads(pickle.dumps(s3.task(len)))
    storage.configure_s3()
    assert task("abc") == 3
    assert storage.s3_overrides()["secret_access_key"] == SECRET
    assert SECRET not in repr(task) and KEY_ID not in repr(task)


def test_rerun_after_a_crash_between_copy_and_delete_of_the_delta(s3_home) -> None:
    day = generate_day(DAY_1, 30, source_root=s3_home.source_root, seed=22)
    write_inventory(s3_home.inventory, DAY_1, day.refs)
    resources = resources_for(s3_home)
    first = materialize(
        ingest_assets,
        partition_key=DAY_1.isoformat(),
        resources=resources,
        instance=DagsterInstance.ephemeral(),
    )
    assert first.success
    pending = layout.delta_pending(s3_home.delta_prefix, DAY_1)
    done = layout.delta_ingested(s3_home.delta_prefix, DAY_1)
    assert storage.exists(done) and not storage.exists(pending)

    # A crash after the copy, before the delete: both objects exist. The rerun of the last
    # step converges, and once more is a no-op.
    storage.write_bytes(pending, storage.read_bytes(done))
    for _ in range(2):
        again = materialize(
            ingest_assets,
            selection=["hash_index"],
            partition_key=DAY_1.isoformat(),
            resources=resources,
            instance=DagsterInstance.ephemeral(),
        )
        assert again.success
        assert storage.exists(done) and not storage.exists(pending)
        assert all(c.passed for c in again.get_asset_check_evaluations())
