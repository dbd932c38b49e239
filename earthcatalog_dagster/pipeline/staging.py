"""Fetch, parse and fan out inventory batches, ahead of the reader and on every core.

The worker side of :func:`~earthcatalog_dagster.pipeline.ingest.ingest`. It lives apart
from the engine so that a worker process imports only what a batch needs (fetch, parse,
fan-out: no PyIceberg, no catalog), which halves its start-up.

A staged batch's rows do not come back to the head: the worker sorts them in warehouse
order and writes them to an Arrow IPC file in the run's local spill folder, and returns
their bucket keys only (:data:`~earthcatalog_dagster.core.buckets.KEY_COLUMNS`, a few
percent of a row). The head orders every row from the keys, then gathers the rows a group
of buckets at a time from the memory-mapped files (:class:`StagedRows`): in each file a
group's rows are one run, so a gather reads just them. What the head holds is bounded by a
group of buckets, not by the run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.buckets import KEY_COLUMNS, bucket_order, explode_to_cells
from earthcatalog_dagster.core.fetch import fetch_objects
from earthcatalog_dagster.core.items import parse_items
from earthcatalog_dagster.core.schema import WAREHOUSE_SCHEMA
from earthcatalog_dagster.pipeline import compute
from earthcatalog_dagster.pipeline.outcomes import outcome_table
from earthcatalog_dagster.pipeline.runtime import paused_gc

#: Runs past this many rows parse and fan out in the process pool (two default batches:
#: smaller runs do not repay its start-up, ~1 s of imports in the fork server).
PARALLEL_AFTER_ROWS = 4_000
#: The name of a run's spill folder in ``TMPDIR``: a scratch folder
#: (:mod:`earthcatalog_dagster.core.scratch`), so a killed run's is removed by the next run.
SPILL_PREFIX = "earthcatalog-ingest-"
#: One fan-out at a time per process. The fan-out's cached, prepared GEOS outlines are
#: shared, and GEOS prepared geometries are not thread-safe (libgeos/geos#825): two
#: staging threads fanning out at once crashed the process now and then (a segfault in
#: libgeos). Fetching and parsing still overlap it.
_FAN_OUT_LOCK = threading.Lock()


@dataclass
class StagedBatch:
    """One inventory batch fetched, parsed and fanned out: where its rows are, their bucket
    keys, and the outcomes of its objects.

    ``spill`` is the Arrow IPC file of its rows (one per item and cell, in the warehouse
    schema, in warehouse order: by bucket, then platform, datetime, id; equal rows in
    their input order), ``None`` when it has none; ``keys`` holds their
    :data:`KEY_COLUMNS`, row for row.
    """

    spill: str | None
    keys: pa.Table
    outcomes: pa.Table
    fetched: int
    missing: int
    failed: int
    rejected: int
    items: int
    seconds: dict[str, float]
    mismatches: pa.Table
    bboxes_recomputed: int = 0
    example_missing: str | None = None


def stage_batch(
    batch: pa.Table,
    *,
    spill_dir: str,
    source_root: str | None,
    resolution: int,
    fetch_concurrency: int,
) -> StagedBatch:
    """Fetch, parse and fan out one batch (in a worker thread or process); its rows go to
    an Arrow IPC file in ``spill_dir``, a local folder."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    fetched = fetch_objects(batch, source_root=source_root, concurrency=fetch_concurrency)
    seconds["fetch"] = time.perf_counter() - started
    with paused_gc():
        started = time.perf_counter()
        parsed = parse_items(fetched.bodies, fetched.keys)
        seconds["parse"] = time.perf_counter() - started
        started = time.perf_counter()
        with _FAN_OUT_LOCK:
            exploded = explode_to_cells(parsed, resolution)
        seconds["fan_out"] = time.perf_counter() - started
    started = time.perf_counter()
    rows = exploded.take(pa.array(bucket_order(exploded).indices))
    spill = spill_rows(rows, spill_dir)
    seconds["spill"] = time.perf_counter() - started
    return StagedBatch(
        spill=spill,
        keys=rows.select(list(KEY_COLUMNS)),
        outcomes=outcome_table(parsed.rejects, fetched.missing, fetched.failed),
        fetched=len(fetched.bodies),
        missing=fetched.missing.num_rows,
        failed=fetched.failed.num_rows,
        rejected=len(parsed.rejects),
        items=parsed.table.num_rows,
        seconds=seconds,
        mismatches=parsed.mismatches,
        bboxes_recomputed=len(parsed.fixes),
        example_missing=_first_source(fetched.missing, source_root),
    )


def spill_rows(rows: pa.Table, spill_dir: str) -> str | None:
    """Write ``rows``, cast to the warehouse schema, to a new uncompressed Arrow IPC file
    in ``spill_dir`` (read back memory-mapped, without a copy); its path, or ``None`` for
    no rows."""
    if rows.num_rows == 0:
        return None
    rows = rows.cast(WAREHOUSE_SCHEMA)
    path = f"{spill_dir}/rows_{uuid.uuid4().hex}.arrow"
    with pa.ipc.new_file(path, WAREHOUSE_SCHEMA) as writer:
        writer.write_table(rows)
    return path


