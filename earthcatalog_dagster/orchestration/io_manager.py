"""The staging IO manager: each asset's small JSON descriptor under its date's prefix.

``<staging root>/delta_<D>/<asset>.json`` holds what an asset returned for partition D
(keys, counts, file lists); the downstream asset of the same partition loads it from
there. Bulk bytes (chunks, NDJSON, Parquet) never pass through here: workers write them
straight to storage.
"""

from __future__ import annotations

import json
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext
from dagster_aws.s3 import S3Resource
from pydantic import Field

from earthcatalog_dagster import layout
from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.core import storage


class StagingIOManager(ConfigurableIOManager):
    """Stores asset descriptors as JSON in the date's staging prefix."""

    staging_root: str | None = Field(default=None, description="Staging root; $STAGING")
    s3: S3Resource | None = Field(default=None, description="S3 settings of the data plane")

    def _root(self) -> str:
        return self.staging_root or Settings.from_env().staging

    def descriptor_uri(self, asset: str, partition_key: str) -> str:
        return layout.asset_descriptor(layout.staging_for(self._root(), partition_key), asset)

    def _configure(self) -> None:
        # Imported here: resources import nothing from this module, but keep it one-way.
        from earthcatalog_dagster.orchestration.resources import use_s3

        use_s3(self.s3)

    def handle_output(self, context: OutputContext, obj: dict[str, Any]) -> None:
        self._configure()
        uri = self.descriptor_uri(context.asset_key.path[-1], context.asset_partition_key)
        storage.write_bytes(uri, json.dumps(obj, indent=1, default=str).encode())
        context.add_output_metadata({"descriptor": uri})

    def load_input(self, context: InputContext) -> dict[str, Any]:
        self._configure()
        uri = self.descriptor_uri(context.asset_key.path[-1], context.asset_partition_key)
        try:
            return json.loads(storage.read_bytes(uri))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{context.asset_key.to_user_string()} has no descriptor for partition "
                f"{context.asset_partition_key} at {uri}: materialize it first"
            ) from None
