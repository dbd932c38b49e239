"""One storage interface over URIs: local paths and ``s3://bucket/prefix``.

Every module reads and writes through these functions, so a root can be moved from a
laptop folder to S3 by changing a URI and nothing else. Use it as
``from earthcatalog_dagster.core import storage; storage.read_bytes(uri)``.

Everything is built on `obstore <https://developmentseed.org/obstore/>`_. The package,
one concern per module:

- :mod:`.uris` — what a URI is (``s3://``, local path, ``file://``), ``is_local``,
  ``local_path``;
- :mod:`.errors` — :class:`ObjectNotFound`, :class:`AccessDenied`, :class:`StorageError`,
  :class:`PreconditionFailed`; mapping obstore errors to them without credentials;
- :mod:`.s3config` — S3 settings (AWS variables, :func:`configure_s3` overrides) and the
  cache of stores;
- :mod:`.retry` — which failures are transient (5xx, SlowDown, dropped connections,
  short bodies) and :class:`RetryPolicy`;
- :mod:`.objects` — single-object operations: read/write bytes, conditional writes,
  exists, list, delete (one or many), move, streaming and Parquet reads/writes;
- :mod:`.bulk` — :func:`get_many`, many objects concurrently with one outcome each;
- :mod:`.debris` — :func:`remove_debris`, the staging files of killed local writes.
"""

from __future__ import annotations

from earthcatalog_dagster.core.storage.bulk import GetResult, get_many, get_many_async
from earthcatalog_dagster.core.storage.debris import remove_debris
from earthcatalog_dagster.core.storage.errors import (
    AccessDenied,
    ObjectNotFound,
    PreconditionFailed,
    StorageError,
)
from earthcatalog_dagster.core.storage.objects import (
    ObjectInfo,
    delete,
    delete_many,
    exists,
    list_objects,
    move,
    open_input,
    read_bytes,
    read_parquet,
    read_with_etag,
    write_bytes,
    write_if_absent,
    write_if_match,
    write_parquet,
)
from earthcatalog_dagster.core.storage.retry import RetryPolicy
from earthcatalog_dagster.core.storage.s3config import (
    clear_cache,
    configure_s3,
    pyiceberg_properties,
    s3_overrides,
)
from earthcatalog_dagster.core.storage.uris import is_local, local_path

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
    "delete_many",
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
    "remove_debris",
    "s3_overrides",
    "write_bytes",
    "write_if_absent",
    "write_if_match",
    "write_parquet",
]
