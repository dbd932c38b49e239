"""Fetch, parse and fan out inventory batches, ahead of the reader and on every core.

The worker side of :func:`~earthcatalog_dagster.pipeline.ingest.ingest`. It lives apart
from the engine so that a worker process imports only what a batch needs (fetch, parse,
fan-out: no PyIceberg, no catalog), which halves its start-up.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.buckets import explode_to_cells
from earthcatalog_dagster.core.fetch import fetch_objects
from earthcatalog_dagster.core.items import parse_items
from earthcatalog_dagster.pipeline import compute
from earthcatalog_dagster.pipeline.outcomes import outcome_table
from earthcatalog_dagster.pipeline.runtime import paused_gc

#: Runs past this many rows parse and fan out in the process pool (two default batches:
#: smaller runs do not repay its start-up, ~1 s of imports in the fork server).
PARALLEL_AFTER_ROWS = 4_000


@dataclass
class StagedBatch:
    """One inventory batch fetched, parsed and fanned out: rows and outcomes."""

    exploded: pa.Table
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
    batch: pa.Table, *, source_root: str | None, resolution: int, fetch_concurrency: int
) -> StagedBatch:
    """Fetch, parse and fan out one batch (in a worker thread or process)."""
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    fetched = fetch_objects(batch, source_root=source_root, concurrency=fetch_concurrency)
    seconds["fetch"] = time.perf_counter() - started
    with paused_gc():
        started = time.perf_counter()
        parsed = parse_items(fetched.bodies, fetched.keys)
        seconds["parse"] = time.perf_counter() - started
        started = time.perf_counter()
        exploded = explode_to_cells(parsed, resolution)
        seconds["fan_out"] = time.perf_counter() - started
    return StagedBatch(
        exploded=exploded,
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


def _first_source(refs: pa.Table, source_root: str | None) -> str | None:
    """Where the first of ``refs`` (bucket, key) was read from, for error messages."""
    if not refs.num_rows:
        return None
    return layout.source_object(refs["bucket"][0].as_py(), refs["key"][0].as_py(), source_root)


class Stager:
    """Runs :func:`stage_batch` ahead of the inventory reader, results in order.

    The first batches go to two threads (fetching one batch while parsing another). Once
    a run has shown more than ``PARALLEL_AFTER_ROWS`` rows, later batches go to the
    shared process pool (:func:`~earthcatalog_dagster.pipeline.compute.process_pool`, at
    most one process per CPU, forked from a server that imported this module once):
    parsing and H3 fan-out hold the GIL, so only processes use a second core, and a run
    of one or two batches is not worth the pool's start-up.
    """

    def __init__(self, stage: Callable[[pa.Table], StagedBatch], workers: int) -> None:
        self.stage, self.workers = stage, workers
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
        if self.processes is None and parallel and self.rows > PARALLEL_AFTER_ROWS:
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
