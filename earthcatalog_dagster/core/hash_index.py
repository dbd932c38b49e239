"""The warehouse hash index: which STAC item ids the catalog already holds.

File format (a contract with the operators' existing tooling, see ``ITSLIVE.md``): one
Parquet file, by default ``<WAREHOUSE>_id_hashes.parquet``, with exactly one column
``id_hash`` of type ``fixed_size_binary(16)``, zstd compressed, sorted ascending in unsigned
byte order and unique. Each value is the xxh3_128 digest, seed 42, of the UTF-8 item id, as
``xxhash.xxh3_128(item_id.encode(), seed=42).digest()`` returns it (big-endian bytes). A
missing file is an empty index.

In memory a :class:`HashIndex` wraps a sorted, unique, read-only NumPy array of dtype
``S16``. NumPy orders fixed-width byte strings exactly like unsigned ``memcmp`` over the 16
bytes, so sorting, ``searchsorted`` and comparisons agree with the file's order. The array
is only ever converted to and from raw buffers (``np.frombuffer`` / ``pa.py_buffer``),
never through NumPy scalars, which would strip trailing zero bytes. Every operation is
vectorised: no Python set or list of 40 M ``bytes`` objects is ever built.

Costs for the ITS_LIVE index (~40 M entries, 640 MB in memory, 594 MB file) on 2 cores:
load ≈ 2 s, anti-join of 1 M keys < 1 s, merging a daily delta one O(n) copy (``np.insert``
at ``searchsorted`` positions, no re-sort), write ≈ 4 s; peak memory ≈ 2.3x the index
(load + merge + write ≈ 1.5 GB). See ``benchmarks/bench_hash_index.py``.

Aliases: an item whose ``id`` is not its object's file name (``<key stem>.stac.json``)
is indexed under its id, yet the daily anti-joins hash key stems. So beside the index
sits a second, small file in the very same format (:func:`~earthcatalog_dagster.layout.
hash_aliases`: ``<index without .parquet>_aliases.parquet``) holding the digests of those
key stems. The index keeps holding exactly the item ids (the operators count "Unique
items" from it); the anti-joins use :func:`load_ingested_keys`, index ∪ aliases, so such
an item is fetched once and never again. :func:`merge_aliases` unions new alias digests
in (idempotent, written only when something is new), after the items are registered.

Storage goes through :mod:`earthcatalog_dagster.core.storage` (``read_bytes`` and
``write_bytes``; ``open_input`` for footer-only reads), so the URI may be a local path or
``s3://``. The read-modify-write of
:func:`merge_ids_into_index` is not atomic against a concurrent writer: callers serialise
it (the pipeline runs it under the catalog lock).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from xxhash import xxh3_128_digest

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage

__all__ = [
    "COLUMN",
    "HASH_SEED",
    "HASH_SIZE",
    "HASH_TYPE",
    "ROW_GROUP_SIZE",
    "SCHEMA",
    "HashIndex",
    "MergeStats",
    "count_hash_index",
    "hash_id",
    "hash_ids",
    "load_aliases",
    "load_hash_index",
    "load_hash_index_and_state",
    "load_ingested_keys",
    "merge_aliases",
    "merge_ids_into_index",
    "read_index_state",
    "write_hash_index",
]

HASH_SEED = 42
HASH_SIZE = 16
HASH_TYPE = pa.binary(HASH_SIZE)
COLUMN = "id_hash"
SCHEMA = pa.schema([pa.field(COLUMN, HASH_TYPE)])
#: Rows per Parquet row group of the written index (16 MiB of digests per group).
ROW_GROUP_SIZE = 1 << 20

_DTYPE = np.dtype(f"S{HASH_SIZE}")
# Ids hashed per slice: bounds the transient Python bytes objects (~100 B each) to a few MB.
_HASH_BATCH = 1 << 16
# Below this many probe keys, sorting them first does not pay for itself.
_SORT_PROBES_MIN = 256
# Footer key written by Arrow itself; never part of an index's state.
_ARROW_SCHEMA_KEY = "ARROW:schema"

HashesLike = pa.Array | pa.ChunkedArray | np.ndarray | Sequence[bytes]
IdsLike = pa.Array | pa.ChunkedArray | Sequence[str]


# --- hashing ----------------------------------------------------------------------------------


def hash_id(item_id: str) -> bytes:
    """The 16-byte digest of one item id (xxh3_128, seed 42, of its UTF-8 bytes)."""
    return xxh3_128_digest(item_id.encode("utf-8"), HASH_SEED)


def _digest_values(values: Any) -> bytes:
    """Concatenated digests of an iterable of bytes-like ids."""
    return b"".join(map(xxh3_128_digest, values, itertools.repeat(HASH_SEED)))


def _digest_arrow(array: pa.Array, out: memoryview) -> None:
    """Digests of one Arrow string/binary array (no nulls), written into ``out``.

    Works through slices of :data:`_HASH_BATCH` ids so that only that many Python
    ``bytes`` objects exist at a time, whatever the array's length.
    """
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if array.null_count:
        raise ValueError(f"cannot hash null item ids ({array.null_count} nulls)")
    t = array.type
    # string -> binary is a zero-copy re-typing; to_pylist() then yields bytes directly,
    # which skips a str decode + encode round trip per id.
    if pa.types.is_string(t):
        array = array.cast(pa.binary())
    elif pa.types.is_large_string(t):
        array = array.cast(pa.large_binary())
    elif pa.types.is_string_view(t):
        array = array.cast(pa.binary_view())
    elif not (pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t)):
        raise TypeError(f"item ids must be an Arrow string or binary array, not {t}")
    for start in range(0, len(array), _HASH_BATCH):
        batch = array.slice(start, _HASH_BATCH)
        out[start * HASH_SIZE : (start + len(batch)) * HASH_SIZE] = _digest_values(
            batch.to_pylist()
        )


def hash_ids(ids: IdsLike) -> pa.FixedSizeBinaryArray:
    """The 16-byte digests of item ids, in input order (duplicates kept).

    ``ids`` is an Arrow string array (``string``, ``large_string``, ``string_view``, or a
    dictionary of those; binary arrays are taken as already UTF-8 encoded), a chunked array
    of such, or a sequence of ``str``. Nulls are rejected with ``ValueError``.

    xxhash has no vectorised API, so this is one C call per id; the loop is kept in C
    (``map`` + ``bytes.join``) and Arrow hands out ``bytes`` without a str round trip:
    about 4 M ids/s for ~100-character ITS_LIVE ids on one core.
    """
    if isinstance(ids, str | bytes):
        raise TypeError("hash_ids expects a sequence of ids, not a single string")
    if isinstance(ids, pa.Array | pa.ChunkedArray):
        chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
        digests: bytes | bytearray = bytearray(len(ids) * HASH_SIZE)
        view = memoryview(digests)
        start = 0
        for chunk in chunks:
            _digest_arrow(chunk, view[start * HASH_SIZE : (start + len(chunk)) * HASH_SIZE])
            start += len(chunk)
    else:
        digests = _digest_values(map(str.encode, ids))
    n = len(digests) // HASH_SIZE
    buffer = pa.py_buffer(digests) if n else None
    return pa.FixedSizeBinaryArray.from_buffers(HASH_TYPE, n, [None, buffer])


# --- conversions -------------------------------------------------------------------------------


def _from_fixed_array(array: pa.Array) -> np.ndarray:
    """Zero-copy ``S16`` view of a ``fixed_size_binary(16)`` Arrow array (nulls rejected)."""
    if array.type != HASH_TYPE:
        raise TypeError(f"hashes must be {HASH_TYPE}, not {array.type}")
    if array.null_count:
        raise ValueError(f"hashes contain {array.null_count} nulls")
    if len(array) == 0:
        return np.empty(0, dtype=_DTYPE)
    data = array.buffers()[1]
    return np.frombuffer(data, dtype=_DTYPE, count=len(array), offset=array.offset * HASH_SIZE)


def _as_s16(hashes: HashesLike) -> np.ndarray:
    """Any supported hash container as a contiguous 1-D ``S16`` array (copy only if needed).

    Accepts ``fixed_size_binary(16)`` Arrow arrays and chunked arrays (binary arrays whose
    values are all 16 bytes long are cast), NumPy arrays of dtype ``S16`` or ``V16`` or
    ``uint8`` of shape ``(n, 16)``, and sequences of 16-byte ``bytes``.
    """
    if isinstance(hashes, pa.ChunkedArray):
        if hashes.num_chunks == 0:
            return np.empty(0, dtype=_DTYPE)
        hashes = hashes.chunk(0) if hashes.num_chunks == 1 else hashes.combine_chunks()
    if isinstance(hashes, pa.Array):
        if hashes.type != HASH_TYPE and (
            pa.types.is_binary(hashes.type) or pa.types.is_large_binary(hashes.type)
        ):
            try:
                hashes = hashes.cast(HASH_TYPE)
            except pa.ArrowInvalid as exc:
                raise ValueError(f"hashes must all be {HASH_SIZE} bytes long") from exc
        return _from_fixed_array(hashes)
    if isinstance(hashes, np.ndarray):
        if hashes.dtype == _DTYPE or hashes.dtype == np.dtype(f"V{HASH_SIZE}"):
            if hashes.ndim != 1:
                raise ValueError(f"hash arrays must be 1-D, got shape {hashes.shape}")
            return np.ascontiguousarray(hashes).view(_DTYPE)
        if hashes.dtype == np.uint8 and hashes.ndim == 2 and hashes.shape[1] == HASH_SIZE:
            return np.ascontiguousarray(hashes).view(_DTYPE).reshape(-1)
        raise TypeError(
            f"hash arrays must have dtype S{HASH_SIZE}, V{HASH_SIZE} or uint8 (n, {HASH_SIZE}),"
            f" not {hashes.dtype} with shape {hashes.shape}"
        )
    if isinstance(hashes, bytes | bytearray | memoryview | str):
        raise TypeError("expected a collection of digests, not a single value")
    try:
        array = pa.array(hashes, type=HASH_TYPE)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ValueError(f"hashes must be {HASH_SIZE}-byte bytes objects: {exc}") from exc
    return _from_fixed_array(array)


def _to_arrow_array(values: np.ndarray) -> pa.FixedSizeBinaryArray:
    """Zero-copy Arrow view of a contiguous ``S16`` array (keeps the array alive)."""
    buffer = pa.py_buffer(values.view(np.uint8)) if len(values) else None
    return pa.FixedSizeBinaryArray.from_buffers(HASH_TYPE, len(values), [None, buffer])


def _is_strictly_increasing(values: np.ndarray) -> bool:
    """Sorted ascending (unsigned byte order) and unique."""
    return len(values) < 2 or bool(np.all(values[1:] > values[:-1]))


def _sort_unique(values: np.ndarray) -> np.ndarray:
    """The input itself when already sorted and unique, else a new read-only sorted copy."""
    if _is_strictly_increasing(values):
        return values
    ordered = np.sort(values)
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    result = ordered if keep.all() else ordered[keep]
    result.flags.writeable = False
    return result


def _owned(values: np.ndarray) -> np.ndarray:
    """``values`` if nobody can modify it (read-only), else a private copy.

    Keeps a :class:`HashIndex` immutable without freezing a caller's array; read-only
    views (of Arrow buffers or ``bytes``) are wrapped zero-copy.
    """
    return values.copy() if values.flags.writeable else values


def _freeze(values: np.ndarray) -> np.ndarray:
    """Mark an array the index owns as read-only."""
    if values.flags.writeable:
        values.flags.writeable = False
    return values


# --- the index ---------------------------------------------------------------------------------


class HashIndex:
    """An immutable, sorted, unique set of 16-byte id digests.

    Build one with :meth:`empty`, :meth:`from_hashes`, :meth:`from_ids` or
    :func:`load_hash_index`; ``HashIndex(array)`` wraps an array that must already be a
    sorted unique ``S16`` array (checked, O(n)). Queries take digests in any form
    :meth:`from_hashes` accepts and are vectorised (``np.searchsorted``).
    """

    __slots__ = ("_values",)

    def __init__(self, sorted_hashes: np.ndarray) -> None:
        values = _as_s16(sorted_hashes)
        if not _is_strictly_increasing(values):
            raise ValueError("HashIndex needs sorted unique digests; use HashIndex.from_hashes")
        self._values = _freeze(_owned(values))

    @classmethod
    def _trusted(cls, values: np.ndarray) -> HashIndex:
        """Wrap an array known to be a contiguous sorted unique ``S16`` array."""
        index = cls.__new__(cls)
        index._values = _freeze(values)
        return index

    @classmethod
    def empty(cls) -> HashIndex:
        """The index with no entries."""
        return cls._trusted(np.empty(0, dtype=_DTYPE))

    @classmethod
    def from_hashes(cls, hashes: HashesLike) -> HashIndex:
        """An index of the given digests (any order, duplicates allowed).

        ``hashes``: a ``fixed_size_binary(16)`` Arrow (chunked) array, a NumPy array of
        dtype ``S16``/``V16``/``uint8 (n, 16)``, or a sequence of 16-byte ``bytes``.
        """
        return cls._trusted(_owned(_sort_unique(_as_s16(hashes))))

    @classmethod
    def from_ids(cls, ids: IdsLike) -> HashIndex:
        """An index of the digests of item ids (see :func:`hash_ids`)."""
        return cls.from_hashes(hash_ids(ids))

    # --- queries -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"HashIndex({len(self):,} hashes)"

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, bytes) or len(digest) != HASH_SIZE:
            return False
        return bool(self.contains(np.frombuffer(digest, dtype=_DTYPE))[0])

    @property
    def hashes(self) -> np.ndarray:
        """The sorted unique digests, a read-only ``S16`` array (use ``.tobytes()``)."""
        return self._values

    def _found_sorted(self, probes: np.ndarray) -> np.ndarray:
        """Membership of ascending-sorted probes (sorted probes keep searchsorted local)."""
        values = self._values
        positions = np.searchsorted(values, probes)
        np.minimum(positions, len(values) - 1, out=positions)
        # Compare the raw 16 bytes as two native uint64 words: exact, and immune to any
        # string semantics of NumPy's S dtype.
        a = values[positions].view(np.uint64).reshape(-1, 2)
        b = probes.view(np.uint64).reshape(-1, 2)
        return (a[:, 0] == b[:, 0]) & (a[:, 1] == b[:, 1])

    def contains(self, hashes: HashesLike) -> np.ndarray:
        """Boolean mask, in input order: True where the digest is in the index."""
        probes = _as_s16(hashes)
        if len(probes) == 0 or len(self._values) == 0:
            return np.zeros(len(probes), dtype=bool)
        if len(probes) < _SORT_PROBES_MIN or _is_strictly_increasing(probes):
            return self._found_sorted(probes)
        order = np.argsort(probes)
        found = np.empty(len(probes), dtype=bool)
        found[order] = self._found_sorted(probes[order])
        return found

    def missing_mask(self, hashes: HashesLike) -> np.ndarray:
        """Boolean mask, in input order: True where the digest is NOT in the index."""
        return ~self.contains(hashes)

    anti_join = missing_mask

    # --- updates ------------------------------------------------------------------------------

    def merge(self, hashes: HashesLike) -> HashIndex:
        """The union of this index and ``hashes`` (a new index; this one is unchanged).

        The new digests are sorted and de-duplicated, those already present dropped, and
        the rest inserted at their ``searchsorted`` positions: one O(n + k) copy of the
        index, no re-sort of it. Returns ``self`` when nothing is new.
        """
        new = _sort_unique(_as_s16(hashes))
        if len(new) == 0:
            return self
        if len(self._values) == 0:
            return HashIndex._trusted(_owned(new))
        new = new[~self._found_sorted(new)]
        if len(new) == 0:
            return self
        positions = np.searchsorted(self._values, new)
        return HashIndex._trusted(np.insert(self._values, positions, new))

    def union(self, other: HashIndex) -> HashIndex:
        """The union of two indexes."""
        if len(other) > len(self):
            return other.merge(self._values)
        return self.merge(other._values)

    # --- export ---------------------------------------------------------------------------

    def to_arrow_array(self) -> pa.FixedSizeBinaryArray:
        """The digests as a ``fixed_size_binary(16)`` array (zero-copy)."""
        return _to_arrow_array(self._values)

    def to_arrow(self) -> pa.Table:
        """The index as the file's table: one column ``id_hash`` (zero-copy)."""
        return pa.Table.from_arrays([self.to_arrow_array()], schema=SCHEMA)


