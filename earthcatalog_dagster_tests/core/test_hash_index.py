"""The hash index: digests, set semantics, and the operators' Parquet format."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from earthcatalog_dagster.core import hash_index as hx
from earthcatalog_dagster.core.hash_index import (
    HASH_SEED,
    HASH_TYPE,
    HashIndex,
    MergeStats,
    count_hash_index,
    hash_id,
    hash_ids,
    load_hash_index,
    load_hash_index_and_state,
    merge_ids_into_index,
    read_index_state,
    write_hash_index,
)

ITEM_ID = (
    "LC08_L1GT_001005_20130411_20200912_02_T2_X_"
    "LC08_L1GT_001005_20130427_20200912_02_T2_G0120V02_P006"
)

# Digests that trip up byte-string handling: NumPy strips trailing NULs from S scalars,
# signed-char comparison would misorder 0x80 vs 0x7f, leading zeros sort first.
EDGE_DIGESTS = [
    b"\x00" * 16,
    b"\x00" * 15 + b"\x01",
    b"\x01" + b"\x00" * 15,
    b"\x01" + b"\x00" * 14 + b"\x01",
    b"a" + b"\x00" * 15,
    b"a\x00\x01" + b"\x00" * 13,
    b"\x7f" + b"\xff" * 15,
    b"\x80" + b"\x00" * 15,
    b"\xff" * 15 + b"\x00",
    b"\xff" * 16,
    b"\x00\x00\x00\xab" + b"\xcd" * 12,
]


def _oracle_digest(item_id: str) -> bytes:
    return xxhash.xxh3_128(item_id.encode(), seed=42).digest()


def _random_digests(rng: np.random.Generator, n: int) -> list[bytes]:
    """Random digests, a quarter ending and a quarter starting with runs of zero bytes."""
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    for row in range(n):
        if row % 4 == 1:
            raw[row, 16 - 1 - row % 8 :] = 0
        elif row % 4 == 2:
            raw[row, : 1 + row % 8] = 0
    return [bytes(r) for r in raw] + EDGE_DIGESTS


def _values(index: HashIndex) -> list[bytes]:
    """The index's digests as exact 16-byte values, from the raw buffer."""
    raw = index.hashes.tobytes()
    return [raw[i : i + 16] for i in range(0, len(raw), 16)]


def _ids(n: int, prefix: str = "item") -> list[str]:
    return [f"{prefix}_{i:07d}_G0120V02_P{i % 1000:03d}" for i in range(n)]


# --- hashing ----------------------------------------------------------------------------------


def test_known_id_digest_survives_the_whole_path(tmp_path: Path) -> None:
    expected = _oracle_digest(ITEM_ID)
    assert HASH_SEED == 42
    assert pa.binary(16) == HASH_TYPE
    assert hash_id(ITEM_ID) == expected

    digests = hash_ids([ITEM_ID])
    assert digests.type == pa.binary(16)
    assert digests.to_pylist() == [expected]

    uri = str(tmp_path / "warehouse_id_hashes.parquet")
    write_hash_index(HashIndex.from_hashes(digests), uri)
    assert pq.read_table(uri).column("id_hash").to_pylist() == [expected]

    loaded = load_hash_index(uri)
    assert loaded.hashes.tobytes() == expected
    assert expected in loaded
    assert loaded.contains(hash_ids([ITEM_ID, ITEM_ID + "x"])).tolist() == [True, False]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda ids: ids, id="list"),
        pytest.param(lambda ids: tuple(ids), id="tuple"),
        pytest.param(lambda ids: pa.array(ids, pa.string()), id="string"),
        pytest.param(lambda ids: pa.array(ids, pa.large_string()), id="large_string"),
        pytest.param(lambda ids: pa.array(ids, pa.string_view()), id="string_view"),
        pytest.param(lambda ids: pa.array(ids).dictionary_encode(), id="dictionary"),
        pytest.param(lambda ids: pa.array([s.encode() for s in ids], pa.binary()), id="binary"),
        pytest.param(
            lambda ids: pa.chunked_array(
                [pa.array(ids[:3]), pa.array([], pa.string()), pa.array(ids[3:])]
            ),
            id="chunked",
        ),
        pytest.param(lambda ids: pa.array(["pad", *ids, "pad"]).slice(1, len(ids)), id="sliced"),
    ],
)
def test_hash_ids_matches_xxhash_for_every_input_form(make) -> None:
    ids = [ITEM_ID, "S2A_MSIL1C_20200101", "glacier_ñ_åäö_日本", "", "dup", "dup"]
    digests = hash_ids(make(ids))
    assert isinstance(digests, pa.FixedSizeBinaryArray)
    assert digests.type == pa.binary(16)
    assert digests.to_pylist() == [_oracle_digest(i) for i in ids]


