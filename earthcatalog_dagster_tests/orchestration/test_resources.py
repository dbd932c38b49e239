"""The ``s3`` resource: ``context.resources.s3`` is still a boto3 client, built only when
something uses it (the platform's own steps never do)."""

import pytest
from dagster import AssetExecutionContext, DagsterInstance, asset, materialize

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.orchestration.resources import DataPlaneS3
from earthcatalog_dagster_tests.core.moto_s3 import KEY_ID, REGION, SECRET

pytest.importorskip("boto3")


def _resource(endpoint: str, **extra: str) -> DataPlaneS3:
    return DataPlaneS3(
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        **extra,
    )


def test_context_resources_s3_is_a_working_boto3_client(s3_server) -> None:
    seen: list[str] = []

    @asset(required_resource_keys={"s3"})
    def bucket_names(context: AssetExecutionContext) -> None:
        listing = context.resources.s3.list_buckets()
        seen.extend(b["Name"] for b in listing["Buckets"])

    try:
        result = materialize(
            [bucket_names],
            resources={"s3": _resource(s3_server.endpoint)},
            instance=DagsterInstance.ephemeral(),
        )
    finally:
        storage.configure_s3()
    assert result.success
    # The session's buckets, as the moto server lists them over HTTP.
    assert "its-live-data" in seen


def test_a_run_that_never_uses_the_client_never_builds_one(s3_server) -> None:
    """A profile that does not exist fails only where a client is built: not in a step that
    uses the data plane alone (as every platform step does), but in one that asks for it."""
    resource = _resource(s3_server.endpoint, profile_name="no-such-profile-anywhere")

    @asset(required_resource_keys={"s3"})
    def data_plane_only(context: AssetExecutionContext) -> int:
        return len(storage.s3_overrides())

    @asset(required_resource_keys={"s3"})
    def uses_the_client(context: AssetExecutionContext) -> None:
        context.resources.s3.list_buckets()

    try:
        quiet = materialize(
            [data_plane_only], resources={"s3": resource}, instance=DagsterInstance.ephemeral()
        )
        assert quiet.success
        assert quiet.output_for_node("data_plane_only") > 0
        loud = materialize(
            [uses_the_client],
            resources={"s3": resource},
            instance=DagsterInstance.ephemeral(),
            raise_on_error=False,
        )
    finally:
        storage.configure_s3()
    assert not loud.success
    failure = loud.get_step_failure_events()[0].step_failure_data.error
    assert failure is not None
    assert "no-such-profile-anywhere" in failure.to_string()