# --- files -------------------------------------------------------------------------------------


def _open_parquet(uri: str, source: Any) -> pq.ParquetFile:
    """``source`` as a Parquet file, or a ``ValueError`` naming ``uri``."""
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"hash index {uri} is not a readable Parquet file: {exc}") from exc


def _state_of(metadata: pq.FileMetaData) -> dict[str, str]:
    """The user key-value pairs of a file's footer (Arrow's own schema entry left out)."""
    pairs = metadata.metadata or {}
    return {k.decode(): v.decode() for k, v in pairs.items() if k.decode() != _ARROW_SCHEMA_KEY}


def _read_index_file(uri: str, data: bytes) -> tuple[np.ndarray, dict[str, str]]:
    """The digests of a hash index file, as stored (order not checked), and its state."""
    parquet = _open_parquet(uri, pa.BufferReader(data))
    schema = parquet.schema_arrow
    if schema.names != [COLUMN] or schema.field(COLUMN).type != HASH_TYPE:
        found = ", ".join(f"{f.name}: {f.type}" for f in schema) or "no columns"
        raise ValueError(
            f"hash index {uri} must have exactly one column {COLUMN!r} of type {HASH_TYPE};"
            f" found {found}"
        )
    # Copy row group by row group into one preallocated array: peak memory is the file
    # plus the result plus one row group, never the whole decoded table twice.
    values = np.empty(parquet.metadata.num_rows, dtype=_DTYPE)
    filled = 0
    for group in range(parquet.num_row_groups):
        column = parquet.read_row_group(group, columns=[COLUMN], use_threads=True).column(0)
        for chunk in column.chunks:
            if chunk.null_count:
                raise ValueError(f"hash index {uri} has null {COLUMN} values")
            values[filled : filled + len(chunk)] = _from_fixed_array(chunk)
            filled += len(chunk)
    if filled != len(values):
        raise ValueError(f"hash index {uri}: read {filled} rows, footer says {len(values)}")
    return values, _state_of(parquet.metadata)


