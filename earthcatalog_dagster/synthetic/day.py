"""A day of new objects: :func:`generate_day` writes them under a source root.

The objects go through :mod:`~earthcatalog_dagster.core.storage`, so the root may be a
folder or ``s3://``; :class:`GeneratedDay` says what was written and what a correct ingest
must make of it.
"""

from __future__ import annotations

import datetime as dt
import gc
import hashlib
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from earthcatalog_dagster import layout
from earthcatalog_dagster.core.storage import write_bytes
from earthcatalog_dagster.synthetic.bad import BAD_KINDS, GOOD_BAD_KINDS, object_body
from earthcatalog_dagster.synthetic.base import _UTC, ITEM_SUFFIX, SOURCE_BUCKET, _as_date, _Draws
from earthcatalog_dagster.synthetic.footprints import _SPECIALS
from earthcatalog_dagster.synthetic.items import item_key, make_item

RECENT_SHARE = 0.9  # share of a day's new pairs acquired in the two years before it
_WRITE_WORKERS = 8  # small objects on a local disk: more threads only fight for the GIL
_WRITE_BATCH = 256


@dataclass
class GeneratedDay:
    """What :func:`generate_day` wrote, and what a correct ingest must make of it.

    - ``items``: the items expected in the warehouse (normal, ``null_geometry`` and
      ``coercible`` ones, the latter as written, numbers still strings).
    - ``refs``: every key of the day as the inventory lists it — bucket, key,
      last_modified_date (timestamp[ms, UTC]), size, e_tag — including the bad and the
      missing objects and a few non-item keys (``.nc``, ``.png``: see ``other_keys``) that
      readers filter out; sorted by key.
    - ``expected``: bad kind (:data:`BAD_KINDS`) → keys of those objects.
    - ``good_ids``: the ids the warehouse must hold after ingesting the day.
    """

    date: dt.date
    items: list[dict[str, Any]]
    refs: pa.Table
    expected: dict[str, list[str]]
    good_ids: list[str]
    other_keys: list[str] = field(default_factory=list)

    @property
    def item_keys(self) -> list[str]:
        """Every ``.stac.json`` key of the day (good, bad and missing)."""
        return [k for k in self.refs.column("key").to_pylist() if k.endswith(ITEM_SUFFIX)]


def _write_all(jobs: Iterable[tuple[str, bytes]], workers: int = _WRITE_WORKERS) -> None:
    """Write many small objects with a thread pool, in batches, a bounded number in flight."""

    def write_batch(batch: list[tuple[str, bytes]]) -> None:
        for uri, data in batch:
            write_bytes(uri, data)

    pending: list[Future[None]] = []
    batch: list[tuple[str, bytes]] = []
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for job in jobs:
            batch.append(job)
            if len(batch) >= _WRITE_BATCH:
                pending.append(pool.submit(write_batch, batch))
                batch = []
                if len(pending) >= 4 * workers:
                    for fut in pending:
                        fut.result()
                    pending = []
        if batch:
            pending.append(pool.submit(write_batch, batch))
        for fut in pending:
            fut.result()


