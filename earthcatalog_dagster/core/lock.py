"""A lock object next to the catalog: one writer at a time for ``catalog.db`` and the index.

The lock is created with put-if-absent (``If-None-Match: *`` on S3, ``O_EXCL`` locally);
its JSON body names the owner, host, pid, acquisition time and TTL. A lock older than its
TTL is stale and is overridden with a warning; so is a lock whose holder was a process of
this host (same hostname and PID namespace) that no longer exists — a run killed while
holding it — so that its rerun does not wait out the TTL. A live lock held by someone else
makes us wait up to ``timeout`` seconds, then fail naming the holder and when the lock
expires.
Release deletes the lock only while it is still ours.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta

from earthcatalog_dagster.core import storage

log = logging.getLogger(__name__)
DEFAULT_TTL_HOURS = 6.0
#: Seconds between the "still waiting for the lock" messages of a wait.
PROGRESS_EVERY_S = 30.0
_UNKNOWN_NAMESPACE = "?"


def _pid_namespace() -> str | None:
    """This process's PID namespace (Linux), or None where there are none."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None if not os.path.exists("/proc") else _UNKNOWN_NAMESPACE


def _process_exists(pid: int) -> bool:
    """Whether ``pid`` runs here (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class LockHeld(RuntimeError):
    """Someone else holds a live lock and did not release it within our timeout."""


@dataclass(frozen=True)
class LockInfo:
    owner: str
    hostname: str
    pid: int
    acquired: str
    ttl_hours: float
    token: str
    #: Where ``pid`` means something; ``"?"`` when unknown (older or foreign lock bodies).
    pid_namespace: str | None = _UNKNOWN_NAMESPACE

    @property
    def expires(self) -> datetime:
        return datetime.fromisoformat(self.acquired) + timedelta(hours=self.ttl_hours)

    def stale(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) >= self.expires

    def holder_gone(self) -> bool:
        """The holder was a process of this very host and PID namespace that has exited."""
        return (
            self.hostname == socket.gethostname()
            and self.pid_namespace != _UNKNOWN_NAMESPACE
            and self.pid_namespace == _pid_namespace()
            and self.pid != os.getpid()
            and not _process_exists(self.pid)
        )

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> LockInfo:
        # Lock bodies of the operators' tooling carry no token (nor pid_namespace): they are
        # live locks all the same, not unreadable ones.
        body = json.loads(data)
        known = {f.name for f in fields(cls)}
        return cls(**{"token": "", **{k: v for k, v in body.items() if k in known}})


def _read(uri: str) -> LockInfo | None:
    try:
        return LockInfo.from_json(storage.read_bytes(uri))
    except FileNotFoundError:
        return None
    except (ValueError, TypeError):
        # An unreadable lock body is treated as stale rather than blocking forever.
        return LockInfo(
            "unreadable lock", "?", 0, datetime(1970, 1, 1, tzinfo=UTC).isoformat(), 0, ""
        )


def describe(holder: LockInfo) -> str:
    """Who holds a lock and until when, for messages: owner, host, pid, acquired, expiry."""
    return (
        f"{holder.owner} on {holder.hostname} (pid {holder.pid}) since {holder.acquired}; "
        f"it expires at {holder.expires.isoformat()} unless released"
    )


def acquire(
    uri: str,
    *,
    owner: str = "earthcatalog-dagster",
    ttl_hours: float = DEFAULT_TTL_HOURS,
    timeout: float = 600.0,
    poll: float = 0.5,
    progress_every: float = PROGRESS_EVERY_S,
) -> LockInfo:
    """Take the lock at ``uri`` or raise :class:`LockHeld` after ``timeout`` seconds.

    As soon as a wait starts it is logged (a warning, so the CLI shows it without
    ``--verbose``) naming the holder and when its lock expires, then every
    ``progress_every`` seconds while the wait lasts, so an operator never stares at a
    silent command; a new holder is announced when the lock changes hands.
    """
    mine = LockInfo(
        owner=owner,
        hostname=socket.gethostname(),
        pid=os.getpid(),
        acquired=datetime.now(UTC).isoformat(),
        ttl_hours=ttl_hours,
        token=uuid.uuid4().hex,
        pid_namespace=_pid_namespace(),
    )
    started = time.monotonic()
    deadline = started + timeout
    waiting_for: LockInfo | None = None
    next_report = started
    while True:
        if storage.write_if_absent(uri, mine.to_json()):
            if waiting_for is not None:
                log.warning(
                    "lock %s acquired after waiting %.0f s", uri, time.monotonic() - started
                )
            return mine
        holder = _read(uri)
        if holder is None:
            continue  # released between our attempt and our read: try again at once
        if holder.stale() or holder.holder_gone():
            log.warning(
                "overriding stale lock %s held by %s on %s (pid %s%s) since %s",
                uri,
                holder.owner,
                holder.hostname,
                holder.pid,
                "" if holder.stale() else ", no longer running",
                holder.acquired,
            )
            if _read(uri) == holder:
                storage.delete(uri)
            continue
        now = time.monotonic()
        if now >= deadline:
            raise LockHeld(
                f"lock {uri} is held by {describe(holder)}; gave up after waiting "
                f"{now - started:.0f} s (the lock timeout)"
            )
        if waiting_for != holder:
            log.warning(
                "waiting for lock %s (at most %.0f s): held by %s",
                uri,
                timeout,
                describe(holder),
            )
            waiting_for, next_report = holder, now + progress_every
        elif now >= next_report:
            log.warning(
                "still waiting for lock %s after %.0f s (%.0f s left): held by %s",
                uri,
                now - started,
                deadline - now,
                describe(holder),
            )
            next_report = now + progress_every
        time.sleep(max(0.0, min(poll, deadline - now)))


def release(uri: str, lock: LockInfo) -> bool:
    """Delete the lock if it is still ours; returns whether it was."""
    current = _read(uri)
    if current is None or current.token != lock.token:
        log.warning("lock %s is no longer ours (now %s); leaving it", uri, current)
        return False
    storage.delete(uri)
    return True


@contextmanager
def held(uri: str | None, **kwargs: object) -> Iterator[LockInfo | None]:
    """``with held(uri):`` — hold the lock for the block; ``uri=None`` means no lock."""
    if uri is None:
        yield None
        return
    lock = acquire(uri, **kwargs)  # type: ignore[arg-type]
    try:
        yield lock
    finally:
        release(uri, lock)
