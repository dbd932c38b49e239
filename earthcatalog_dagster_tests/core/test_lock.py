from __future__ import annotations

import json
import multiprocessing
import time
from datetime import UTC, datetime, timedelta

import pytest

from earthcatalog_dagster.core import lock, storage


def test_acquire_release_and_contention(tmp_path) -> None:
    uri = str(tmp_path / "catalog.db.lock")
    mine = lock.acquire(uri, owner="first")
    body = json.loads(storage.read_bytes(uri))
    assert {"owner", "hostname", "pid", "acquired", "ttl_hours"} <= set(body)
    with pytest.raises(lock.LockHeld, match="held by first") as err:
        lock.acquire(uri, owner="second", timeout=0.2, poll=0.05)
    assert "expires at" in str(err.value)
    assert lock.release(uri, mine)
    assert not storage.exists(uri)
    other = lock.acquire(uri, owner="second", timeout=0.2)
    assert not lock.release(uri, mine)  # not ours any more: left in place
    assert storage.exists(uri)
    assert lock.release(uri, other)


def test_stale_lock_is_overridden(tmp_path, caplog) -> None:
    uri = str(tmp_path / "catalog.db.lock")
    old = lock.LockInfo(
        "crashed-run", "host", 1, (datetime.now(UTC) - timedelta(hours=7)).isoformat(), 6.0, "x"
    )
    storage.write_bytes(uri, old.to_json())
    mine = lock.acquire(uri, owner="new", timeout=0.5)
    assert mine.owner == "new"
    assert "overriding stale lock" in caplog.text and "crashed-run" in caplog.text


def _hold(uri: str, seconds: float, log_path: str) -> None:
    with lock.held(uri, owner="proc", timeout=30, poll=0.02):
        start = time.time()
        time.sleep(seconds)
        with open(log_path, "a") as log:
            log.write(f"{start} {time.time()}\n")


def test_two_processes_never_hold_it_together(tmp_path) -> None:
    uri = str(tmp_path / "catalog.db.lock")
    log_path = str(tmp_path / "spans.txt")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hold, args=(uri, 0.5, log_path)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with open(log_path) as log:
        spans = sorted(tuple(map(float, line.split())) for line in log)
    assert len(spans) == 2
    assert spans[0][1] <= spans[1][0]  # the second started after the first released
    assert not storage.exists(uri)


def _foreign_lock(uri: str, *, owner: str = "nightly-ingest") -> lock.LockInfo:
    """A live lock of a process on another host (so it is neither stale nor gone)."""
    holder = lock.LockInfo(
        owner, "ci-runner-7", 4242, datetime.now(UTC).isoformat(), 6.0, "theirs", "?"
    )
    storage.write_bytes(uri, holder.to_json())
    return holder


def test_a_wait_says_who_holds_the_lock_at_once_then_shows_progress(tmp_path, caplog) -> None:
    uri = str(tmp_path / "catalog.db.lock")
    holder = _foreign_lock(uri)
    caplog.set_level("WARNING", logger=lock.__name__)
    started = time.monotonic()
    with pytest.raises(lock.LockHeld) as err:
        lock.acquire(uri, owner="me", timeout=1.0, poll=0.05, progress_every=0.3)
    assert time.monotonic() - started < 5

    messages = [r.getMessage() for r in caplog.records if r.name == lock.__name__]
    first = messages[0]
    assert first.startswith(f"waiting for lock {uri}")
    for part in ("nightly-ingest", "ci-runner-7", "pid 4242", holder.expires.isoformat()):
        assert part in first, first
    progress = [m for m in messages if m.startswith("still waiting")]
    assert 2 <= len(progress) <= 4, messages
    assert all("nightly-ingest on ci-runner-7 (pid 4242)" in m for m in progress)
    final = str(err.value)
    assert "held by nightly-ingest on ci-runner-7 (pid 4242)" in final
    assert holder.expires.isoformat() in final


def test_no_wait_no_message(tmp_path, caplog) -> None:
    uri = str(tmp_path / "catalog.db.lock")
    caplog.set_level("WARNING", logger=lock.__name__)
    lock.release(uri, lock.acquire(uri, owner="me", timeout=0.1))
    assert not [r for r in caplog.records if r.name == lock.__name__]
