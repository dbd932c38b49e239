"""The staging IO manager: each asset's typed descriptor as JSON under its date's prefix.

``<staging root>/delta_<D>/<asset>.json`` holds what an asset returned for partition D
(a :mod:`~earthcatalog_dagster.orchestration.descriptors` dataclass: keys, counts, file
lists); the downstream asset of the same partition loads it from there. Bulk bytes
(chunks, NDJSON, Parquet) never pass through here: workers write them straight to storage.

A descriptor written by an older version (an untyped dict) is converted when it holds
every key that version wrote; one that cannot be read is treated as absent: the run fails
with a message asking to materialize the upstream asset again, never with a traceback.
"""

from __future__ import annotations

from dagster import ConfigurableIOManager, Failure, InputContext, OutputContext
from pydantic import Field

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.orchestration.descriptors import Descriptor, decode
from earthcatalog_dagster.orchestration.resources import DataPlaneS3


class StagingIOManager(ConfigurableIOManager):
    """Stores asset descriptors as JSON in the date's staging prefix."""

    staging_root: str | None = Field(default=None, description="Staging root; $STAGING")
    s3: DataPlaneS3 | None = Field(
        default=None, description="S3 settings of the data plane (set up with the resource)"
    )

    def _root(self) -> str:
        return self.staging_root or Settings.from_env().staging

    def descriptor_uri(self, asset: str, partition_key: str) -> str:
        return layout.asset_descriptor(layout.staging_for(self._root(), partition_key), asset)

    def handle_output(self, context: OutputContext, obj: Descriptor) -> None:
        if not isinstance(obj, Descriptor):
            raise TypeError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; the "
                "staging IO manager stores descriptors (orchestration/descriptors.py) only"
            )
        uri = self.descriptor_uri(context.asset_key.path[-1], context.asset_partition_key)
        storage.write_bytes(uri, obj.to_json())
        context.add_output_metadata({"descriptor": uri})

    def load_input(self, context: InputContext) -> Descriptor:
        asset = context.asset_key.to_user_string()
        partition = context.asset_partition_key
        uri = self.descriptor_uri(context.asset_key.path[-1], partition)
        expected = getattr(context.dagster_type, "typing_type", None)
        if not (isinstance(expected, type) and issubclass(expected, Descriptor)):
            expected = None
        try:
            raw = storage.read_bytes(uri)
        except FileNotFoundError:
            raise Failure(
                description=f"{asset} has no descriptor for partition {partition} at {uri}: "
                f"materialize {asset} for {partition} first"
            ) from None
        descriptor = decode(raw, expected)
        if descriptor is None:
            raise Failure(
                description=f"{asset}'s descriptor for partition {partition} at {uri} is not "
                f"one this version can read (an older format?): materialize {asset} for "
                f"{partition} again"
            )
        return descriptor