@dataclass(frozen=True)
class _Loaded:
    index: HashIndex
    state: dict[str, str]
    repaired: bool


def _load(uri: str, strict: bool) -> _Loaded:
    """The index at ``uri``, its state, and whether it had to be re-sorted / de-duplicated."""
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        return _Loaded(HashIndex.empty(), {}, False)
    values, state = _read_index_file(uri, data)
    del data  # the file's bytes go before any further allocation
    if _is_strictly_increasing(values):
        return _Loaded(HashIndex._trusted(values), state, False)
    message = f"hash index {uri} is not sorted ascending and unique"
    if strict:
        raise ValueError(message)
    repaired = _sort_unique(values)
    warnings.warn(
        f"{message}: re-sorted in memory ({len(values):,} rows, {len(repaired):,} unique);"
        " the next write stores it sorted",
        RuntimeWarning,
        stacklevel=3,
    )
    return _Loaded(HashIndex._trusted(repaired), state, True)


def load_hash_index(uri: str, *, strict: bool = False) -> HashIndex:
    """Read the hash index at ``uri`` (local path or ``s3://``); a missing file is empty.

    Raises ``ValueError`` naming the file when it is not Parquet, does not have exactly one
    column ``id_hash`` of type ``fixed_size_binary(16)``, or holds nulls. A file that is
    not sorted ascending and unique (e.g. written by older tooling) still holds a valid
    set: it is re-sorted and de-duplicated in memory with a ``RuntimeWarning``, or
    rejected with ``ValueError`` when ``strict``.
    """
    return _load(uri, strict).index


