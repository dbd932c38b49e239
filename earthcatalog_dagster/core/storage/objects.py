"""Single-object operations: read, write, conditional writes, exists, list, delete, move,
streaming reads and whole-Parquet reads and writes.

Local writes are atomic: obstore writes a staging file beside the target (``<name>#<n>``,
see :mod:`.debris`) and renames it into place (``write_if_absent`` hard-links it), and S3
puts are single requests, so no reader ever sees a partial object.

Every read (``read_bytes``, ``read_with_etag``, ``read_parquet``, ``open_input`` and each
ranged read behind it) retries transient S3 failures — 5xx, SlowDown, dropped connections,
bodies cut short — under :data:`.retry.READ_RETRY`, on stores whose own obstore retry is
off, so one policy decides. Writes, ``exists``, ``list_objects``, ``delete`` and ``move``
keep obstore's internal retry (3 retries within 60 s) of 5xx and connection errors.
"""

from __future__ import annotations

import io
import os
import random
import threading
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import obstore
import pyarrow as pa
import pyarrow.parquet as pq
from obstore import exceptions as obs_exc

from earthcatalog_dagster.core.storage.errors import (
    ObjectNotFound,
    PreconditionFailed,
    map_error,
)
from earthcatalog_dagster.core.storage.retry import READ_RETRY, RetryPolicy, call_with_retry
from earthcatalog_dagster.core.storage.s3config import get_store
from earthcatalog_dagster.core.storage.uris import Location, parse

__all__ = [
    "ObjectInfo",
    "delete",
    "delete_many",
    "exists",
    "list_objects",
    "move",
    "open_input",
    "read_bytes",
    "read_parquet",
    "read_with_etag",
    "write_bytes",
    "write_if_absent",
    "write_if_match",
    "write_parquet",
]


def _get(loc: Location, anonymous: bool) -> tuple[Any, dict[str, Any]]:
    """GET the whole object, retrying transient failures; (buffer, obstore metadata).

    The body is read inside the retried operation, so a body cut short is fetched again.
    """
    store = get_store(loc.scheme, loc.bucket, anonymous, internal_retry=False)

    def attempt() -> tuple[Any, dict[str, Any]]:
        result = store.get(loc.path)
        return result.bytes(), result.meta

    try:
        return call_with_retry(attempt, READ_RETRY)
    except Exception as exc:
        raise map_error(exc, loc) from None


def read_bytes(uri: str, *, anonymous: bool = False) -> bytes:
    """The whole object as bytes; transient S3 failures are retried.

    Raises :class:`ObjectNotFound` if it does not exist and :class:`AccessDenied` on 403.
    """
    return bytes(_get(parse(uri), anonymous)[0])


def _read_buffer(loc: Location, anonymous: bool = False) -> pa.Buffer:
    """The object as a pyarrow buffer, zero-copy over obstore's bytes."""
    return pa.py_buffer(_get(loc, anonymous)[0])