def test_hash_ids_in_batches_across_chunks(monkeypatch) -> None:
    monkeypatch.setattr(hx, "_HASH_BATCH", 3)
    ids = _ids(20)
    chunked = pa.chunked_array([pa.array(ids[:7]), pa.array(ids[7:8]), pa.array(ids[8:])])
    expected = [_oracle_digest(i) for i in ids]
    assert hash_ids(chunked).to_pylist() == expected
    assert hash_ids(pa.array(["x", *ids]).slice(1)).to_pylist() == expected


def test_hash_ids_empty_and_invalid_inputs() -> None:
    for empty in ([], pa.array([], pa.string()), pa.chunked_array([], pa.string())):
        out = hash_ids(empty)
        assert len(out) == 0 and out.type == pa.binary(16)
    with pytest.raises(ValueError, match="null"):
        hash_ids(pa.array(["a", None]))
    with pytest.raises(TypeError):
        hash_ids("one-id-not-a-list")
    with pytest.raises(TypeError):
        hash_ids(pa.array([1, 2]))


# --- the in-memory index ----------------------------------------------------------------------


def test_empty_index() -> None:
    empty = HashIndex.empty()
    probes = hash_ids(["a", "b"])
    assert len(empty) == 0
    assert empty.contains(probes).tolist() == [False, False]
    assert empty.anti_join(probes).tolist() == [True, True]
    assert empty.contains(np.empty(0, "S16")).shape == (0,)
    assert empty.to_arrow().schema == pa.schema([pa.field("id_hash", pa.binary(16))])
    assert empty.to_arrow().num_rows == 0
    assert HashIndex.from_hashes([]).hashes.shape == (0,)


def test_edge_digests_keep_all_16_bytes_and_unsigned_order() -> None:
    index = HashIndex.from_hashes(list(reversed(EDGE_DIGESTS)))
    assert _values(index) == sorted(EDGE_DIGESTS)  # Python bytes order = unsigned memcmp
    assert index.to_arrow().column("id_hash").to_pylist() == sorted(EDGE_DIGESTS)
    assert index.contains(EDGE_DIGESTS).all()
    # Near misses of zero-padded digests differ only in a trailing byte.
    near = [b"\x00" * 15 + b"\x02", b"a" + b"\x00" * 14 + b"\x01", b"\x01" + b"\x00" * 14 + b"\x02"]
    assert not index.contains(near).any()
    assert not index.contains([b"\x00" * 15 + b"\x02"]).any()