def load_hash_index_and_state(uri: str) -> tuple[HashIndex, dict[str, str]]:
    """The index at ``uri`` and the ``state`` stored with it, from one read of the file.

    Read apart (:func:`load_hash_index`, then :func:`read_index_state`), a writer replacing
    the file in between could pair an old index with a new state, whose sequence number
    then hides the files the old index lacks: their ids would pass as new.
    """
    loaded = _load(uri, strict=False)
    return loaded.index, loaded.state


def _footer(uri: str) -> pq.FileMetaData | None:
    """The Parquet footer of the file at ``uri`` (ranged reads only), None if missing."""
    try:
        source = storage.open_input(uri)
    except FileNotFoundError:
        return None
    with source:
        return _open_parquet(uri, source).metadata


def read_index_state(uri: str) -> dict[str, str]:
    """The ``state`` stored with the index by :func:`write_hash_index` (footer only).

    Empty for a missing file or one written without state (e.g. by the operators' tools).
    """
    footer = _footer(uri)
    return {} if footer is None else _state_of(footer)


def count_hash_index(uri: str) -> int:
    """The number of hashes in the index at ``uri`` from its footer alone; 0 if missing.

    Exact for files this module wrote (sorted, unique); a legacy file with duplicates
    would be counted with them.
    """
    footer = _footer(uri)
    return 0 if footer is None else footer.num_rows


