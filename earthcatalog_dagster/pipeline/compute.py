"""Where phase tasks run: in this process, in a pool of processes, or on a Dask cluster.

``scheduler`` is

- ``"synchronous"``: a plain loop in this process (tests, smoke runs);
- ``"processes"``: a pool of ``min(workers, CPUs)`` worker processes on this machine
  (:func:`process_pool`), forked from a fork server that imported the phases once, and
  kept for the next call (Phase 2, then Phase 3) until :func:`release_pool`;
- ``"auto"``: ``synchronous`` for a single task or a single CPU, ``processes`` otherwise
  (:func:`resolve_scheduler`): the Dagster deployment's default;
- ``"local"``: a Dask ``LocalCluster`` of ``workers`` processes;
- a scheduler address (``tcp://host:8786``), ``"coiled"``, or anything else when
  ``create_client`` is given (a callable returning a ``dask.distributed.Client``, e.g.
  ``lambda: coiled.Cluster(...).get_client()``), called lazily right before the first task.

Why ``processes`` rather than a ``LocalCluster`` on one machine: both put the tasks on
every core, but a cluster starts a scheduler, a nanny and a worker per process (each
importing Dask, the phases and their libraries: ~5–10 s of CPU on a 2-core runner, paid
per call), then serializes every task and result through the scheduler; the pool starts
its workers by forking one already-imported server (well under a second) and only pickles
the task and its small descriptor. The phases' work is Python and holds the GIL (JSON
parsing, H3 fan-out, Arrow conversion), so threads would not use a second core.
Tasks return small descriptors only.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic, TypeVar

from earthcatalog_dagster.core import storage

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)
SCHEDULERS = ("synchronous", "processes", "auto", "local", "coiled")
#: Imported once by the pool's fork server, so forked workers start with them loaded.
#: ``__main__`` too: every worker of a ``forkserver``/``spawn`` pool otherwise re-runs the
#: main script (``dagster``'s console script imports ``dagster.cli``: seconds per worker);
#: preloaded, the workers inherit it and skip that.
_PRELOAD = [
    "__main__",
    "earthcatalog_dagster.pipeline.phases",
    "earthcatalog_dagster.pipeline.staging",
]
#: Dask settings of the workers we start. On Python 3.11 a worker's statistical profiler
#: (``sys._current_frames()`` every 10 ms) can deadlock the worker for good when a garbage
#: collection runs a ``gc.callbacks`` hook inside it while a task starts a thread
#: (CPython gh-106883, fixed in 3.12; seen here as a worker frozen in Phase 2 until the
#: scheduler's worker TTL restarts it). Remote clusters need the same setting
#: (``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False``) or Python >= 3.12.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False} if sys.version_info < (3, 12) else {}


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_scheduler(scheduler: str, tasks: int) -> str:
    """What ``auto`` means for ``tasks`` tasks on this machine; other names unchanged.

    One task, or one CPU: ``synchronous`` (a pool would only add its start-up). Otherwise
    ``processes``: every core, without a Dask cluster's start-up.
    """
    if scheduler != "auto":
        return scheduler
    return "synchronous" if tasks <= 1 or cpu_count() <= 1 else "processes"


#: Warehouse file writers per task on S3, where a writer mostly waits for its PUT.
S3_WRITERS = 16


def writer_threads(warehouse: str, scheduler: str, tasks: int) -> int:
    """Threads that encode and write warehouse files within one task.

    On S3, enough to overlap the PUTs' round trips. On local disk, one per CPU when the
    tasks run one at a time in this process (Parquet encoding releases the GIL: measured
    1.7–2.3 ms per file with 2 threads on 2 cores against 3.6–4.0 ms with one), else one:
    the other tasks' processes hold the other CPUs.
    """
    if not storage.is_local(warehouse):
        return S3_WRITERS
    return cpu_count() if resolve_scheduler(scheduler, tasks) == "synchronous" else 1


def validate_scheduler(scheduler: str, create_client: Callable[[], Any] | None = None) -> None:
    """Fail at once on a scheduler we cannot run."""
    if scheduler in ("synchronous", "processes", "auto", "local") or "://" in scheduler:
        return
    if create_client is not None:
        return
    if scheduler == "coiled":
        return
    raise ValueError(
        f"unknown scheduler {scheduler!r}: use 'synchronous', 'processes', 'auto', 'local', "
        "'coiled', a scheduler address such as tcp://host:8786, or pass create_client="
    )


def run_tasks(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    scheduler: str = "local",
    workers: int = 4,
    threads_per_worker: int = 1,
    create_client: Callable[[], Any] | None = None,
    on_result: Callable[[R], None] | None = None,
    client: Any = None,
) -> list[R]:
    """``[fn(item) for item in items]``, spread over the chosen scheduler, in input order.

    ``client``: an open ``dask.distributed.Client`` to run on (left open); otherwise one is
    opened for this call (:func:`open_client`) and closed after it.
    """
    validate_scheduler(scheduler, create_client)
    if not items:
        return []
    if create_client is None and client is None:
        scheduler = resolve_scheduler(scheduler, len(items))
        if scheduler == "synchronous":
            results = []
            for item in items:
                results.append(fn(item))
                if on_result:
                    on_result(results[-1])
            return results
        if scheduler == "processes":
            return run_in_pool(fn, items, workers=workers, on_result=on_result)

    from dask.distributed import as_completed

    owned = client is None
    cluster = None
    if owned:
        client, cluster = open_client(scheduler, workers, threads_per_worker, create_client)
    try:
        futures = client.map(fn, list(items), pure=False)
        position = {future.key: i for i, future in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        for future in as_completed(futures):
            results[position[future.key]] = future.result()
            if on_result:
                on_result(results[position[future.key]])
        return results
    finally:
        if owned:
            close_client(client, cluster)


def open_client(
    scheduler: str,
    workers: int,
    threads_per_worker: int = 1,
    create_client: Callable[[], Any] | None = None,
) -> tuple[Any, Any]:
    """A Dask client for ``scheduler`` and the cluster it started (``None`` if none)."""
    from dask.distributed import Client, LocalCluster

    if create_client is not None:
        return create_client(), None
    if scheduler == "local":
        import dask

        with dask.config.set(WORKER_CONFIG):  # captured by the nannies, kept on restarts
            cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                dashboard_address=":0",  # a free port: None still binds 8787
            )
        return Client(cluster), cluster
    if scheduler == "coiled":
        import coiled  # imported only when asked for
        import dask

        with dask.config.set(WORKER_CONFIG):  # Coiled ships the local Dask config
            cluster = coiled.Cluster(n_workers=workers)
        return cluster.get_client(), cluster
    return Client(scheduler), None


def close_client(client: Any, cluster: Any) -> None:
    """Close what :func:`open_client` returned."""
    client.close()
    if cluster is not None:
        cluster.close()


# --- the process pool ----------------------------------------------------------------------------


def configure_data_plane(settings: dict[str, str]) -> None:
    """Give :mod:`storage` these S3 settings unless it has them (stores stay cached)."""
    if storage.s3_overrides() != settings:
        storage.configure_s3(**settings)


class S3Task(Generic[T, R]):
    """``fn`` run with the data plane configured from S3 settings: for worker processes
    (a pool's or Dask's), which do not share this process's :func:`storage.configure_s3`.
    The settings travel with the task; ``repr`` shows none of them."""

    def __init__(self, fn: Callable[[T], R], settings: dict[str, str]) -> None:
        self.fn = fn
        self.settings = settings

    def __call__(self, item: T) -> R:
        configure_data_plane(self.settings)
        return self.fn(item)

    def __repr__(self) -> str:
        return f"S3Task({self.fn!r}, <{len(self.settings)} S3 settings>)"


_pool_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_workers = 0


def pool_size(workers: int) -> int:
    """Processes of a pool asked for ``workers``: never more than the CPUs (more
    processes than cores only add start-up and memory)."""
    return max(1, min(workers, cpu_count()))


def process_pool(workers: int) -> ProcessPoolExecutor:
    """This process's pool of ``pool_size(workers)`` processes, started on first use.

    Workers fork from a fork server that imported the phases once (``forkserver``: the
    server is single-threaded, so forking it is safe, unlike forking this process with its
    I/O threads running), and the pool is kept for the next call of the same size.
    """
    global _pool, _pool_workers
    size = pool_size(workers)
    with _pool_lock:
        if _pool is not None and _pool_workers != size:
            _pool.shutdown(wait=True, cancel_futures=True)
            _pool = None
        if _pool is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(_PRELOAD)
            _pool = ProcessPoolExecutor(max_workers=size, mp_context=context)
            _pool_workers = size
        return _pool


def release_pool() -> None:
    """Stop the process pool (its workers' memory goes back before the head's own peak)."""
    global _pool
    with _pool_lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(release_pool)


def run_in_pool(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int,
    on_result: Callable[[R], None] | None = None,
) -> list[R]:
    """``[fn(item) for item in items]`` on :func:`process_pool`, results in input order.

    Each task carries this process's S3 settings (:class:`S3Task`). The first failure
    cancels the tasks not started yet and is raised; a pool that lost a worker (killed,
    out of memory) is dropped, so the next call starts a fresh one.
    """
    task = fn if isinstance(fn, S3Task) else S3Task(fn, storage.s3_overrides())
    pool = process_pool(workers)
    try:
        futures = [pool.submit(task, item) for item in items]
    except BrokenProcessPool:
        release_pool()
        raise
    position = {future: i for i, future in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    pending = set(futures)
    try:
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in sorted(done, key=position.__getitem__):
                results[position[future]] = future.result()
                if on_result:
                    on_result(results[position[future]])
    except BaseException as exc:
        for future in pending:
            future.cancel()
        if isinstance(exc, BrokenProcessPool):
            release_pool()
        raise
    return results
