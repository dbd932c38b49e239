"""Where phase tasks run: in this process, on a local Dask cluster, or on a remote one.

``scheduler`` is ``"synchronous"`` (a plain loop, for tests and smoke runs), ``"local"``
(a ``LocalCluster`` of ``workers`` processes), a scheduler address (``tcp://host:8786``),
or anything else when ``create_client`` is given (a callable returning a
``dask.distributed.Client``, e.g. ``lambda: coiled.Cluster(...).get_client()``), called
lazily right before the first task. Tasks return small descriptors only.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)
SCHEDULERS = ("synchronous", "local", "coiled")
#: Dask settings of the workers we start. On Python 3.11 a worker's statistical profiler
#: (``sys._current_frames()`` every 10 ms) can deadlock the worker for good when a garbage
#: collection runs a ``gc.callbacks`` hook inside it while a task starts a thread
#: (CPython gh-106883, fixed in 3.12; seen here as a worker frozen in Phase 2 until the
#: scheduler's worker TTL restarts it). Remote clusters need the same setting
#: (``DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False``) or Python >= 3.12.
WORKER_CONFIG = {"distributed.worker.profile.enabled": False} if sys.version_info < (3, 12) else {}


def validate_scheduler(scheduler: str, create_client: Callable[[], Any] | None = None) -> None:
    """Fail at once on a scheduler we cannot run."""
    if scheduler in ("synchronous", "local") or "://" in scheduler:
        return
    if create_client is not None:
        return
    if scheduler == "coiled":
        return
    raise ValueError(
        f"unknown scheduler {scheduler!r}: use 'synchronous', 'local', 'coiled', a scheduler "
        "address such as tcp://host:8786, or pass create_client="
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
    if scheduler == "synchronous" and create_client is None and client is None:
        results = []
        for item in items:
            results.append(fn(item))
            if on_result:
                on_result(results[-1])
        return results

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