@pytest.mark.parametrize("n_probes", [50, 3_000])  # below and above the probe-sorting cutoff
def test_contains_and_anti_join_match_a_set_oracle(n_probes: int) -> None:
    rng = np.random.default_rng(n_probes)
    universe = _random_digests(rng, 4_000)
    members = universe[::2]
    oracle = set(members)
    index = HashIndex.from_hashes(members)
    assert len(index) == len(oracle)

    py_rng = random.Random(n_probes)
    probes = [py_rng.choice(universe) for _ in range(n_probes)]  # present, absent, repeats
    expected = np.array([p in oracle for p in probes])
    assert 0 < expected.sum() < n_probes

    forms = {
        "list": probes,
        "arrow": pa.array(probes, pa.binary(16)),
        "chunked": pa.chunked_array(
            [pa.array(probes[:7], pa.binary(16)), pa.array(probes[7:], pa.binary(16))]
        ),
        "sliced": pa.array([b"\x00" * 16, *probes], pa.binary(16)).slice(1),
        "S16": np.frombuffer(b"".join(probes), dtype="S16"),
        "V16": np.frombuffer(b"".join(probes), dtype="V16"),
        "uint8": np.frombuffer(b"".join(probes), dtype=np.uint8).reshape(-1, 16),
        "variable binary": pa.array(probes, pa.binary()),
    }
    for name, form in forms.items():
        np.testing.assert_array_equal(index.contains(form), expected, err_msg=name)
        np.testing.assert_array_equal(index.anti_join(form), ~expected, err_msg=name)
        np.testing.assert_array_equal(index.missing_mask(form), ~expected, err_msg=name)


def test_hash_inputs_are_validated() -> None:
    index = HashIndex.from_hashes(EDGE_DIGESTS)
    with pytest.raises(ValueError):
        index.contains([b"short"])
    with pytest.raises(ValueError):
        index.contains(pa.array([b"short"], pa.binary()))
    with pytest.raises(ValueError, match="null"):
        index.contains(pa.array([EDGE_DIGESTS[0], None], pa.binary(16)))
    with pytest.raises(TypeError):
        index.contains(np.zeros(4, dtype=np.int64))
    with pytest.raises(TypeError):
        index.contains(b"\x00" * 16)
    assert b"\x00" * 16 in index and b"short" not in index and "x" not in index


def test_constructor_requires_sorted_unique_and_never_freezes_the_callers_array() -> None:
    raw = np.frombuffer(b"".join(sorted(EDGE_DIGESTS)), dtype="S16").copy()
    index = HashIndex(raw)
    assert raw.flags.writeable  # the caller's array is left alone...
    raw[0] = b"\xff" * 16
    assert _values(index) == sorted(EDGE_DIGESTS)  # ...and changing it does not leak in
    assert not index.hashes.flags.writeable
    with pytest.raises(ValueError, match="sorted"):
        HashIndex(np.frombuffer(b"".join(reversed(sorted(EDGE_DIGESTS))), dtype="S16"))
    with pytest.raises(ValueError, match="sorted"):
        HashIndex(np.frombuffer(EDGE_DIGESTS[0] * 2, dtype="S16"))


def test_merge_is_a_sorted_unique_union_and_idempotent() -> None:
    rng = np.random.default_rng(7)
    universe = _random_digests(rng, 3_000)
    a, b = universe[:2_000], universe[1_000:]  # overlapping halves
    index = HashIndex.from_hashes(a)
    before = _values(index)

    batch = b + b[:100]  # duplicates inside the batch too
    merged = index.merge(batch)
    assert _values(merged) == sorted(set(a) | set(b))
    assert len(merged) == len(set(universe))
    assert _values(index) == before  # immutable: the original is unchanged
    assert not merged.hashes.flags.writeable

    again = merged.merge(batch)
    assert _values(again) == _values(merged)
    assert merged.merge(merged.hashes) is merged  # nothing new: same index back
    assert merged.merge([]) is merged

    # Keys before the first and after the last entry, and into an empty index.
    ends = HashIndex.from_hashes([b"\x10" * 16, b"\x20" * 16]).merge(
        [b"\x30" * 16, b"\x00" * 16, b"\x15" * 16]
    )
    assert _values(ends) == [b"\x00" * 16, b"\x10" * 16, b"\x15" * 16, b"\x20" * 16, b"\x30" * 16]
    assert _values(HashIndex.empty().merge(batch)) == sorted(set(b))
    assert _values(index.union(HashIndex.from_hashes(b))) == _values(merged)


def test_from_ids_and_arrow_export() -> None:
    ids = _ids(500)
    index = HashIndex.from_ids(ids + ids[:10])
    assert len(index) == 500
    assert set(index.to_arrow().column("id_hash").to_pylist()) == {_oracle_digest(i) for i in ids}
    assert index.to_arrow_array().type == pa.binary(16)


