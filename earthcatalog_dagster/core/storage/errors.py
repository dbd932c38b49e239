"""Our storage exceptions, the mapping from obstore/OS errors to them, credential scrubbing.

Callers catch three things: :class:`ObjectNotFound` (a ``FileNotFoundError``: the object
is not there), :class:`AccessDenied` (a ``PermissionError``: 403/401, naming bucket and
key), and :class:`StorageError` (an ``OSError``: anything else, after retries).
:class:`PreconditionFailed` is a conditional write the server refused.

Error messages never carry credentials: any configured key, secret or token, and any
presigned-URL signature, is replaced by ``***`` before it reaches an exception or a result.
"""

from __future__ import annotations

import re
from typing import Any

from obstore import exceptions as obs_exc

from earthcatalog_dagster.core.storage.s3config import s3_settings
from earthcatalog_dagster.core.storage.uris import Location

__all__ = [
    "AccessDenied",
    "ObjectNotFound",
    "PreconditionFailed",
    "StorageError",
    "map_error",
    "scrub",
]


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


_SIGNED_PARAMS = re.compile(
    r"(X-Amz-(?:Credential|Signature|Security-Token)=)[^&\s\"']+|(Authorization:\s*)\S+",
    re.IGNORECASE,
)


def scrub(text: str) -> str:
    """Remove credentials from an error text; also drop obstore's long debug dump."""
    text = text.split("\n\nDebug source:", 1)[0].strip()
    settings = s3_settings()
    for field in ("access_key_id", "secret_access_key", "session_token"):
        value = settings.get(field)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    return _SIGNED_PARAMS.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


def map_error(exc: BaseException, loc: Location) -> BaseException:
    """Translate an obstore/OS exception into ours, naming the URI, without credentials."""
    if isinstance(exc, ObjectNotFound | AccessDenied | StorageError):
        return exc
    detail = scrub(str(exc))
    if isinstance(exc, FileNotFoundError | NotADirectoryError | obs_exc.NotFoundError):
        return ObjectNotFound(loc.uri)
    if loc.scheme == "file" and "(os error 20)" in detail:  # a parent is a file: no object
        return ObjectNotFound(loc.uri)
    if isinstance(
        exc, PermissionError | obs_exc.PermissionDeniedError | obs_exc.UnauthenticatedError
    ):
        return AccessDenied(loc.bucket, loc.path if loc.bucket else loc.uri, detail)
    return StorageError(f"storage error on {loc.uri}: {type(exc).__name__}: {detail}", loc.uri)
