"""Where phase tasks run (:mod:`earthcatalog_dagster.pipeline.compute`): the process pool
gives the loop's results, in order, carries the S3 settings, and fails like the loop;
``auto`` stays in process for a single task."""

from __future__ import annotations

import pytest

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.pipeline import compute


def _s3_endpoint(_: object) -> str | None:
    return storage.s3_overrides().get("endpoint_url")


def test_auto_runs_one_task_in_process_and_more_on_the_pool(monkeypatch) -> None:
    assert compute.resolve_scheduler("auto", 1) == "synchronous"
    assert compute.resolve_scheduler("local", 1) == "local"
    monkeypatch.setattr(compute, "cpu_count", lambda: 1)
    assert compute.resolve_scheduler("auto", 50) == "synchronous"
    assert compute.pool_size(4) == 1
    monkeypatch.setattr(compute, "cpu_count", lambda: 2)
    assert compute.resolve_scheduler("auto", 50) == "processes"
    assert compute.pool_size(4) == 2
    compute.validate_scheduler("auto")
    compute.validate_scheduler("processes")
    with pytest.raises(ValueError, match="unknown scheduler"):
        compute.validate_scheduler("threads")


def test_the_process_pool_gives_the_loops_results_in_order() -> None:
    items = list(range(40))
    seen: list[int] = []
    try:
        results = compute.run_tasks(
            abs, [-i for i in items], scheduler="processes", workers=2, on_result=seen.append
        )
        assert results == items
        assert sorted(seen) == items
        # The pool is kept for the next phase, and the task carries the S3 settings.
        pool = compute.process_pool(2)
        storage.configure_s3(endpoint_url="http://127.0.0.1:9")
        assert (
            compute.run_tasks(_s3_endpoint, [0, 1], scheduler="processes", workers=2)
            == ["http://127.0.0.1:9"] * 2
        )
        assert compute.process_pool(2) is pool
        with pytest.raises(ZeroDivisionError):
            compute.run_in_pool(_divide, [1, 0, 2], workers=2)
    finally:
        storage.configure_s3()
        compute.release_pool()


def _divide(x: int) -> float:
    return 1 / x