def _libc_malloc_trim() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def release_unused_memory() -> None:
    """Give the memory freed so far back to the system.

    Freed memory stays with its allocator for reuse: Arrow's pool (mimalloc, a heap per
    thread) and glibc's ``malloc`` (an arena per thread, where parsed JSON and Python
    objects lived). After staging batches in this process's threads that is ~100–300 MB
    the write phase would otherwise add its own to. Takes milliseconds.
    """
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class StagedRows:
    """The rows of every staged batch of a run, in the order the batches were staged.

    The rows stay in their spill files; only their bucket keys are held here. Row
    positions count across batches, in that order (as if the batches were concatenated).
    """

    def __init__(self) -> None:
        self.files: list[str] = []
        self.keys: list[pa.Table] = []
        self.offsets: list[int] = [0]

    @property
    def num_rows(self) -> int:
        return self.offsets[-1]

    def add(self, spill: str | None, keys: pa.Table) -> None:
        """Append the rows of the spill file ``spill``, whose :data:`KEY_COLUMNS` are
        ``keys`` (row for row)."""
        if spill is None or keys.num_rows == 0:
            return
        self.files.append(spill)
        self.keys.append(keys)
        self.offsets.append(self.offsets[-1] + keys.num_rows)

    def key_table(self) -> pa.Table:
        """The :data:`KEY_COLUMNS` of every row, at its position."""
        if not self.keys:
            return pa.schema([WAREHOUSE_SCHEMA.field(name) for name in KEY_COLUMNS]).empty_table()
        return pa.concat_tables(self.keys)

    def gather(self, positions: np.ndarray) -> pa.Table:
        """The rows at ``positions``, in that order, as one contiguous table.

        Each spill file is memory-mapped only while its rows are copied out. A file's
        rows that are one run (a group of whole buckets is, each file being in warehouse
        order) are copied as one slice: only their pages are read.
        """
        positions = np.asarray(positions, dtype=np.int64)
        ascending = np.argsort(positions, kind="stable")
        wanted = positions[ascending]
        offsets = np.asarray(self.offsets, dtype=np.int64)
        cuts = np.searchsorted(wanted, offsets)
        pieces = []
        for number, path in enumerate(self.files):
            start, end = int(cuts[number]), int(cuts[number + 1])
            if start == end:
                continue
            local = wanted[start:end] - offsets[number]
            first, count = int(local[0]), len(local)
            with pa.memory_map(path) as source:
                rows = pa.ipc.open_file(source).read_all()
                if int(local[-1]) - first + 1 == count:  # combining copies the slice out
                    run = pa.concat_tables([rows.slice(first, count), _EMPTY])
                    pieces.append(run.combine_chunks())
                else:
                    pieces.append(rows.take(pa.array(local)))
                del rows
        if not pieces:
            return _EMPTY
        inverse = np.empty_like(ascending)
        inverse[ascending] = np.arange(len(ascending), dtype=ascending.dtype)
        # One take across the pieces' chunks gathers straight into one chunk per column.
        return pa.concat_tables(pieces).take(pa.array(inverse))


_EMPTY = WAREHOUSE_SCHEMA.empty_table()


def _first_source(refs: pa.Table, source_root: str | None) -> str | None:
    """Where the first of ``refs`` (bucket, key) was read from, for error messages."""
    if not refs.num_rows:
        return None
    return layout.source_object(refs["bucket"][0].as_py(), refs["key"][0].as_py(), source_root)


def read_ahead(batches: Iterator[pa.Table]) -> tuple[list[pa.Table], bool]:
    """The first batches of a run, just enough to tell whether it repays the process pool
    (more than ``PARALLEL_AFTER_ROWS`` rows), and whether it does: a large run then uses
    both cores from its first batch (:class:`Stager`'s ``large``)."""
    ahead: list[pa.Table] = []
    held = 0
    while held <= PARALLEL_AFTER_ROWS and (batch := next(batches, None)) is not None:
        ahead.append(batch)
        held += batch.num_rows
    return ahead, held > PARALLEL_AFTER_ROWS


class Stager:
    """Runs :func:`stage_batch` ahead of the inventory reader, results in order.

    A run known to be ``large`` (more than ``PARALLEL_AFTER_ROWS`` rows) stages every
    batch in the shared process pool
    (:func:`~earthcatalog_dagster.pipeline.compute.process_pool`, at most one process per
    CPU, forked from a server that imported this module once): parsing and H3 fan-out
    hold the GIL, so only processes use a second core. Otherwise the first batches go to
    two threads (fetching one batch while parsing another), as a run of one or two
    batches is not worth the pool's start-up, and the pool takes over once the run has
    shown more than ``PARALLEL_AFTER_ROWS`` rows.
    """

    def __init__(
        self, stage: Callable[[pa.Table], StagedBatch], workers: int, *, large: bool = False
    ) -> None:
        self.stage, self.workers, self.large = stage, workers, large
        self.threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stage")
        self.processes: ProcessPoolExecutor | None = None
        self.inflight: deque[Future] = deque()
        self.rows = 0

    def __enter__(self) -> Stager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.threads.shutdown(wait=True, cancel_futures=True)
        if self.processes is not None:
            compute.release_pool()  # the workers' memory goes back before the writes

    def submit(self, batch: pa.Table) -> list[StagedBatch]:
        self.rows += batch.num_rows
        parallel = compute.pool_size(self.workers) > 1
        if self.processes is None and parallel and (self.large or self.rows > PARALLEL_AFTER_ROWS):
            self.processes = compute.process_pool(self.workers)
        if self.processes is not None:
            # Workers fork from the server's environment: hand them this process's S3
            # settings with every task.
            task = compute.S3Task(self.stage, storage.s3_overrides())
            self.inflight.append(self.processes.submit(task, batch))
        else:
            self.inflight.append(self.threads.submit(self.stage, batch))
        ready = []
        limit = 2 * compute.pool_size(self.workers) if self.processes else 2
        while len(self.inflight) > limit or (self.inflight and self.inflight[0].done()):
            ready.append(self.inflight.popleft().result())
        return ready

    def drain(self) -> list[StagedBatch]:
        ready = [future.result() for future in self.inflight]
        self.inflight.clear()
        return ready