# --- files ------------------------------------------------------------------------------------


def test_written_file_is_the_operators_format(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(hx, "ROW_GROUP_SIZE", 1_000)  # several row groups from few rows
    rng = np.random.default_rng(1)
    index = HashIndex.from_hashes(_random_digests(rng, 4_500))
    uri = str(tmp_path / "idx.parquet")
    write_hash_index(index, uri)

    parquet = pq.ParquetFile(uri)
    assert parquet.schema_arrow.names == ["id_hash"]
    assert parquet.schema_arrow.field("id_hash").type == pa.binary(16)
    assert parquet.schema.column(0).physical_type == "FIXED_LEN_BYTE_ARRAY"
    meta = parquet.metadata
    assert meta.num_columns == 1 and meta.num_rows == len(index)
    assert meta.num_row_groups == 5
    previous_max = None
    for group in range(meta.num_row_groups):
        column = meta.row_group(group).column(0)
        assert column.compression == "ZSTD"
        assert column.statistics is not None and column.statistics.has_min_max
        assert column.statistics.min < column.statistics.max
        if previous_max is not None:
            assert previous_max < column.statistics.min  # row groups do not overlap
        previous_max = column.statistics.max

    stored = pq.read_table(uri).column("id_hash").to_pylist()
    assert stored == sorted(set(stored))
    assert stored == _values(index)
    assert _values(load_hash_index(uri)) == _values(index)


def test_round_trip_and_missing_index(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope" / "idx.parquet")
    assert len(load_hash_index(missing)) == 0
    assert read_index_state(missing) == {} and count_hash_index(missing) == 0

    uri = str(tmp_path / "idx.parquet")
    write_hash_index(HashIndex.empty(), uri)
    assert pq.read_schema(uri).names == ["id_hash"]
    assert len(load_hash_index(uri)) == 0

    index = HashIndex.from_hashes(EDGE_DIGESTS + _random_digests(np.random.default_rng(3), 50))
    write_hash_index(index, uri)
    loaded = load_hash_index(uri)
    assert loaded.hashes.tobytes() == index.hashes.tobytes()
    assert count_hash_index(uri) == len(index)


def test_write_falls_back_when_the_size_bound_is_short(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(hx, "_size_bound", lambda table: 64)
    index = HashIndex.from_hashes(_random_digests(np.random.default_rng(5), 2_000))
    uri = str(tmp_path / "idx.parquet")
    write_hash_index(index, uri, state={"k": "v"})
    assert load_hash_index(uri).hashes.tobytes() == index.hashes.tobytes()
    assert read_index_state(uri) == {"k": "v"}


def test_state_is_kept_in_the_footer(tmp_path: Path) -> None:
    uri = str(tmp_path / "idx.parquet")
    state = {"earthcatalog.table_uuid": "abc", "earthcatalog.sequence_number": "7"}
    write_hash_index(HashIndex.from_ids(["a"]), uri, state=state)
    assert read_index_state(uri) == state
    assert pq.read_schema(uri).names == ["id_hash"]
    write_hash_index(HashIndex.from_ids(["a"]), uri)
    assert read_index_state(uri) == {}
    with pytest.raises(ValueError, match="reserved"):
        write_hash_index(HashIndex.empty(), uri, state={"ARROW:schema": "x"})


def test_index_and_state_come_from_one_version_of_the_file(tmp_path, monkeypatch) -> None:
    """A writer replaces the index right after a reader fetched it: the reader still gets
    the index and the state of one version (sequence 1 with one id), never the old index
    with the new state (sequence 2 would hide the id the old index lacks)."""
    uri = str(tmp_path / "idx.parquet")
    write_hash_index(HashIndex.from_ids(["a"]), uri, state={"seq": "1"})
    real_read = hx.storage.read_bytes

    def read_then_concurrent_write(path: str, **kwargs):  # type: ignore[no-untyped-def]
        data = real_read(path, **kwargs)
        monkeypatch.setattr(hx.storage, "read_bytes", real_read)  # one writer only
        write_hash_index(HashIndex.from_ids(["a", "b"]), uri, state={"seq": "2"})
        return data

    monkeypatch.setattr(hx.storage, "read_bytes", read_then_concurrent_write)
    index, state = load_hash_index_and_state(uri)
    assert (len(index), state) == (1, {"seq": "1"})
    assert read_index_state(uri) == {"seq": "2"}  # the writer did replace it


def test_operators_legacy_file_loads(tmp_path: Path) -> None:
    """A file as the operators' tooling writes it: sorted Python bytes, default writer."""
    ids = _ids(2_000, "legacy")
    digests = sorted({_oracle_digest(i) for i in ids})
    uri = str(tmp_path / "legacy.parquet")
    pq.write_table(
        pa.table({"id_hash": pa.array(digests, type=pa.binary(16))}), uri, compression="zstd"
    )
    index = load_hash_index(uri, strict=True)
    assert _values(index) == digests
    assert index.contains(hash_ids(ids)).all()


def test_unsorted_file_is_repaired_with_a_warning_or_rejected_when_strict(tmp_path: Path) -> None:
    uri = str(tmp_path / "unsorted.parquet")
    values = list(reversed(EDGE_DIGESTS)) + EDGE_DIGESTS[:3]
    pq.write_table(pa.table({"id_hash": pa.array(values, pa.binary(16))}), uri)
    with pytest.warns(RuntimeWarning, match="not sorted"):
        index = load_hash_index(uri)
    assert _values(index) == sorted(EDGE_DIGESTS)
    with pytest.raises(ValueError, match=r"unsorted\.parquet"):
        load_hash_index(uri, strict=True)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"hash": pa.array([b"\x00" * 16], pa.binary(16))}), "exactly one column"),
        (pa.table({"id_hash": pa.array([b"\x00" * 16], pa.binary())}), "fixed_size_binary"),
        (pa.table({"id_hash": pa.array([b"\x00" * 8], pa.binary(8))}), "fixed_size_binary"),
        (
            pa.table({"id_hash": pa.array([b"\x00" * 16], pa.binary(16)), "id": ["a"]}),
            "exactly one column",
        ),
        (pa.table({"id_hash": pa.array([b"\x00" * 16, None], pa.binary(16))}), "null"),
    ],
)
def test_invalid_files_raise_naming_the_file(tmp_path: Path, table: pa.Table, message: str) -> None:
    uri = str(tmp_path / "bad_index.parquet")
    pq.write_table(table, uri)
    with pytest.raises(ValueError, match=message) as err:
        load_hash_index(uri)
    assert "bad_index.parquet" in str(err.value)