def write_hash_index(index: HashIndex, uri: str, *, state: Mapping[str, str] | None = None) -> None:
    """Write ``index`` to ``uri`` in the operators' format (replacing any previous file).

    One column ``id_hash`` (``fixed_size_binary(16)``), ascending, zstd, row groups of
    :data:`ROW_GROUP_SIZE` rows, plain encoding (unique values make a dictionary useless)
    and min/max statistics kept so readers can prune row groups for point lookups.
    ``state`` (string pairs, e.g. which table snapshot the index reflects) goes into the
    file's footer key-value metadata, which other readers ignore; read it back with
    :func:`read_index_state`. Serialised in memory and written with one
    ``storage.write_bytes`` (atomic locally, a single PUT on S3).
    """
    table = index.to_arrow()
    if state:
        if _ARROW_SCHEMA_KEY in state:
            raise ValueError(f"{_ARROW_SCHEMA_KEY!r} is reserved in the index state")
        table = table.replace_schema_metadata({str(k): str(v) for k, v in state.items()})
    storage.write_bytes(uri, _serialize(table))


def _write_parquet(table: pa.Table, sink: Any) -> None:
    pq.write_table(
        table,
        sink,
        row_group_size=ROW_GROUP_SIZE,
        compression="zstd",
        use_dictionary=False,
        write_statistics=True,
    )


