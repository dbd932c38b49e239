"""Staged rows: spilled per batch, ordered from their keys, gathered back a group at a time.

The oracle is the rows held in memory: a gather must return exactly what a ``take`` of
all batches concatenated returns.
"""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pyarrow as pa
import pytest

from earthcatalog_dagster.core.buckets import (
    KEY_COLUMNS,
    bucket_order,
    explode_to_cells,
    split_buckets,
)
from earthcatalog_dagster.core.items import parse_items
from earthcatalog_dagster.core.schema import WAREHOUSE_SCHEMA
from earthcatalog_dagster.pipeline import staging
from earthcatalog_dagster.pipeline.staging import StagedRows, read_ahead, spill_rows
from earthcatalog_dagster.synthetic import make_item


def _batches(seed: int, sizes: list[int]) -> list[pa.Table]:
    """Exploded rows of synthetic items, one table per batch, in the warehouse schema.

    Each batch after the first also holds copies of two items of the batch before it,
    with other contents: rows equal on every sort key, in different batches.
    """
    rng = np.random.default_rng(seed)
    out: list[pa.Table] = []
    previous: list[dict] = []
    for size in sizes:
        items = [make_item(rng) for _ in range(size)]
        for copied in previous[:2]:
            twin = orjson.loads(orjson.dumps(copied))
            twin["properties"]["percent_valid_pixels"] = len(out)
            items.append(twin)
        parsed = parse_items([orjson.dumps(i) for i in items], [i["id"] for i in items])
        out.append(explode_to_cells(parsed, 1).cast(WAREHOUSE_SCHEMA))
        previous = items
    return out


def _staged(batches: list[pa.Table], folder: str, *, sort: bool) -> tuple[StagedRows, pa.Table]:
    """The batches spilled (each sorted in warehouse order first when ``sort``, as the
    workers do), and all their rows in memory in the same order."""
    staged = StagedRows()
    held = []
    for batch in batches:
        rows = batch.take(pa.array(bucket_order(batch).indices)) if sort else batch
        staged.add(spill_rows(rows, folder), rows.select(list(KEY_COLUMNS)))
        held.append(rows)
    return staged, pa.concat_tables(held)


@pytest.mark.parametrize("sort", [True, False])
def test_gather_returns_the_rows_at_the_positions_in_their_order(tmp_path, sort) -> None:
    staged, held = _staged(_batches(11, [30, 1, 45, 20]), str(tmp_path), sort=sort)
    assert staged.num_rows == held.num_rows and len(staged.files) == 4
    rng = np.random.default_rng(12)
    for positions in (
        rng.permutation(held.num_rows),  # every row, shuffled
        rng.choice(held.num_rows, size=17, replace=False),  # scattered rows
        np.arange(5, 60),  # one run across two files
        np.array([held.num_rows - 1]),
    ):
        got = staged.gather(positions)
        assert got.schema.equals(WAREHOUSE_SCHEMA)
        assert got.equals(held.take(pa.array(positions)))
        assert all(column.num_chunks == 1 for column in got.columns)


def test_groups_of_whole_buckets_are_the_buckets_of_all_rows_in_memory(tmp_path) -> None:
    # The write phase: each batch spilled in warehouse order, every row ordered from the
    # keys alone, whole buckets gathered a few at a time. The oracle is the path that held
    # every row: ``split_buckets`` of all batches concatenated, ties in batch order.
    batches = _batches(13, [25, 40, 33])
    staged, _ = _staged(batches, str(tmp_path), sort=True)
    order = bucket_order(staged.key_table())
    expected = list(split_buckets(pa.concat_tables(batches)))
    assert order.keys == [key for key, _ in expected]
    cuts = [0, *order.ends[:: max(1, len(order) // 4)].tolist(), staged.num_rows]
    got = []
    for start, end in itertools.pairwise(sorted(set(cuts))):
        rows = staged.gather(order.indices[start:end])
        got += [
            rows.slice(s - start, e - s)
            for s, e in zip(order.starts.tolist(), order.ends.tolist(), strict=True)
            if start <= s < end
        ]
    assert len(got) == len(expected)
    for bucket, (_, want) in zip(got, expected, strict=True):
        assert bucket.equals(want)


def test_no_rows_spill_nothing(tmp_path) -> None:
    empty = WAREHOUSE_SCHEMA.empty_table()
    assert spill_rows(empty, str(tmp_path)) is None
    staged = StagedRows()
    staged.add(None, empty.select(list(KEY_COLUMNS)))
    assert staged.num_rows == 0 and staged.key_table().num_rows == 0
    assert staged.gather(np.array([], dtype=np.int64)).num_rows == 0
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("sizes", "read", "large"),
    [
        ([2_000, 2_000, 2_000, 2_000], 3, True),  # 6,000 rows read: past the 4,000
        ([2_000, 2_000], 2, False),  # the whole run, and it is small
        ([4_001, 10], 1, True),
        ([], 0, False),
    ],
)
def test_read_ahead_reads_just_far_enough_to_decide(sizes, read, large, monkeypatch) -> None:
    monkeypatch.setattr(staging, "PARALLEL_AFTER_ROWS", 4_000)
    tables = [pa.table({"key": [f"{n}-{i}" for i in range(n)]}) for n in sizes]
    stream = iter(tables)
    ahead, is_large = read_ahead(stream)
    assert [t.num_rows for t in ahead] == sizes[:read]
    assert is_large is large
    assert [t.num_rows for t in stream] == sizes[read:]  # the rest is still to come