def test_non_parquet_file_raises_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.parquet"
    path.write_bytes(b"not a parquet file at all")
    with pytest.raises(ValueError, match=r"garbage\.parquet"):
        load_hash_index(str(path))


def test_merge_ids_into_index(tmp_path: Path, monkeypatch) -> None:
    uri = str(tmp_path / "idx.parquet")
    first, second = _ids(300, "a"), _ids(200, "b")

    assert merge_ids_into_index(uri, first) == MergeStats(before=0, after=300, added=300)
    assert _values(load_hash_index(uri)) == sorted(_oracle_digest(i) for i in first)

    stats = merge_ids_into_index(uri, pa.array(first[:50] + second))
    assert stats == MergeStats(before=300, after=500, added=200)

    expected = sorted(_oracle_digest(i) for i in first + second)
    assert _values(load_hash_index(uri)) == expected

    # Nothing new: nothing written.
    writes: list[str] = []
    real_write = hx.storage.write_bytes
    monkeypatch.setattr(
        hx.storage, "write_bytes", lambda u, d: (writes.append(u), real_write(u, d))
    )
    assert merge_ids_into_index(uri, second) == MergeStats(before=500, after=500, added=0)
    assert writes == []


def test_merge_ids_keeps_state_and_repairs_unsorted_files(tmp_path: Path) -> None:
    uri = str(tmp_path / "idx.parquet")
    write_hash_index(HashIndex.from_ids(["a"]), uri, state={"k": "v"})
    merge_ids_into_index(uri, ["b"])
    assert read_index_state(uri) == {"k": "v"}

    legacy = str(tmp_path / "legacy.parquet")
    digests = [hash_id("z"), hash_id("y"), hash_id("z")]
    pq.write_table(pa.table({"id_hash": pa.array(digests, pa.binary(16))}), legacy)
    with pytest.warns(RuntimeWarning):
        stats = merge_ids_into_index(legacy, ["y"])
    assert stats == MergeStats(before=2, after=2, added=0)
    assert pq.read_table(legacy).column(0).to_pylist() == sorted({hash_id("z"), hash_id("y")})


