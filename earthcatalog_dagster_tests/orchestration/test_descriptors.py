"""The typed descriptors between assets: they round-trip through the staging IO manager
as JSON under ``<staging>/delta_D/<asset>.json``; an old untyped descriptor is converted,
and one that cannot be read is treated as absent (a clear failure, no traceback)."""

from __future__ import annotations

import json

import pytest
from dagster import Failure, PythonObjectDagsterType, build_input_context, build_output_context

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.orchestration.descriptors import (
    AlreadyIngested,
    ChunksDescriptor,
    DeltaDescriptor,
    Descriptor,
    HashIndexDescriptor,
    NdjsonDescriptor,
    RegistrationDescriptor,
    WarehouseDescriptor,
)
from earthcatalog_dagster.orchestration.io_manager import StagingIOManager
from earthcatalog_dagster.orchestration.partitions import daily_partitions
from earthcatalog_dagster_tests.conftest import DAY_1

DATE = DAY_1.isoformat()
DONE = AlreadyIngested(done="/d/ingested/delta_2026-04-27.done", at="2026-04-28T04:00:00+00:00")
EXAMPLES: list[tuple[str, Descriptor]] = [
    ("delta_inventory", DeltaDescriptor(delta="/d/pending/x.parquet", rows=3, source="m.json")),
    ("staged_chunks", ChunksDescriptor(chunks=("/s/chunk_0.parquet",), rows=3, chunk_size=10)),
    (
        "ndjson_items",
        NdjsonDescriptor(
            buckets=(("8001fffffffffff", "2020"), ("8003fffffffffff", "none")),
            rows=3,
            fetched=3,
            items=2,
            rejected=1,
            rows_out=4,
            resolution=1,
        ),
    ),
    ("warehouse_parquets", WarehouseDescriptor(files=("/w/a.parquet",), rows=4, resolution=1)),
    (
        "iceberg_table",
        RegistrationDescriptor(files=("/w/a.parquet",), snapshot_id=2**62, added=1),
    ),
    ("hash_index", HashIndexDescriptor(hashes_before=0, hashes_after=2)),
    ("staged_chunks", ChunksDescriptor(ingested=DONE)),
]
#: What each asset stored before the descriptors were typed.
LEGACY = {
    "delta_inventory": {"delta": "/d/pending/x.parquet", "rows": 3, "source": "pending delta"},
    "staged_chunks": {"chunks": ["/s/chunk_0.parquet"], "rows": 3, "chunk_size": 10},
    "ndjson_items": {
        "buckets": [["8001fffffffffff", "2020"]],
        **dict.fromkeys(("rows", "fetched", "items", "rows_out"), 2),
        **dict.fromkeys(("missing", "failed", "rejected"), 0),
    },
    "warehouse_parquets": {"files": ["/w/a.parquet"], "rows": 2},
    "iceberg_table": {"files": ["/w/a.parquet"], "snapshot_id": 7, "added": 1, "skipped": 0},
    "hash_index": {"hashes_before": 0, "hashes_after": 2},
}
TYPES = {
    "delta_inventory": DeltaDescriptor,
    "staged_chunks": ChunksDescriptor,
    "ndjson_items": NdjsonDescriptor,
    "warehouse_parquets": WarehouseDescriptor,
    "iceberg_table": RegistrationDescriptor,
    "hash_index": HashIndexDescriptor,
}


@pytest.fixture
def manager(tmp_path) -> StagingIOManager:
    return StagingIOManager(staging_root=str(tmp_path / "staging"))


def _load(manager: StagingIOManager, asset: str, cls: type[Descriptor]) -> Descriptor:
    context = build_input_context(
        asset_key=asset,
        partition_key=DATE,
        asset_partitions_def=daily_partitions,
        dagster_type=PythonObjectDagsterType(cls),
    )
    return manager.load_input(context)


@pytest.mark.parametrize(("asset", "descriptor"), EXAMPLES)
def test_descriptors_round_trip_through_the_io_manager(manager, asset, descriptor) -> None:
    context = build_output_context(
        asset_key=asset, partition_key=DATE, asset_partitions_def=daily_partitions
    )
    manager.handle_output(context, descriptor)
    uri = layout.asset_descriptor(layout.staging_for(manager.staging_root, DATE), asset)
    stored = json.loads(storage.read_bytes(uri))
    assert stored["type"] == type(descriptor).__name__
    assert _load(manager, asset, type(descriptor)) == descriptor


@pytest.mark.parametrize("asset", sorted(LEGACY))
def test_an_old_untyped_descriptor_is_converted(manager, asset) -> None:
    uri = layout.asset_descriptor(layout.staging_for(manager.staging_root, DATE), asset)
    storage.write_bytes(uri, json.dumps(LEGACY[asset]).encode())
    loaded = _load(manager, asset, TYPES[asset])
    assert isinstance(loaded, TYPES[asset])
    assert loaded.ingested is None
    for key, value in LEGACY[asset].items():
        got = getattr(loaded, key)
        expected = (
            tuple(tuple(v) if isinstance(v, list) else v for v in value)
            if isinstance(value, list)
            else value
        )
        assert got == expected, key


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"rows": 3}).encode(),  # an old descriptor missing keys
        json.dumps({"type": "NoSuchDescriptor", "version": 1}).encode(),
        json.dumps({"type": "ChunksDescriptor", "version": 99}).encode(),
        json.dumps({"type": "DeltaDescriptor", "version": 1}).encode(),  # another asset's
    ],
)
def test_an_unreadable_descriptor_is_treated_as_absent(manager, raw) -> None:
    uri = layout.asset_descriptor(layout.staging_for(manager.staging_root, DATE), "staged_chunks")
    storage.write_bytes(uri, raw)
    with pytest.raises(Failure, match="materialize staged_chunks for 2026-04-27 again"):
        _load(manager, "staged_chunks", ChunksDescriptor)


def test_a_missing_descriptor_asks_for_the_upstream(manager) -> None:
    with pytest.raises(Failure, match="materialize staged_chunks for 2026-04-27 first"):
        _load(manager, "staged_chunks", ChunksDescriptor)
