"""One storage interface over URIs: local paths and ``s3://bucket/prefix``.

Every module reads and writes through these functions, so a root can be moved from a
laptop folder to S3 by changing a URI and nothing else. A URI is either

- ``s3://bucket/key`` — an S3 object (AWS, or any S3-compatible endpoint), or
- a local path, absolute or relative (made absolute against the current directory), or a
  ``file://`` URL.

Everything is built on `obstore <https://developmentseed.org/obstore/>`_: one cached
``LocalStore`` for the file system and one ``S3Store`` per (bucket, anonymous) pair. Local
writes are atomic (obstore writes a staging file and renames it; ``write_if_absent`` links
it into place), S3 puts are single requests, so no reader ever sees a partial object.

S3 configuration comes from the usual AWS variables (``AWS_REGION``/``AWS_DEFAULT_REGION``,
``AWS_ENDPOINT_URL``/``AWS_ENDPOINT``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_ALLOW_HTTP``) unless :func:`configure_s3` overrides them.
``allow_http`` is switched on by itself for an ``http://`` endpoint. Anonymous (unsigned)
stores serve public source buckets.

Retries: single operations rely on obstore's own retry (3 retries, 60 s budget).
:func:`get_many_async` turns obstore's retry off for its stores and applies its own
:class:`RetryPolicy` (exponential backoff, full jitter), so its ``attempts`` are exact.

Error messages never carry credentials: any configured key, secret or token, and any
presigned-URL signature, is replaced by ``***`` before it reaches an exception or a result.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import obstore
import pyarrow as pa
import pyarrow.parquet as pq
from obstore import exceptions as obs_exc
from obstore.store import LocalStore, S3Store

from earthcatalog_dagster.config import DEFAULT_REGION

if TYPE_CHECKING:
    from obstore.store import ObjectStore

__all__ = [
    "AccessDenied",
    "GetResult",
    "ObjectInfo",
    "ObjectNotFound",
    "PreconditionFailed",
    "RetryPolicy",
    "StorageError",
    "clear_cache",
    "configure_s3",
    "delete",
    "exists",
    "get_many",
    "get_many_async",
    "is_local",
    "list_objects",
    "local_path",
    "move",
    "open_input",
    "pyiceberg_properties",
    "read_bytes",
    "read_parquet",
    "read_with_etag",
    "s3_overrides",
    "write_bytes",
    "write_if_absent",
    "write_if_match",
    "write_parquet",
]

# --- errors ---------------------------------------------------------------------------------


class StorageError(OSError):
    """A storage operation failed for a reason other than a missing object or a 403."""

    def __init__(self, message: str, uri: str | None = None) -> None:
        super().__init__(message)
        self.uri = uri

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (str(self), self.uri))


class ObjectNotFound(FileNotFoundError):
    """The object (or local file) does not exist; the message names the URI."""

    def __init__(self, uri: str, detail: str | None = None) -> None:
        super().__init__(f"object not found: {uri}" + (f" ({detail})" if detail else ""))
        self.uri = uri
        self.detail = detail

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.uri, self.detail))


class PreconditionFailed(StorageError):
    """A conditional write was refused: the object changed (or appeared, or vanished)."""


class AccessDenied(PermissionError):
    """403/401 from S3 (or a local permission error); names bucket and key."""

    def __init__(self, bucket: str, key: str, detail: str | None = None) -> None:
        where = f"bucket={bucket!r} key={key!r}" if bucket else f"path={key!r}"
        super().__init__(f"access denied: {where}" + (f" ({detail})" if detail else ""))
        self.bucket = bucket
        self.key = key
        self.detail = detail

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.bucket, self.key, self.detail))


# --- S3 configuration -----------------------------------------------------------------------

_S3_FIELDS = ("region", "endpoint_url", "access_key_id", "secret_access_key", "session_token")
_overrides: dict[str, str] = {}
_cache: dict[tuple[str, str, bool, bool], ObjectStore] = {}
_cache_lock = threading.Lock()
_TRUE = {"1", "true", "yes", "on"}


def configure_s3(
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    session_token: str | None = None,
) -> None:
    """Override the S3 settings taken from the environment, and drop every cached store.

    Each call replaces the previous overrides: a field given here wins over its AWS
    variable, a field left ``None`` falls back to the environment. ``configure_s3()`` with
    no argument therefore returns to the plain environment.
    """
    given = dict(
        region=region,
        endpoint_url=endpoint_url,
        access_key_id=access_key_id,
        secret_access_key=secret_access_key,
        session_token=session_token,
    )
    with _cache_lock:
        _overrides.clear()
        _overrides.update({k: v for k, v in given.items() if v})
        _cache.clear()


def s3_overrides() -> dict[str, str]:
    """The settings currently set by :func:`configure_s3` (a copy; empty: the environment)."""
    with _cache_lock:
        return dict(_overrides)


def pyiceberg_properties() -> dict[str, str]:
    """PyIceberg catalog properties for its S3 FileIO, from the settings the stores use.

    Iceberg metadata and data paths are ``s3://`` URIs when the warehouse is on S3;
    PyIceberg reads and writes them with its own (pyarrow) client, which gets the same
    region, endpoint (an ``http://`` endpoint carries its scheme, so plain HTTP works) and
    credentials as ours. Path-style addressing is kept for custom endpoints.
    """
    settings = _s3_settings()
    props = {"s3.region": settings["region"] or DEFAULT_REGION}
    if settings["endpoint_url"]:
        props["s3.endpoint"] = settings["endpoint_url"]
        props["s3.force-virtual-addressing"] = "false"
    for field, name in (
        ("access_key_id", "s3.access-key-id"),
        ("secret_access_key", "s3.secret-access-key"),
        ("session_token", "s3.session-token"),
    ):
        if settings[field]:
            props[name] = settings[field]  # type: ignore[assignment]
    return props


def clear_cache() -> None:
    """Forget every cached store (e.g. after the AWS environment variables changed)."""
    with _cache_lock:
        _cache.clear()


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _s3_settings() -> dict[str, str | None]:
    """Effective S3 settings: :func:`configure_s3` overrides, then the AWS variables."""
    env = {
        "region": _env("AWS_REGION", "AWS_DEFAULT_REGION") or DEFAULT_REGION,
        "endpoint_url": _env("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
        "access_key_id": _env("AWS_ACCESS_KEY_ID"),
        "secret_access_key": _env("AWS_SECRET_ACCESS_KEY"),
        "session_token": _env("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"),
    }
    return {k: _overrides.get(k) or env[k] for k in _S3_FIELDS}


def _make_s3_store(bucket: str, anonymous: bool, internal_retry: bool) -> S3Store:
    settings = _s3_settings()
    config: dict[str, Any] = {"region": settings["region"]}
    endpoint = settings["endpoint_url"]
    client: dict[str, Any] = {"connect_timeout": timedelta(seconds=10)}
    if endpoint:
        config["endpoint"] = endpoint
        if endpoint.startswith("http://"):
            client["allow_http"] = True
    if (os.environ.get("AWS_ALLOW_HTTP") or "").lower() in _TRUE:
        client["allow_http"] = True
    if anonymous:
        config["skip_signature"] = True
    else:
        for field in ("access_key_id", "secret_access_key", "session_token"):
            if settings[field]:
                config[field] = settings[field]
    retry: dict[str, Any] = (
        {"max_retries": 3, "retry_timeout": timedelta(seconds=60)}
        if internal_retry
        else {"max_retries": 0}
    )
    return S3Store(bucket, config=config, client_options=client, retry_config=retry)


def _store(scheme: str, bucket: str, anonymous: bool, internal_retry: bool = True) -> ObjectStore:
    """The cached store for (scheme, bucket, anonymous); local stores ignore the last two."""
    if scheme == "file":
        key = ("file", "", False, True)
    else:
        key = (scheme, bucket, anonymous, internal_retry)
    store = _cache.get(key)
    if store is None:
        with _cache_lock:
            store = _cache.get(key)
            if store is None:
                store = (
                    LocalStore()
                    if scheme == "file"
                    else _make_s3_store(bucket, anonymous, internal_retry)
                )
                _cache[key] = store
    return store


# --- URIs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loc:
    scheme: str  # "file" or "s3"
    bucket: str  # "" for local
    path: str  # store path: S3 key, or absolute local path without the leading "/"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.path}" if self.scheme == "s3" else "/" + self.path


def _parse(uri: str) -> _Loc:
    """Split a URI into (scheme, bucket, store path); relative local paths become absolute."""
    if uri.startswith("s3://") or uri.startswith("s3a://"):
        rest = uri.split("://", 1)[1]
        bucket, _, key = rest.partition("/")
        if not bucket:
            raise ValueError(f"S3 URI without a bucket: {uri!r}")
        return _Loc("s3", bucket, key)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif "://" in uri:
        raise ValueError(f"unsupported URI scheme (only local paths and s3://): {uri!r}")
    return _Loc("file", "", os.path.abspath(uri).lstrip("/"))


def is_local(uri: str) -> bool:
    """True for a local path or ``file://`` URL, False for ``s3://``."""
    return _parse(uri).scheme == "file"


def local_path(uri: str) -> str | None:
    """The absolute file-system path of a local URI, ``None`` for a remote one."""
    loc = _parse(uri)
    return "/" + loc.path if loc.scheme == "file" else None


# --- error mapping --------------------------------------------------------------------------

_SIGNED_PARAMS = re.compile(
    r"(X-Amz-(?:Credential|Signature|Security-Token)=)[^&\s\"']+|(Authorization:\s*)\S+",
    re.IGNORECASE,
)


def _scrub(text: str) -> str:
    """Remove credentials from an error text; also drop obstore's long debug dump."""
    text = text.split("\n\nDebug source:", 1)[0].strip()
    settings = _s3_settings()
    for field in ("access_key_id", "secret_access_key", "session_token"):
        value = settings.get(field)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return _SIGNED_PARAMS.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


def _map_error(exc: BaseException, loc: _Loc) -> BaseException:
    """Translate an obstore/OS exception into ours, naming the URI, without credentials."""
    if isinstance(exc, ObjectNotFound | AccessDenied | StorageError):
        return exc
    detail = _scrub(str(exc))
    if isinstance(exc, FileNotFoundError | NotADirectoryError | obs_exc.NotFoundError):
        return ObjectNotFound(loc.uri)
    if loc.scheme == "file" and "(os error 20)" in detail:  # a parent is a file: no object
        return ObjectNotFound(loc.uri)
    if isinstance(
        exc, PermissionError | obs_exc.PermissionDeniedError | obs_exc.UnauthenticatedError
    ):
        return AccessDenied(loc.bucket, loc.path if loc.bucket else loc.uri, detail)
    return StorageError(f"storage error on {loc.uri}: {type(exc).__name__}: {detail}", loc.uri)


# --- single-object operations ---------------------------------------------------------------


def read_bytes(uri: str, *, anonymous: bool = False) -> bytes:
    """The whole object as bytes.

    Raises :class:`ObjectNotFound` if it does not exist and :class:`AccessDenied` on 403.
    """
    loc = _parse(uri)
    try:
        return bytes(_store(loc.scheme, loc.bucket, anonymous).get(loc.path).bytes())
    except Exception as exc:
        raise _map_error(exc, loc) from None


def _read_buffer(loc: _Loc, anonymous: bool = False) -> pa.Buffer:
    """The object as a pyarrow buffer, zero-copy over obstore's bytes."""
    try:
        return pa.py_buffer(_store(loc.scheme, loc.bucket, anonymous).get(loc.path).bytes())
    except Exception as exc:
        raise _map_error(exc, loc) from None


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
    loc = _parse(uri)
    store = _store(loc.scheme, loc.bucket, False)
    try:
        store.put(loc.path, _as_buffer(data), use_multipart=False)
    except Exception as exc:
        raise _map_error(exc, loc) from None


def write_if_absent(uri: str, data: bytes) -> bool:
    """Create the object only if nothing exists at ``uri``; True if we created it.

    Locally the staging file is hard-linked into place (atomic); on S3 this is a PUT with
    ``If-None-Match: *`` (412 → False). A 409 ``ConditionalRequestConflict`` (another
    writer racing us) is retried a few times, after which the object normally exists.
    """
    loc = _parse(uri)
    store = _store(loc.scheme, loc.bucket, False)
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
            raise _map_error(exc, loc) from None
    return False  # pragma: no cover - the loop always returns or raises


def read_with_etag(uri: str) -> tuple[bytes, str | None]:
    """The whole object and its ETag (the version a later :func:`write_if_match` expects).

    Raises :class:`ObjectNotFound` if it does not exist and :class:`AccessDenied` on 403.
    """
    loc = _parse(uri)
    try:
        result = _store(loc.scheme, loc.bucket, False).get(loc.path)
        return bytes(result.bytes()), result.meta.get("e_tag")
    except Exception as exc:
        raise _map_error(exc, loc) from None


def write_if_match(uri: str, data: bytes, e_tag: str | None) -> str | None:
    """Replace the object only if it is still the version ``e_tag``; returns the new ETag.

    ``e_tag=None`` means "only if nothing exists yet". On S3 this is one PUT with
    ``If-Match: <e_tag>`` (or ``If-None-Match: *``): compare-and-swap by the server. A 412,
    or a 404 for a version that vanished, raises :class:`PreconditionFailed`; a 409
    ``ConditionalRequestConflict`` (a concurrent conditional write) is retried. Local
    files compare the current ETag and then write: callers serialise writers (the lock).
    """
    loc = _parse(uri)
    store = _store(loc.scheme, loc.bucket, False)
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
            raise _map_error(exc, loc) from None
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


def exists(uri: str, *, anonymous: bool = False) -> bool:
    """True if an object (a regular file, locally) exists at ``uri``."""
    loc = _parse(uri)
    if loc.scheme == "file":
        return os.path.isfile("/" + loc.path)
    try:
        _store(loc.scheme, loc.bucket, anonymous).head(loc.path)
        return True
    except FileNotFoundError:
        return False
    except Exception as exc:
        raise _map_error(exc, loc) from None


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
    loc = _parse(prefix_uri)
    prefix = loc.path.rstrip("/")
    store = _store(loc.scheme, loc.bucket, anonymous)
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
        raise _map_error(exc, loc) from None
    out.sort(key=lambda info: info.uri)
    return out


def delete(uri: str, *, missing_ok: bool = True) -> None:
    """Delete one object. A missing object is fine unless ``missing_ok=False``."""
    loc = _parse(uri)
    store = _store(loc.scheme, loc.bucket, False)
    if loc.scheme == "s3" and not missing_ok and not exists(uri):
        raise ObjectNotFound(loc.uri)
    try:
        store.delete(loc.path)
    except FileNotFoundError:
        if not missing_ok:
            raise ObjectNotFound(loc.uri) from None
    except Exception as exc:
        raise _map_error(exc, loc) from None


def move(src: str, dst: str) -> None:
    """Move ``src`` to ``dst`` (copy, then delete the source), idempotently.

    If ``src`` is gone and ``dst`` exists the move already happened (perhaps a rerun
    after a crash between copy and delete): nothing to do. If both exist, the copy is
    redone and the source deleted. Within one store obstore's rename is used (a file
    rename locally, copy + delete on S3); across stores the bytes go through memory.
    """
    s, d = _parse(src), _parse(dst)
    if not exists(src):
        if exists(dst):
            return
        raise ObjectNotFound(s.uri, "move source is missing and the destination does not exist")
    if (s.scheme, s.bucket) == (d.scheme, d.bucket):
        store = _store(s.scheme, s.bucket, False)
        try:
            store.rename(s.path, d.path, overwrite=True)
        except FileNotFoundError:
            if not exists(dst):  # somebody else moved it meanwhile, elsewhere
                raise ObjectNotFound(s.uri) from None
        except Exception as exc:
            raise _map_error(exc, s) from None
        return
    write_bytes(dst, read_bytes(src))
    delete(src)


# --- streaming reads ------------------------------------------------------------------------


class _ObstoreRaw(io.RawIOBase):
    """A seekable raw file over obstore's buffered reader (for pyarrow on S3)."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._reader.seek(offset, whence)

    def tell(self) -> int:
        return self._reader.tell()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        chunk = memoryview(self._reader.read(len(view)))
        view[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


def open_input(
    uri: str, *, anonymous: bool = False, buffer_size: int = 8 << 20
) -> io.BufferedIOBase:
    """A seekable binary file object to stream a (large) object without loading it whole.

    Local files are opened directly; S3 objects are read through obstore's buffered
    ranged reader. Raises :class:`ObjectNotFound` / :class:`AccessDenied` up front.
    """
    loc = _parse(uri)
    try:
        if loc.scheme == "file":
            return open("/" + loc.path, "rb")
        store = _store(loc.scheme, loc.bucket, anonymous)
        reader = obstore.open_reader(store, loc.path, buffer_size=buffer_size)
        return io.BufferedReader(_ObstoreRaw(reader), buffer_size=1 << 20)
    except IsADirectoryError:
        raise ObjectNotFound(loc.uri, "is a directory") from None
    except Exception as exc:
        raise _map_error(exc, loc) from None


# --- Parquet --------------------------------------------------------------------------------


def read_parquet(uri: str, columns: Sequence[str] | None = None) -> pa.Table:
    """A whole Parquet object as an Arrow table (optionally only ``columns``).

    Local files are memory-mapped; an S3 object is fetched whole (one GET) and parsed
    from memory, zero-copy.
    """
    loc = _parse(uri)
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


# --- concurrent bulk reads ------------------------------------------------------------------
#
# Why threads and not asyncio: obstore's async bridge costs ~120 µs of event-loop CPU per
# await (measured: ~8,000 gets/s even from an in-memory store), while its blocking calls
# release the GIL and cost a few µs. A pool of worker threads doing blocking gets is about
# twice as fast against an S3 endpoint, and local files are read with plain ``open()``
# (several times faster than obstore's LocalStore for small files).

# Local readers: with a warm page cache one thread is fastest (GIL hand-offs on every
# syscall), on a cold disk ~4 threads double throughput; 4 is the compromise.
_LOCAL_THREADS = 4


@dataclass(frozen=True)
class RetryPolicy:
    """Retries for transient failures: exponential backoff with full jitter.

    Attempt ``n`` (1-based) that fails transiently sleeps a uniform random time in
    ``[0, min(max_delay, base_delay * 2**(n-1))]`` before attempt ``n + 1``.
    """

    max_attempts: int = 6
    base_delay: float = 0.05
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        """The sleep after failed attempt ``attempt`` (1-based)."""
        return random.uniform(0.0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


Status = Literal["ok", "missing", "failed"]


@dataclass
class GetResult:
    """The outcome for one URI of :func:`get_many`: ``data`` is set only when ``ok``."""

    uri: str
    data: bytes | None
    status: Status
    error: str | None
    attempts: int


_PERMANENT = re.compile(
    r"\b(?:400|405|411|413|414|416|417|422)\b|InvalidArgument|InvalidRequest|InvalidBucketName"
    r"|NoSuchBucket|not supported|Is a directory|Not a directory|os error (?:20|21|36)\b",
    re.IGNORECASE,
)


def _is_retryable(exc: BaseException) -> bool:
    """Transient unless known permanent: 5xx/SlowDown/timeouts/dropped connections retry.

    Unknown errors are retried too (a crawler of 40 M objects meets many odd transient
    failures); requests that can never succeed (bad path, 4xx other than 408/429,
    unsupported operation, a directory where a file was expected) are not.
    """
    if isinstance(
        exc,
        obs_exc.InvalidPathError
        | obs_exc.NotSupportedError
        | obs_exc.UnknownConfigurationKeyError
        | IsADirectoryError
        | NotADirectoryError
        | ValueError
        | TypeError,
    ):
        return False
    return not _PERMANENT.search(str(exc))


def _read_local(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _get_one(
    store: ObjectStore | None, loc: _Loc, uri: str, retry: RetryPolicy, stop: threading.Event
) -> GetResult:
    """One object with retries; ``store`` is None for a local file (read with ``open``)."""
    attempt = 0
    while True:
        attempt += 1
        try:
            if store is None:
                data = _read_local("/" + loc.path)
            else:
                data = bytes(store.get(loc.path).bytes())
            return GetResult(uri, data, "ok", None, attempt)
        except (FileNotFoundError, NotADirectoryError):  # ENOTDIR: a parent is a file
            return GetResult(uri, None, "missing", None, attempt)
        except (
            PermissionError,
            obs_exc.PermissionDeniedError,
            obs_exc.UnauthenticatedError,
        ) as exc:
            raise AccessDenied(
                loc.bucket, loc.path if loc.bucket else loc.uri, _scrub(str(exc))
            ) from None
        except Exception as exc:
            if attempt >= retry.max_attempts or not _is_retryable(exc) or stop.is_set():
                error = f"{type(exc).__name__}: {_scrub(str(exc))}"
                return GetResult(uri, None, "failed", error, attempt)
            if stop.wait(retry.delay(attempt)):
                return GetResult(uri, None, "failed", "cancelled: run stopped", attempt)


def _get_many_blocking(
    uris: Sequence[str], concurrency: int, retry: RetryPolicy, anonymous: bool
) -> list[GetResult]:
    n = len(uris)
    if n == 0:
        return []
    stores: dict[tuple[str, str], ObjectStore] = {}
    targets: list[tuple[ObjectStore | None, _Loc]] = []
    remote = 0
    for uri in uris:
        loc = _parse(uri)
        if loc.scheme == "file":
            targets.append((None, loc))
            continue
        remote += 1
        key = (loc.scheme, loc.bucket)
        store = stores.get(key)
        if store is None:
            store = stores[key] = _store(loc.scheme, loc.bucket, anonymous, internal_retry=False)
        targets.append((store, loc))

    results: list[GetResult | None] = [None] * n
    indices = iter(range(n))  # shared by the workers; next() on it is atomic under the GIL
    stop = threading.Event()
    denied: list[AccessDenied] = []

    def worker() -> None:
        for i in indices:
            if stop.is_set():
                return
            store, loc = targets[i]
            try:
                results[i] = _get_one(store, loc, uris[i], retry, stop)
            except AccessDenied as exc:
                denied.append(exc)
                stop.set()
                return

    limit = max(1, concurrency) if remote else max(1, min(concurrency, _LOCAL_THREADS))
    workers = min(limit, n)
    if workers == 1:
        worker()
    else:
        threads = [
            threading.Thread(target=worker, name=f"get_many-{k}", daemon=True)
            for k in range(workers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    if denied:
        raise denied[0]
    return results  # type: ignore[return-value] - every slot is filled when nobody was denied


async def get_many_async(
    uris: Sequence[str],
    *,
    concurrency: int = 256,
    retry: RetryPolicy = RetryPolicy(),
    anonymous: bool = False,
) -> list[GetResult]:
    """Fetch many objects concurrently; one :class:`GetResult` per URI, in input order.

    At most ``concurrency`` requests are in flight (a fixed pool of workers pulling from
    the list, so memory does not grow with the number of URIs; local files use at most
    4 readers). 404 gives ``missing`` without retry; transient errors (5xx, SlowDown,
    timeouts, dropped connections) are retried under ``retry``; others, or the last
    attempt, end ``failed`` with the error text. A 403 raises :class:`AccessDenied`
    (the run is misconfigured; continuing would only repeat it) once in-flight requests
    settle. The work runs in threads, so awaiting this never blocks the event loop.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(
        None, _get_many_blocking, list(uris), concurrency, retry, anonymous
    )


def get_many(
    uris: Sequence[str],
    *,
    concurrency: int = 256,
    retry: RetryPolicy = RetryPolicy(),
    anonymous: bool = False,
) -> list[GetResult]:
    """Synchronous :func:`get_many_async`, callable from any thread.

    Needs no event loop and so also works inside a running one (a notebook, an async
    framework): the calling thread waits on worker threads, never on the loop.
    """
    return _get_many_blocking(list(uris), concurrency, retry, anonymous)
