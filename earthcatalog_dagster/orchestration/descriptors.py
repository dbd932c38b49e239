"""The typed descriptors the ingest assets hand each other (through the staging IO manager).

Each asset returns one small frozen dataclass — keys, counts, file lists, never bulk
bytes — stored as ``<staging>/delta_D/<asset>.json``. Every descriptor can carry
:class:`AlreadyIngested`: ``delta_inventory`` sets it for a date whose delta is done
already, and every downstream asset passes it on without doing anything, so rerunning an
ingested date is a no-op that succeeds.

JSON format: the dataclass fields plus ``"type"`` (the class name) and ``"version"``.
Descriptors written before the types existed (plain dicts without ``"type"``) are
converted when they hold every key the old asset wrote (the field names kept those
keys); anything else is treated as absent (:func:`decode` returns ``None``), and the
asset that needs it asks for its upstream to be materialized again.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, ClassVar

FORMAT_VERSION = 1


@dataclass(frozen=True)
class AlreadyIngested:
    """The date's delta was ingested already: ``done`` (its marker) exists, no pending
    delta does. ``at`` is the marker's last-modified time (ISO 8601, UTC)."""

    done: str
    at: str

    @property
    def message(self) -> str:
        return f"already ingested at {self.at}"


@dataclass(frozen=True, kw_only=True)
class Descriptor:
    """What every asset's descriptor has: the already-ingested short-circuit."""

    #: The keys an old (untyped) descriptor of this asset always held.
    LEGACY_KEYS: ClassVar[frozenset[str]] = frozenset()

    ingested: AlreadyIngested | None = None

    def to_json(self) -> bytes:
        data = {"type": type(self).__name__, "version": FORMAT_VERSION}
        data.update(dataclasses.asdict(self))
        return json.dumps(data, indent=1).encode()


@dataclass(frozen=True, kw_only=True)
class DeltaDescriptor(Descriptor):
    """``delta_inventory``: the pending delta file of the date and its row count."""

    LEGACY_KEYS: ClassVar[frozenset[str]] = frozenset({"delta", "rows", "source"})

    delta: str = ""
    rows: int = 0
    source: str = ""


@dataclass(frozen=True, kw_only=True)
class ChunksDescriptor(Descriptor):
    """``staged_chunks``: the chunk files of the delta."""

    LEGACY_KEYS: ClassVar[frozenset[str]] = frozenset({"chunks", "rows", "chunk_size"})

    chunks: tuple[str, ...] = ()
    rows: int = 0
    chunk_size: int = 0


@dataclass(frozen=True, kw_only=True)
class NdjsonDescriptor(Descriptor):
    """``ndjson_items``: the (cell, year) buckets staged, the counts, and the H3 resolution
    the items were fanned out at (``None`` only in a converted old descriptor)."""

    LEGACY_KEYS: ClassVar[frozenset[str]] = frozenset(
        {"buckets", "rows", "fetched", "missing", "failed", "rejected", "items", "rows_out"}
    )

    buckets: tuple[tuple[str, str], ...] = ()
    bucket_rows: tuple[int, ...] = ()  # staged rows per bucket (older descriptors: none)
    rows: int = 0
    fetched: int = 0
    missing: int = 0
    failed: int = 0
    rejected: int = 0
    items: int = 0
    rows_out: int = 0
    resolution: int | None = None


@dataclass(frozen=True, kw_only=True)
class WarehouseDescriptor(Descriptor):
    """``warehouse_parquets``: the warehouse files written for the date."""

    LEGACY_KEYS: ClassVar[frozenset[str]] = frozenset({"files", "rows"})

    files: tuple[str, ...] = ()
    rows: int = 0
    resolution: int | None = None


@dataclass(frozen=True, kw_only=True)
class RegistrationDescriptor(Descriptor):
    """``iceberg_table``: the files registered (after dropping rows registered elsewhere)."""

    LEGACY_KEYS: ClassVar[frozenset[str]] = frozenset({"files", "snapshot_id", "added", "skipped"})

    files: tuple[str, ...] = ()
    snapshot_id: int | None = None
    added: int = 0
    skipped: int = 0
    table_created: bool = False
    #: Files the registration rewrote without rows registered elsewhere (their ids
    #: differ from what ``warehouse_parquets`` recorded).
    rewritten: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class HashIndexDescriptor(Descriptor):
    """``hash_index``: the index size before and after the sync."""

    LEGACY_KEYS: ClassVar[frozenset[str]] = frozenset({"hashes_before", "hashes_after"})

    hashes_before: int | None = None
    hashes_after: int | None = None


DESCRIPTOR_TYPES: dict[str, type[Descriptor]] = {
    cls.__name__: cls
    for cls in (
        DeltaDescriptor,
        ChunksDescriptor,
        NdjsonDescriptor,
        WarehouseDescriptor,
        RegistrationDescriptor,
        HashIndexDescriptor,
    )
}


def _frozen(value: Any) -> Any:
    """JSON lists back to the tuples the descriptors hold."""
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def decode(raw: bytes, expected: type[Descriptor] | None = None) -> Descriptor | None:
    """The descriptor stored in ``raw``; ``None`` when it cannot be read as one (treat as
    absent). ``expected`` is the type the reader wants: it also converts an old untyped
    descriptor that holds every key the old asset wrote."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    name = data.pop("type", None)
    version = data.pop("version", None)
    if name is None:
        cls = expected
        if cls is None or not data.keys() >= cls.LEGACY_KEYS:
            return None
    else:
        cls = DESCRIPTOR_TYPES.get(name)
        if cls is None or version != FORMAT_VERSION:
            return None
        if expected is not None and cls is not expected:
            return None
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: _frozen(v) for k, v in data.items() if k in names and k != "ingested"}
    ingested = data.get("ingested")
    try:
        if isinstance(ingested, dict):
            values["ingested"] = AlreadyIngested(**ingested)
        return cls(**values)
    except TypeError:
        return None