def _as_buffer(data: Any) -> Any:
    """bytes stay bytes; other buffers (pyarrow, numpy) become flat uint8 memoryviews."""
    if isinstance(data, bytes):
        return data
    return memoryview(data).cast("B")


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` as the whole object, replacing any previous one.

    One single put (no multipart upload). Local writes create the parent directories and
    are atomic: obstore writes a staging file beside the target and renames it.
    """
    loc = parse(uri)
    store = get_store(loc.scheme, loc.bucket, False)
    try:
        store.put(loc.path, _as_buffer(data), use_multipart=False)
    except Exception as exc:
        raise map_error(exc, loc) from None


def write_if_absent(uri: str, data: bytes) -> bool:
    """Create the object only if nothing exists at ``uri``; True if we created it.

    Locally the staging file is hard-linked into place (atomic); on S3 this is a PUT with
    ``If-None-Match: *`` (412 → False). A 409 ``ConditionalRequestConflict`` (another
    writer racing us) is retried a few times, after which the object normally exists.
    """
    loc = parse(uri)
    store = get_store(loc.scheme, loc.bucket, False)
    for attempt in range(5):
        try:
            store.put(loc.path, _as_buffer(data), mode="create", use_multipart=False)
            return True
        except Exception as exc:
            text = str(exc)
            conflict = "ConditionalRequestConflict" in text or "409 Conflict" in text
            if isinstance(exc, obs_exc.AlreadyExistsError | obs_exc.PreconditionError) and (
                not conflict or attempt == 4
            ):
                return False
            if attempt < 4 and (conflict or "409" in text):
                threading.Event().wait(0.05 * 2**attempt * random.random())
                continue
            raise map_error(exc, loc) from None
    return False  # pragma: no cover - the loop always returns or raises


def read_with_etag(uri: str) -> tuple[bytes, str | None]:
    """The whole object and its ETag (the version a later :func:`write_if_match` expects).

    Raises :class:`ObjectNotFound` if it does not exist and :class:`AccessDenied` on 403.
    """
    data, meta = _get(parse(uri), False)
    return bytes(data), meta.get("e_tag")


def write_if_match(uri: str, data: bytes, e_tag: str | None) -> str | None:
    """Replace the object only if it is still the version ``e_tag``; returns the new ETag.

    ``e_tag=None`` means "only if nothing exists yet". On S3 this is one PUT with
    ``If-Match: <e_tag>`` (or ``If-None-Match: *``): compare-and-swap by the server. A 412,
    or a 404 for a version that vanished, raises :class:`PreconditionFailed`; a 409
    ``ConditionalRequestConflict`` (a concurrent conditional write) is retried. Local
    files compare the current ETag and then write: callers serialise writers (the lock).
    """
    loc = parse(uri)
    store = get_store(loc.scheme, loc.bucket, False)
    changed = f"{loc.uri} changed since version {e_tag or '(absent)'} was read"
    if loc.scheme == "file":
        if e_tag is None:
            if not write_if_absent(uri, data):
                raise PreconditionFailed(changed, loc.uri)
        else:
            try:
                current = store.head(loc.path).get("e_tag")
            except FileNotFoundError:
                current = None
            if current != e_tag:
                raise PreconditionFailed(changed, loc.uri)
            write_bytes(uri, data)
        return store.head(loc.path).get("e_tag")
    mode: Any = "create" if e_tag is None else {"e_tag": e_tag}
    for attempt in range(8):
        try:
            result = store.put(loc.path, _as_buffer(data), mode=mode, use_multipart=False)
            return result.get("e_tag")
        except Exception as exc:
            # obstore reports a 409 of a conditional put as AlreadyExists/Precondition too:
            # tell it from a real 412 (or 404) by its status before giving up.
            text = str(exc)
            conflict = "ConditionalRequestConflict" in text or "409 Conflict" in text
            if attempt < 7 and conflict:
                threading.Event().wait(0.05 * 2**attempt * random.random())
                continue
            if isinstance(exc, obs_exc.AlreadyExistsError | obs_exc.PreconditionError):
                raise PreconditionFailed(changed, loc.uri) from None
            raise map_error(exc, loc) from None
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def exists(uri: str, *, anonymous: bool = False) -> bool:
    """True if an object (a regular file, locally) exists at ``uri``."""
    loc = parse(uri)
    if loc.scheme == "file":
        return os.path.isfile("/" + loc.path)
    try:
        get_store(loc.scheme, loc.bucket, anonymous).head(loc.path)
        return True
    except FileNotFoundError:
        return False
    except Exception as exc:
        raise map_error(exc, loc) from None


@dataclass(frozen=True)
class ObjectInfo:
    """One listed object. ``uri`` is absolute (``s3://…`` or an absolute local path)."""

    uri: str
    size: int
    last_modified: datetime
    e_tag: str | None


def list_objects(
    prefix_uri: str, *, suffix: str | None = None, anonymous: bool = False
) -> list[ObjectInfo]:
    """Every object under ``prefix_uri`` (recursively), sorted by URI.

    The prefix is a directory prefix: ``root/a`` lists ``root/a/x`` but not ``root/ab``.
    ``suffix`` keeps only URIs ending with it. A missing prefix gives an empty list.
    """
    loc = parse(prefix_uri)
    prefix = loc.path.rstrip("/")
    store = get_store(loc.scheme, loc.bucket, anonymous)
    if loc.scheme == "file" and not os.path.isdir("/" + prefix):
        return []
    out: list[ObjectInfo] = []
    base = f"s3://{loc.bucket}/" if loc.scheme == "s3" else "/"
    try:
        for chunk in store.list(prefix or None, chunk_size=1000):
            for meta in chunk:
                path = meta["path"]
                if suffix and not path.endswith(suffix):
                    continue
                out.append(
                    ObjectInfo(base + path, meta["size"], meta["last_modified"], meta["e_tag"])
                )
    except FileNotFoundError:
        return []
    except Exception as exc:
        raise map_error(exc, loc) from None
    out.sort(key=lambda info: info.uri)
    return out


def delete(uri: str, *, missing_ok: bool = True) -> None:
    """Delete one object. A missing object is fine unless ``missing_ok=False``."""
    loc = parse(uri)
    store = get_store(loc.scheme, loc.bucket, False)
    if loc.scheme == "s3" and not missing_ok and not exists(uri):
        raise ObjectNotFound(loc.uri)
    try:
        store.delete(loc.path)
    except FileNotFoundError:
        if not missing_ok:
            raise ObjectNotFound(loc.uri) from None
    except Exception as exc:
        raise map_error(exc, loc) from None


def delete_many(uris: Sequence[str]) -> None:
    """Delete many objects; missing ones are fine (a rerun after a kill deletes again).

    On S3 this is one ``DeleteObjects`` request per 1,000 keys (obstore's bulk delete), not
    one request per object: clearing a day's staging (thousands of NDJSON files and
    markers) costs a handful of requests. Local files are removed concurrently in one
    call. Should a batch fail (a file already gone locally, a key refused), its objects are
    deleted one by one, so an error names the object it is about.
    """
    batches: dict[tuple[str, str], list[Location]] = {}
    for uri in uris:
        loc = parse(uri)
        batches.setdefault((loc.scheme, loc.bucket), []).append(loc)
    for (scheme, bucket), locs in batches.items():
        try:
            obstore.delete(get_store(scheme, bucket, False), [loc.path for loc in locs])
        except Exception:
            for loc in locs:
                delete(loc.uri)


def move(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` (copy, then delete the source), idempotently.

    If ``src`` is gone and ``dst`` exists the move already happened (perhaps a rerun
    after a crash between copy and delete): nothing to do. If both exist, the copy is
    redone and the source deleted. Within one store obstore's rename is used (a file
    rename locally, copy + delete on S3); across stores the bytes go through memory.
    """
    s, d = parse(src), parse(dst)
    if not exists(src):
        if exists(dst):
            return
        raise ObjectNotFound(s.uri, "move source is missing and the destination does not exist")
    if (s.scheme, s.bucket) == (d.scheme, d.bucket):
        store = get_store(s.scheme, s.bucket, False)
        try:
            store.rename(s.path, d.path, overwrite=True)
        except FileNotFoundError:
            if not exists(dst):  # somebody else moved it meanwhile, elsewhere
                raise ObjectNotFound(s.uri) from None
        except Exception as exc:
            raise map_error(exc, s) from None
        return
    write_bytes(dst, read_bytes(src))
    delete(src)


class _ObstoreRaw(io.RawIOBase):
    """A seekable raw file over obstore's buffered reader (for pyarrow on S3).

    Each read is retried under ``policy``: a failed reader (a ranged GET that got a 5xx,
    lost its connection or came back short) is dropped and a fresh one opened at the same
    position, since the state of a reader after an error is not specified.
    """

    def __init__(self, open_reader: Callable[[], Any], policy: RetryPolicy) -> None:
        self._open_reader = open_reader
        self._policy = policy
        self._reader: Any = call_with_retry(open_reader, policy)
        self._pos = 0

    def _live_reader(self) -> Any:
        if self._reader is None:
            reader = self._open_reader()
            reader.seek(self._pos)
            self._reader = reader
        return self._reader

    def _drop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            with suppress(Exception):
                reader.close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        def attempt() -> int:
            try:
                return self._live_reader().seek(offset, whence)
            except Exception:
                self._drop_reader()
                raise

        self._pos = call_with_retry(attempt, self._policy)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")

        def attempt() -> memoryview:
            try:
                return memoryview(self._live_reader().read(len(view)))
            except Exception:
                self._drop_reader()
                raise

        chunk = call_with_retry(attempt, self._policy)
        view[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self._drop_reader()
        super().close()


def open_input(
    uri: str, *, anonymous: bool = False, buffer_size: int = 8 << 20
) -> io.BufferedIOBase:
    """A seekable binary file object to stream a (large) object without loading it whole.

    Local files are opened directly; S3 objects are read through obstore's buffered
    ranged reader, each read retried on transient failures. Raises
    :class:`ObjectNotFound` / :class:`AccessDenied` up front.
    """
    loc = parse(uri)
    try:
        if loc.scheme == "file":
            return open(loc.local, "rb")
        store = get_store(loc.scheme, loc.bucket, anonymous, internal_retry=False)
        raw = _ObstoreRaw(
            lambda: obstore.open_reader(store, loc.path, buffer_size=buffer_size), READ_RETRY
        )
        return io.BufferedReader(raw, buffer_size=1 << 20)
    except IsADirectoryError:
        raise ObjectNotFound(loc.uri, "is a directory") from None
    except Exception as exc:
        raise map_error(exc, loc) from None


def read_parquet(uri: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A whole Parquet object as an Arrow table (optionally only ``columns``).

    Local files are memory-mapped; an S3 object is fetched whole (one GET) and parsed
    from memory, zero-copy.
    """
    loc = parse(uri)
    cols = list(columns) if columns is not None else None
    if loc.scheme == "file":
        path = "/" + loc.path
        if not os.path.isfile(path):
            raise ObjectNotFound(loc.uri)
        return pq.read_table(path, columns=cols, memory_map=True)
    return pq.read_table(pa.BufferReader(_read_buffer(loc)), columns=cols)


def write_parquet(table: pa.Table, uri: str, **pq_kwargs: Any) -> None:
    """Serialize ``table`` to Parquet in memory (zstd unless told otherwise) and write it.

    ``pq_kwargs`` go to :func:`pyarrow.parquet.write_table`. One put, so the file appears
    whole or not at all.
    """
    pq_kwargs.setdefault("compression", "zstd")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **pq_kwargs)
    write_bytes(uri, sink.getvalue())
