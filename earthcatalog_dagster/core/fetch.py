"""Fetch the STAC item objects named by inventory rows, concurrently.

Each row (``bucket``, ``key``) is read from ``s3://bucket/key`` unsigned (the public source
bucket), or from ``<source_root>/<bucket>/<key>`` when a mirror root is set (a local folder,
or another S3 location read with the configured credentials). The outcome of every row is
accounted for: fetched, missing (404: deleted after the inventory), or failed (after
retries), so the counts reconcile.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.storage import RetryPolicy

__all__ = ["FAILED_SCHEMA", "MISSING_SCHEMA", "FetchResult", "fetch_ahead", "fetch_objects"]

MISSING_SCHEMA = pa.schema([("bucket", pa.string()), ("key", pa.string())])
FAILED_SCHEMA = pa.schema([("bucket", pa.string()), ("key", pa.string()), ("error", pa.string())])


@dataclass
class FetchResult:
    """What :func:`fetch_objects` got: bodies of the ok rows, and the rows that were not.

    ``bodies``, ``keys`` and ``buckets`` are aligned and in input order (ok rows only).
    ``missing`` (bucket, key) and ``failed`` (bucket, key, error) are Arrow tables.
    """

    bodies: list[bytes]
    keys: list[str]
    buckets: list[str]
    missing: pa.Table
    failed: pa.Table

    @property
    def ok(self) -> int:
        """Number of fetched objects."""
        return len(self.bodies)

    @property
    def total(self) -> int:
        """ok + missing + failed: equals the number of input rows."""
        return len(self.bodies) + self.missing.num_rows + self.failed.num_rows


def fetch_objects(
    refs: pa.Table | pa.RecordBatch,
    *,
    source_root: str | None,
    concurrency: int = 256,
    retry: RetryPolicy | None = None,
) -> FetchResult:
    """Fetch the object of every (``bucket``, ``key``) row of ``refs``.

    ``source_root=None`` reads ``s3://bucket/key`` anonymously; otherwise
    ``<source_root>/<bucket>/<key>`` with normal credentials. Uses
    :func:`storage.get_many` (bounded concurrency, retries); a 403 raises
    :class:`storage.AccessDenied`.
    """
    buckets: list[str] = refs.column("bucket").to_pylist()
    keys: list[str] = refs.column("key").to_pylist()
    uris = [layout.source_object(b, k, source_root) for b, k in zip(buckets, keys, strict=True)]
    results = storage.get_many(
        uris,
        concurrency=concurrency,
        retry=retry or RetryPolicy(),
        anonymous=source_root is None,
    )
    ok_bodies: list[bytes] = []
    ok_keys: list[str] = []
    ok_buckets: list[str] = []
    missing: dict[str, list[str]] = {"bucket": [], "key": []}
    failed: dict[str, list[str]] = {"bucket": [], "key": [], "error": []}
    for bucket, key, res in zip(buckets, keys, results, strict=True):
        if res.status == "ok":
            ok_bodies.append(res.data)  # type: ignore[arg-type] - data is set when ok
            ok_keys.append(key)
            ok_buckets.append(bucket)
        elif res.status == "missing":
            missing["bucket"].append(bucket)
            missing["key"].append(key)
        else:
            failed["bucket"].append(bucket)
            failed["key"].append(key)
            failed["error"].append(res.error or "unknown error")
    return FetchResult(
        bodies=ok_bodies,
        keys=ok_keys,
        buckets=ok_buckets,
        missing=pa.Table.from_pydict(missing, schema=MISSING_SCHEMA),
        failed=pa.Table.from_pydict(failed, schema=FAILED_SCHEMA),
    )


def fetch_ahead(
    refs: pa.Table,
    *,
    rows: int,
    source_root: str | None,
    concurrency: int = 256,
    retry: RetryPolicy | None = None,
) -> Iterator[FetchResult]:
    """:func:`fetch_objects` of ``refs`` in slices of ``rows`` rows, in order, each next
    slice fetched in a background thread while the caller works on the current one.

    The fetch waits on the network (and, over HTTP, costs the client's and a local
    server's CPU); overlapped, it runs beside the caller's parsing instead of before it.
    """
    slices = [refs.slice(offset, rows) for offset in range(0, refs.num_rows, max(1, rows))]
    fetch = functools.partial(
        fetch_objects, source_root=source_root, concurrency=concurrency, retry=retry
    )
    if len(slices) <= 1:
        yield fetch(slices[0] if slices else refs)
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch-ahead") as pool:
        pending = pool.submit(fetch, slices[0])
        for following in slices[1:]:
            current = pending.result()
            pending = pool.submit(fetch, following)
            yield current
        yield pending.result()
