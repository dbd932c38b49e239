"""Where phase tasks run: in this process, on a local Dask cluster, or on a remote one.

``scheduler`` is ``"synchronous"`` (a plain loop, for tests and smoke runs), ``"local"``
(a ``LocalCluster`` of ``workers`` processes), a scheduler address (``tcp://host:8786``),
or anything else when ``create_client`` is given (a callable returning a
``dask.distributed.Client``, e.g. ``lambda: coiled.Cluster(...).get_client()``), called
lazily right before the first task. Tasks return small descriptors only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)
SCHEDULERS = ("synchronous", "local", "coiled")


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
) -> list[R]:
    """``[fn(item) for item in items]``, spread over the chosen scheduler, in input order."""
    validate_scheduler(scheduler, create_client)
    if not items:
        return []
    if scheduler == "synchronous" and create_client is None:
        results = []
        for item in items:
            results.append(fn(item))
            if on_result:
                on_result(results[-1])
        return results

    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if create_client is not None:
        client = create_client()
    elif scheduler == "local":
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=None,
        )
        client = Client(cluster)
    elif scheduler == "coiled":
        import coiled  # imported only when asked for

        client = coiled.Cluster(n_workers=workers).get_client()
    else:
        client = Client(scheduler)
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
        client.close()
        if cluster is not None:
            cluster.close()
