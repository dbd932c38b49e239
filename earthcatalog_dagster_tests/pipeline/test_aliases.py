"""Items whose id differs from their file name, and items with impossible geometry, on the
staged path (Phase 1 exclusion, Phase 2 staging, Phase 3 output, the alias merge).

Hand-written items on a local source root: the oracle is the items written here.
"""

from __future__ import annotations

import orjson
import pyarrow as pa

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import (
    HashIndex,
    count_hash_index,
    load_aliases,
    load_ingested_keys,
    write_hash_index,
)
from earthcatalog_dagster.core.items import MISMATCH_SCHEMA
from earthcatalog_dagster.pipeline import phases
from earthcatalog_dagster.pipeline.hash_sync import merge_staged_aliases, read_staged_aliases

BUCKET = "its-live-data"
PREFIX = "velocity_image_pair/landsatOLI/v02/N60W140"


def _item(item_id: str, lat: float = 60.0) -> dict:
    ring = [[-140.0, lat], [-139.0, lat], [-139.0, lat + 1.0], [-140.0, lat + 1.0]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": item_id,
        "geometry": {"type": "Polygon", "coordinates": [[*ring, ring[0]]]},
        "bbox": [-140.0, lat, -139.0, lat + 1.0],
        "properties": {"datetime": "2021-07-01T00:00:00.000000Z", "platform": "LC08"},
    }


# key file name → item: "b" lives under another name, "bad" lies beyond the pole.
OBJECTS = {
    "a": _item("a"),
    "b_renamed": _item("b"),
    "bad": _item("bad", lat=95.0),
}


def _source(tmp_path) -> tuple[str, pa.Table]:
    """The objects under a local source root, and their (bucket, key) refs."""
    root = str(tmp_path / "source")
    keys = [f"{PREFIX}/{name}.stac.json" for name in OBJECTS]
    for key, item in zip(keys, OBJECTS.values(), strict=True):
        storage.write_bytes(layout.source_object(BUCKET, key, root), orjson.dumps(item))
    return root, pa.table({"bucket": [BUCKET] * len(keys), "key": keys})


def _warehouse_ids(files: list[str]) -> list[str]:
    return sorted(
        i for f in files for i in storage.read_parquet(f, columns=["id"])["id"].to_pylist()
    )


def test_phase_2_stages_aliases_and_rejects_never_reach_the_warehouse(tmp_path) -> None:
    root, refs = _source(tmp_path)
    staging = str(tmp_path / "staging" / "delta_2026-04-27")
    warehouse = str(tmp_path / "warehouse")
    index_uri = str(tmp_path / "warehouse_id_hashes.parquet")
    chunk = layout.chunk_file(staging, 0)
    storage.write_parquet(refs, chunk)

    result = phases.ingest_chunk(chunk, staging, source_root=root, resolution=1)
    assert (result.rows, result.items, result.rejected, result.aliased) == (3, 2, 1, 1)
    staged = read_staged_aliases(staging)
    assert staged.schema.equals(MISMATCH_SCHEMA)
    assert staged.to_pylist() == [{"key_id": "b_renamed", "item_id": "b"}]
    assert storage.exists(layout.aliases_file(staging, 0))
    # The marker keeps the count: a rerun skips the chunk and reports the same.
    again = phases.ingest_chunk(chunk, staging, source_root=root, resolution=1)
    assert again.skipped and again.aliased == 1

    # Phase 3: the rejected item is in no warehouse file; each good item once per cell.
    buckets = [(cell, year) for cell, year, _rows in result.buckets]
    compacted = phases.compact_buckets(staging, buckets, warehouse=warehouse, token="t")
    files = [f for bucket in compacted for f in bucket.files]
    ids = _warehouse_ids(files)
    cells = {cell for cell, _year, _rows in result.buckets}  # "a" and "b" share a footprint
    assert files and ids == sorted(["a", "b"] * len(cells))
    rejects = storage.read_parquet(layout.rejects_file(staging, 0)).to_pylist()
    assert [(r["key"].rsplit("/", 1)[-1], r["outcome"]) for r in rejects] == [
        ("bad.stac.json", "rejected")
    ]
    assert "latitude" in rejects[0]["reason"]

    # The commit indexes item ids, then merges the staged aliases (idempotent).
    write_hash_index(HashIndex.from_ids(sorted(set(ids))), index_uri)
    assert merge_staged_aliases(staging, index_uri).added == 1
    assert merge_staged_aliases(staging, index_uri).added == 0
    assert len(load_aliases(index_uri)) == 1 and count_hash_index(index_uri) == 2

    # Phase 1 of a later run over the same listing: only the rejected key is fetched again.
    listing = str(tmp_path / "listing.parquet")
    storage.write_parquet(refs, listing)
    later = str(tmp_path / "staging" / "delta_2026-04-28")
    plan = phases.write_chunks(listing, later, exclude=load_ingested_keys(index_uri))
    assert (plan.rows, plan.excluded) == (1, 2)
    chunked = storage.read_parquet(plan.chunks[0])["key"].to_pylist()
    assert chunked == [f"{PREFIX}/bad.stac.json"]


def test_a_rerun_of_a_chunk_without_mismatches_leaves_no_stale_alias_file(tmp_path) -> None:
    root, refs = _source(tmp_path)
    staging = str(tmp_path / "staging")
    chunk = layout.chunk_file(staging, 0)
    storage.write_parquet(refs, chunk)
    stale = layout.aliases_file(staging, 0)
    storage.write_parquet(
        pa.table({"key_id": ["old"], "item_id": ["older"]}, schema=MISMATCH_SCHEMA), stale
    )
    storage.write_parquet(refs.filter(pa.array([True, False, False])), chunk)  # only "a"
    result = phases.ingest_chunk(chunk, staging, source_root=root, resolution=1)
    assert result.aliased == 0 and not storage.exists(stale)
    assert read_staged_aliases(staging).num_rows == 0