def _size_bound(table: pa.Table) -> int:
    """Generous upper bound of the Parquet size of an index table.

    zstd grows incompressible input by < 1/256; page headers, per-page statistics and the
    footer (which repeats the state inside Arrow's serialised schema) take the rest.
    """
    metadata = table.schema.metadata or {}
    state_bytes = sum(len(k) + len(v) for k, v in metadata.items())
    raw = table.num_rows * HASH_SIZE
    return raw + raw // 64 + 4 * state_bytes + (4 << 20)


def _serialize(table: pa.Table) -> pa.Buffer:
    """The table as Parquet bytes in memory.

    Written into one buffer preallocated to an upper bound of the file size (digests are
    incompressible, so the file is about their raw size): a growing
    ``BufferOutputStream`` would reallocate and copy its way up to twice the file size,
    which for 40 M digests costs seconds and ~600 MB more peak memory. Untouched pages of
    the slack never become resident. Falls back to a growing stream if the bound is short.
    """
    buffer = pa.allocate_buffer(_size_bound(table))
    writer = pa.FixedSizeBufferWriter(buffer)
    try:
        _write_parquet(table, writer)
    except OSError:  # "Write out of bounds": the bound was short, use a growing stream
        del writer, buffer
        sink = pa.BufferOutputStream()
        _write_parquet(table, sink)
        return sink.getvalue()
    size = writer.tell()
    writer.close()
    return buffer.slice(0, size)