def generate_day(
    date: dt.date | str,
    n: int,
    *,
    source_root: str,
    seed: int = 0,
    bad: bool = True,
    start_index: int = 0,
    bad_per_kind: int = 2,
) -> GeneratedDay:
    """Write one day of new ITS_LIVE objects under ``source_root`` and describe them.

    ``n`` good items (``len(good_ids) == n``; with ``bad=True`` up to ``bad_per_kind`` of
    them are ``null_geometry`` and as many ``coercible``), plus ``bad_per_kind`` objects of
    each other bad kind. Objects go to ``layout.source_object(SOURCE_BUCKET, key,
    source_root)``; their last-modified times fall within ``date`` (UTC), the items'
    ``created``/``updated`` a few hours before. ``seed``, ``date`` and ``start_index`` all
    feed the random stream, so days, seeds and batches of one day get different ids.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    date = _as_date(date)
    rng = np.random.default_rng([seed, date.toordinal(), start_index])
    draw = _Draws(rng)
    day_start = dt.datetime(date.year, date.month, date.day, tzinfo=_UTC)
    before = date - dt.timedelta(days=2)
    per_kind = bad_per_kind if bad else 0
    n_null = min(per_kind, n // 3)
    n_coercible = min(per_kind, n // 3)
    n_extra = per_kind * (len(BAD_KINDS) - len(GOOD_BAD_KINDS))
    specials = [name for name, count in _SPECIALS for _ in range(count)]
    if n < 4 * len(specials):
        specials = []

    seen: set[str] = set()
    keys: list[str] = []
    sizes: list[int] = []
    etags: list[str] = []
    modified: list[int] = []  # epoch seconds
    items: list[dict[str, Any]] = []
    expected: dict[str, list[str]] = {kind: [] for kind in BAD_KINDS}
    other_keys: list[str] = []
    other_sizes: list[int] = []
    other_etags: list[str] = []
    other_modified: list[int] = []
    extra_kinds = [k for k in BAD_KINDS if k not in GOOD_BAD_KINDS for _ in range(per_kind)]
    total = n + n_extra

    def new_item(i: int, last_modified: dt.datetime) -> dict[str, Any]:
        created = last_modified - dt.timedelta(seconds=draw.uniform(900, 12 * 3600))
        region = specials[i] if i < len(specials) else None
        while True:
            # Most pairs of a day's delta were acquired in the last two years; a few come
            # from reprocessing campaigns over the whole archive.
            after = before - dt.timedelta(days=730) if draw() < RECENT_SHARE else None
            item = make_item(rng, region=region, created=created, before=before, after=after)
            if item["id"] not in seen:
                seen.add(item["id"])
                return item

    def jobs() -> Iterator[tuple[str, bytes]]:
        for i in range(total):
            lm_seconds = draw.integer(0, 86_399)
            last_modified = day_start + dt.timedelta(seconds=lm_seconds)
            item = new_item(i, last_modified)
            key = item_key(item)
            kind: str | None = None
            if i >= n:
                kind = extra_kinds[i - n]
            elif i >= n - n_null:
                kind = "null_geometry"
            elif i >= n - n_null - n_coercible:
                kind = "coercible"

            body = object_body(item, kind, draw)
            if i < n:
                items.append(item)
            if kind is not None:
                expected[kind].append(key)
            keys.append(key)
            sizes.append(len(body))
            etags.append(hashlib.md5(body, usedforsecurity=False).hexdigest())
            modified.append(int(last_modified.timestamp()))
            if i < 2 and n > 0:  # the granule's other files, listed but not items
                stem = key[: -len(ITEM_SUFFIX)]
                for suffix, size in (
                    (".nc", draw.integer(2_000_000, 40_000_000)),
                    (".png", draw.integer(40_000, 400_000)),
                ):
                    other_keys.append(stem + suffix)
                    other_sizes.append(size)
                    other_etags.append(f"{draw.integer(0, 2**63 - 1):032x}")
                    other_modified.append(int(last_modified.timestamp()) - 60)
            if kind != "missing":
                yield layout.source_object(SOURCE_BUCKET, key, source_root), body

    # Tens of thousands of live dicts make the cyclic GC rescan them over and over (it
    # doubled the run time); nothing here builds cycles, so pause it while generating.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _write_all(jobs())
    finally:
        if gc_was_enabled:
            gc.enable()

    all_keys = keys + other_keys
    refs = pa.table(
        {
            "bucket": pa.array([SOURCE_BUCKET] * len(all_keys), pa.string()),
            "key": pa.array(all_keys, pa.string()),
            "last_modified_date": pa.array(
                np.array(modified + other_modified, dtype="datetime64[s]").astype("datetime64[ms]"),
                pa.timestamp("ms", tz="UTC"),
            ),
            "size": pa.array(sizes + other_sizes, pa.int64()),
            "e_tag": pa.array(etags + other_etags, pa.string()),
        }
    ).sort_by("key")
    good_ids = [item["id"] for item in items]
    return GeneratedDay(date, items, refs, expected, good_ids, other_keys)
