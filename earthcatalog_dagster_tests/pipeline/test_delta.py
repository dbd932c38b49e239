"""Daily delta production: anti-join, carry-over of older pending deltas, reuse, errors, CLI."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pytest

from earthcatalog_dagster import layout
from earthcatalog_dagster.cli import main
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import HashIndex, hash_ids, write_hash_index
from earthcatalog_dagster.core.inventory import ids_of_keys
from earthcatalog_dagster.pipeline.delta import (
    DELTA_SCHEMA,
    DeltaSourceNotFound,
    daily_delta,
    dedupe_by_key,
    older_pending_deltas,
)
from earthcatalog_dagster.synthetic import SOURCE_BUCKET, write_inventory
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2

DAY_3 = DAY_2 + dt.timedelta(days=1)


def _keys(tag: str, n: int) -> list[str]:
    prefix = "velocity_image_pair/landsatOLI/v02/N70W040"
    return [f"{prefix}/{tag}_pair_{i:04d}.stac.json" for i in range(n)]


def _refs(keys: list[str], date: dt.date, extra: tuple[str, ...] = ()) -> pa.Table:
    """An inventory listing of ``keys`` (plus non-item ``extra`` keys) modified on ``date``."""
    all_keys = [*keys, *extra]
    when = dt.datetime(date.year, date.month, date.day, 6, tzinfo=dt.UTC)
    return pa.table(
        {
            "bucket": [SOURCE_BUCKET] * len(all_keys),
            "key": all_keys,
            "last_modified_date": pa.array([when] * len(all_keys), pa.timestamp("ms", tz="UTC")),
        }
    )


def _index(home, keys: list[str]) -> HashIndex:
    index = HashIndex.from_ids(ids_of_keys(pa.array(keys)))
    write_hash_index(index, home.warehouse_hash)
    return index


def _delta_keys(home, date) -> list[str]:
    return storage.read_parquet(layout.delta_pending(home.delta_prefix, date))["key"].to_pylist()


def _run(home, date, **kwargs):
    return daily_delta(
        layout.inventory_manifest(home.inventory, date),
        delta_prefix=home.delta_prefix,
        date=date,
        hash_index_uri=home.warehouse_hash,
        **kwargs,
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_anti_join_against_the_index(home, fmt) -> None:
    keys = _keys("a", 50)
    refs = _refs(keys, DAY_1, ("x/file.nc", "x/thumb.png"))
    write_inventory(home.inventory, DAY_1, refs, fmt=fmt)
    _index(home, keys[:20])

    result = _run(home, DAY_1)
    assert (result.source_rows, result.already_ingested, result.rows) == (50, 20, 30)
    assert not result.reused and result.carried == 0
    delta = storage.read_parquet(result.uri)
    assert delta.schema.equals(DELTA_SCHEMA)
    assert sorted(delta["key"].to_pylist()) == sorted(keys[20:])
    assert delta["bucket"].to_pylist() == [SOURCE_BUCKET] * 30
    assert delta["id_hash"].to_pylist() == hash_ids(ids_of_keys(delta["key"])).to_pylist()


def test_missing_manifest_names_the_paths(home) -> None:
    with pytest.raises(DeltaSourceNotFound) as raised:
        _run(home, DAY_1)
    message = str(raised.value)
    assert layout.inventory_manifest(home.inventory, DAY_1) in message
    assert layout.delta_pending(home.delta_prefix, DAY_1) in message
    assert "daily delta" in message
    assert isinstance(raised.value, FileNotFoundError)
    assert not storage.exists(layout.delta_pending(home.delta_prefix, DAY_1))


def test_existing_delta_is_reused_without_the_inventory_and_pruned(home) -> None:
    keys = _keys("a", 40)
    manifest = write_inventory(home.inventory, DAY_1, _refs(keys, DAY_1))
    first = _run(home, DAY_1)
    before = storage.read_parquet(first.uri)

    # Idempotent: the same delta again, and the inventory is not even needed any more.
    storage.delete(manifest)
    again = _run(home, DAY_1)
    assert again.reused and again.rows == 40 and again.pruned == 0
    assert storage.read_parquet(again.uri).equals(before)

    # Ids indexed meanwhile (e.g. carried into and ingested with another date) are pruned.
    _index(home, keys[:15])
    pruned = _run(home, DAY_1)
    assert pruned.reused and pruned.pruned == 15 and pruned.rows == 25
    assert sorted(_delta_keys(home, DAY_1)) == sorted(keys[15:])


def test_rebuilt_delta_is_identical(home) -> None:
    keys = _keys("a", 30)
    write_inventory(home.inventory, DAY_1, _refs(keys, DAY_1), fmt="csv")
    first = storage.read_bytes(_run(home, DAY_1).uri)
    storage.delete(layout.delta_pending(home.delta_prefix, DAY_1))
    assert storage.read_bytes(_run(home, DAY_1).uri) == first


def test_older_pending_deltas_are_carried_over(home) -> None:
    day1, day2, day3 = _keys("d1", 30), _keys("d2", 20), _keys("d3", 10)
    write_inventory(home.inventory, DAY_1, _refs(day1, DAY_1))
    # Day 2's inventory is a full listing: it lists 10 of day 1's keys again.
    write_inventory(home.inventory, DAY_2, _refs(day2 + day1[:10], DAY_2))
    write_inventory(home.inventory, DAY_3, _refs(day3, DAY_3))

    assert _run(home, DAY_1).rows == 30  # never ingested: stays pending
    # Meanwhile 5 of day 1's items were ingested some other way.
    _index(home, day1[:5])
    second = _run(home, DAY_2)
    assert second.carried_from == (layout.delta_pending(home.delta_prefix, DAY_1),)
    assert second.carried == 25
    assert second.duplicates_dropped == 5  # day1[5:10]: in the inventory and carried
    assert sorted(_delta_keys(home, DAY_2)) == sorted(day2 + day1[5:])
    assert len(_delta_keys(home, DAY_2)) == len(set(_delta_keys(home, DAY_2)))

    # Day 3 carries both older pending deltas, each key once.
    third = _run(home, DAY_3)
    assert len(third.carried_from) == 2
    assert sorted(_delta_keys(home, DAY_3)) == sorted(day3 + day2 + day1[5:])
    # Dates whose ingest is under way (a backfill's other runs) are left to those runs.
    storage.delete(third.uri)
    in_flight = _run(home, DAY_3, in_flight={DAY_2.isoformat()})
    assert in_flight.left_in_flight == (layout.delta_pending(home.delta_prefix, DAY_2),)
    assert sorted(_delta_keys(home, DAY_3)) == sorted(day3 + day1[5:])
    # ... and none at all when told so.
    storage.delete(third.uri)
    assert _run(home, DAY_3, carry_over=False).carried == 0
    assert sorted(_delta_keys(home, DAY_3)) == sorted(day3)


def test_older_pending_deltas_listing(home) -> None:
    names = (
        "delta_2026-04-20.parquet",
        "delta_2026-04-25.parquet",
        "delta_2026-04-27.parquet",
        "delta_2026-04-30.parquet",
        "notes.parquet",
        "delta_2026-13-01.parquet",
    )
    for name in names:
        storage.write_bytes(layout.join(home.delta_prefix, "pending", name), b"x")
    found = older_pending_deltas(home.delta_prefix, DAY_1)
    assert [layout.parse_delta_date(u) for u in found] == ["2026-04-20", "2026-04-25"]


def test_dedupe_by_key_keeps_the_first_row() -> None:
    keys = ["a/x.stac.json", "b/x.stac.json", "a/y.stac.json", "a/x.stac.json", "c/z.stac.json"]
    buckets = ["b1", "b1", "b1", "b1", "b1"]
    table = pa.Table.from_arrays(
        [pa.array(buckets), pa.array(keys), hash_ids(ids_of_keys(pa.array(keys)))],
        schema=DELTA_SCHEMA,
    )
    deduped, dropped = dedupe_by_key(table)
    # Same id under two keys (a/x, b/x) is two objects: both kept.
    assert dropped == 1
    assert deduped["key"].to_pylist() == keys[:3] + keys[4:]
    other_bucket = table.set_column(0, "bucket", pa.array(["b1", "b1", "b1", "b2", "b1"]))
    assert dedupe_by_key(other_bucket)[1] == 0
    assert dedupe_by_key(DELTA_SCHEMA.empty_table())[1] == 0


def test_cli_daily_delta(home, capsys) -> None:
    keys = _keys("a", 12)
    manifest = write_inventory(home.inventory, DAY_1, _refs(keys, DAY_1))
    _index(home, keys[:2])
    argv = [
        "daily-delta",
        manifest,
        "--warehouse-hash",
        home.warehouse_hash,
        "--delta-prefix",
        home.delta_prefix,
        "--date",
        DAY_1.isoformat(),
    ]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rows"] == 10 and out["already_ingested"] == 2 and out["reused"] is False
    assert out["delta"] == layout.delta_pending(home.delta_prefix, DAY_1)
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["reused"] is True

    missing = layout.inventory_manifest(home.inventory, DAY_2)
    assert main([*argv[:1], missing, *argv[2:6], "--date", DAY_2.isoformat()]) == 2
    err = capsys.readouterr().err
    assert missing in err and layout.delta_pending(home.delta_prefix, DAY_2) in err


def test_an_aliased_key_is_never_in_a_delta_again(home) -> None:
    """A key whose item id differs from its file name is excluded through the alias file,
    both from a fresh delta and from a reused one; the index keeps only item ids."""
    from earthcatalog_dagster.core.hash_index import count_hash_index, merge_aliases

    keys = _keys("a", 10)
    renamed = keys[3]  # its item's id is "renamed_item", not the file name
    write_inventory(home.inventory, DAY_1, _refs(keys, DAY_1))
    first = _run(home, DAY_1)
    assert first.rows == 10  # nothing ingested yet

    # The run ingested keys[:5]; keys[3]'s item sits in the index under its own id.
    ingested_ids = [layout.item_id_from_key(k) for k in keys[:5] if k != renamed]
    write_hash_index(HashIndex.from_ids([*ingested_ids, "renamed_item"]), home.warehouse_hash)
    # Without its alias the renamed key would be fetched again:
    pruned = _run(home, DAY_1)
    assert pruned.reused and pruned.pruned == 4 and renamed in _delta_keys(home, DAY_1)

    merge_aliases(home.warehouse_hash, ids_of_keys(pa.array([renamed])))
    again = _run(home, DAY_1)  # reuse path prunes it now
    assert again.pruned == 1 and sorted(_delta_keys(home, DAY_1)) == sorted(keys[5:])

    storage.delete(layout.delta_pending(home.delta_prefix, DAY_1))
    fresh = _run(home, DAY_1)  # inventory path excludes it
    assert (fresh.source_rows, fresh.already_ingested, fresh.rows) == (10, 5, 5)
    assert sorted(_delta_keys(home, DAY_1)) == sorted(keys[5:])

    # An older pending delta holding the key is not carried over either.
    storage.write_parquet(
        pa.table({"bucket": [SOURCE_BUCKET], "key": [renamed]}),
        layout.delta_pending(home.delta_prefix, DAY_1 - dt.timedelta(days=1)),
    )
    write_inventory(home.inventory, DAY_2, _refs([], DAY_2))
    carried = _run(home, DAY_2)
    assert carried.carried == 5  # DAY_1's five, not the aliased key of the day before
    assert sorted(_delta_keys(home, DAY_2)) == sorted(keys[5:])
    assert count_hash_index(home.warehouse_hash) == 5  # item ids only