@dataclass(frozen=True)
class MergeStats:
    """Outcome of :func:`merge_ids_into_index`: sizes before and after, and ids added."""

    before: int
    after: int
    added: int


def merge_ids_into_index(uri: str, ids: IdsLike) -> MergeStats:
    """Hash ``ids``, union them into the index at ``uri`` and write it back if it changed.

    Idempotent: merging ids already present adds nothing and writes nothing (unless the
    stored file had to be repaired, see :func:`load_hash_index`). The file's state is
    kept: the index only grows, so what it covered it still covers. Not safe against a
    concurrent writer of the same file; the caller holds the catalog lock.
    """
    loaded = _load(uri, strict=False)
    state, repaired, before = loaded.state, loaded.repaired, len(loaded.index)
    merged = loaded.index.merge(hash_ids(ids))
    del loaded  # the old array goes before the file is serialised: peak = 2x, not 3x
    stats = MergeStats(before=before, after=len(merged), added=len(merged) - before)
    if stats.added or repaired:
        write_hash_index(merged, uri, state=state)
    return stats


# --- aliases: key stems whose item id differs ------------------------------------------------


def load_aliases(index_uri: str) -> HashIndex:
    """The alias digests kept beside the index at ``index_uri``; a missing file is empty."""
    return load_hash_index(layout.hash_aliases(index_uri))


def load_ingested_keys(index_uri: str) -> HashIndex:
    """Every key stem already ingested: the index ∪ its aliases, for the anti-joins.

    Probe it with the digests of key stems (``hash_ids(ids_of_keys(keys))``): a key whose
    item id equals its stem is found through the index, one whose item id differs through
    the alias file. Costs one O(n) copy of the index only when aliases exist and add
    something; otherwise the index itself is returned.
    """
    return load_hash_index(index_uri).union(load_aliases(index_uri))


def merge_aliases(index_uri: str, key_ids: IdsLike) -> MergeStats:
    """Union key stems (or their digests) into the alias file beside ``index_uri``.

    ``key_ids``: the key stems of items whose id differs from them (e.g. the ``key_id``
    column of :attr:`~earthcatalog_dagster.core.items.ParsedItems.mismatches`), as an
    Arrow string array or a sequence of ``str``; or already their digests, as a
    ``fixed_size_binary(16)`` array. Idempotent: the file is written only when something
    is new (nothing is written, or created, for no new alias). Call it after the items
    are registered, under the catalog lock, like :func:`merge_ids_into_index`.
    """
    is_digests = isinstance(key_ids, pa.Array | pa.ChunkedArray) and key_ids.type == HASH_TYPE
    hashes = key_ids if is_digests else hash_ids(key_ids)
    uri = layout.hash_aliases(index_uri)
    loaded = _load(uri, strict=False)
    before = len(loaded.index)
    merged = loaded.index.merge(hashes)
    stats = MergeStats(before=before, after=len(merged), added=len(merged) - before)
    if stats.added or loaded.repaired:
        write_hash_index(merged, uri, state=loaded.state)
    return stats