# --- aliases: key stems whose item id differs ------------------------------------------------


def test_alias_file_sits_beside_the_index() -> None:
    from earthcatalog_dagster import layout

    assert (
        layout.hash_aliases("s3://b/wh_id_hashes.parquet") == "s3://b/wh_id_hashes_aliases.parquet"
    )
    assert layout.hash_aliases("/x/index") == "/x/index_aliases.parquet"


def test_merge_aliases_is_a_union_and_idempotent(tmp_path: Path, monkeypatch) -> None:
    from earthcatalog_dagster import layout
    from earthcatalog_dagster.core.hash_index import load_aliases, merge_aliases

    index_uri = str(tmp_path / "wh_id_hashes.parquet")
    alias_uri = layout.hash_aliases(index_uri)
    assert len(load_aliases(index_uri)) == 0  # missing file: empty

    writes: list[str] = []
    real_write = hx.storage.write_bytes
    monkeypatch.setattr(
        hx.storage, "write_bytes", lambda u, d: (writes.append(u), real_write(u, d))
    )
    # Nothing to add: nothing written, not even an empty file.
    assert merge_aliases(index_uri, pa.array([], pa.string())) == MergeStats(0, 0, 0)
    assert writes == [] and not Path(alias_uri).exists()

    assert merge_aliases(index_uri, ["stem_a", "stem_b", "stem_a"]) == MergeStats(0, 2, 2)
    assert merge_aliases(index_uri, pa.array(["stem_b", "stem_c"])) == MergeStats(2, 3, 1)
    # Already the digests (fixed_size_binary(16)) are taken as they are.
    assert merge_aliases(index_uri, hash_ids(["stem_c", "stem_d"])) == MergeStats(3, 4, 1)
    assert writes == [alias_uri] * 3

    # Same format as the index, and only the aliases: the index file is untouched.
    stored = pq.read_table(alias_uri)
    assert stored.schema.names == ["id_hash"] and stored.schema.field(0).type == HASH_TYPE
    assert stored.column(0).to_pylist() == sorted(
        _oracle_digest(s) for s in ("stem_a", "stem_b", "stem_c", "stem_d")
    )
    assert not Path(index_uri).exists()

    writes.clear()
    assert merge_aliases(index_uri, ["stem_a", "stem_d"]) == MergeStats(4, 4, 0)
    assert writes == []


def test_ingested_keys_are_the_index_and_its_aliases(tmp_path: Path) -> None:
    from earthcatalog_dagster.core.hash_index import load_ingested_keys, merge_aliases

    index_uri = str(tmp_path / "wh_id_hashes.parquet")
    assert len(load_ingested_keys(index_uri)) == 0  # neither file: empty

    write_hash_index(HashIndex.from_ids(["item_1", "item_2"]), index_uri)
    only_index = load_ingested_keys(index_uri)
    assert _values(only_index) == _values(load_hash_index(index_uri))

    merge_aliases(index_uri, ["stem_of_item_3"])
    keys = load_ingested_keys(index_uri)
    assert len(keys) == 3
    probes = hash_ids(["item_1", "item_2", "stem_of_item_3", "item_3", "other"])
    assert keys.contains(probes).tolist() == [True, True, True, False, False]
    # The index itself still holds exactly the item ids.
    assert count_hash_index(index_uri) == 2
