"""``catalog.db`` around every commit: lock, download, change, conditional upload, release.

The SQLite Iceberg catalog is a single local file; when a remote copy is configured
(``CATALOG_REMOTE``, e.g. ``s3://bucket/catalog/earthcatalog.db``) every writer works like
this, and :func:`catalog_session` is the one place that does it:

1. take the lock object beside the remote catalog (``<remote>.lock``, see
   :mod:`~earthcatalog_dagster.core.lock`; without a remote, the lock beside the local
   file, as before);
2. download the remote catalog over the local path (none yet: start fresh) and remember
   its ETag;
3. run the caller's block, which opens the local file as usual;
4. upload the local file if it changed, with ``If-Match: <ETag>`` (``If-None-Match: *`` when
   there was none): S3 refuses the write if anyone changed the catalog meanwhile (a 412,
   raised as :class:`CatalogConflict` naming the URI; our version is kept beside the
   local file, so nothing is lost), and a 409 ``ConditionalRequestConflict`` is retried;
5. release the lock.

``use_lock=False`` (the operators' ``--no-lock``) skips steps 1 and 5; ``skip_upload=True``
(``--skip-upload``) skips step 4. A block that raises uploads nothing: a failed run leaves
the shared catalog as it was, and its rerun converges (every step is idempotent).
:meth:`CatalogSession.commit` uploads early, e.g. right after a registration, before
work that must only follow a published commit (the hash index follows the table).

Readers outside the lock use :func:`read_copy`: a private, fresh copy of the remote
catalog, so they never race the working copy a writer on the same host replaces.

:func:`check_catalog_file` is run wherever a ``catalog.db`` is opened (and on every
download): a file of garbage bytes, a truncated copy or an unreadable file raises
:class:`CatalogUnreadable` naming the file and what to do, instead of a SQLAlchemy
traceback from deep inside PyIceberg.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import shutil
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import lock, scratch, storage

log = logging.getLogger(__name__)

__all__ = [
    "CatalogConflict",
    "CatalogSession",
    "CatalogUnreadable",
    "catalog_session",
    "check_catalog_file",
    "is_held",
    "read_copy",
]

#: SQLite files that belong to a database file; a stale journal beside a freshly
#: downloaded catalog would be "rolled back" into it, so they go with the old file.
_SIDE_FILES = ("-journal", "-wal", "-shm")

_held: dict[str, int] = {}  # local paths of the sessions open in this process
_held_lock = threading.Lock()


class CatalogConflict(RuntimeError):
    """The remote catalog changed since we downloaded it: our upload was refused."""

    def __init__(self, remote: str, kept: str) -> None:
        super().__init__(
            f"catalog {remote} changed since it was downloaded (someone else committed "
            f"without the lock, or overrode it): the upload was refused so that their commit "
            f"is not lost. Our version is kept at {kept}; rerun to redo the commit on top "
            "of theirs."
        )
        self.remote = remote
        self.kept = kept

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.remote, self.kept))


class CatalogUnreadable(RuntimeError):
    """A ``catalog.db`` is not a readable SQLite database (garbage, truncated, no access)."""

    def __init__(self, path: str, reason: str, origin: str | None = None) -> None:
        if origin is None:
            what = f"{path} is not a readable SQLite Iceberg catalog ({reason})"
            todo = (
                "restore it from its remote copy (CATALOG_REMOTE) or a backup, or move it "
                "aside to start a new, empty catalog"
            )
        else:
            what = (
                f"the shared catalog {origin} is not a readable SQLite Iceberg catalog "
                f"({reason}; its copy is at {path})"
            )
            todo = f"restore {origin} from a good copy (e.g. a previous object version)"
        super().__init__(f"{what}: {todo}")
        self.path = path
        self.reason = reason
        self.origin = origin

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.reason, self.origin))


_SQLITE_HEADER = b"SQLite format 3\x00"


def check_catalog_file(path: str, *, origin: str | None = None) -> None:
    """Raise :class:`CatalogUnreadable` if the ``catalog.db`` at ``path`` cannot be read.

    A missing or empty file is fine (a new catalog starts there). Otherwise the file must
    carry the SQLite header and pass ``PRAGMA quick_check`` (which catches truncation), read
    through a read-only connection so that nothing is created or changed; a database that
    another process has locked for writing is taken as readable. ``origin`` names where
    the file was downloaded from, for the message.
    """
    try:
        with open(path, "rb") as f:
            header = f.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CatalogUnreadable(path, exc.strerror or str(exc), origin) from None
    if not header:
        return
    if header != _SQLITE_HEADER:
        raise CatalogUnreadable(path, "no SQLite header: not a database file", origin)
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(3)")]
        finally:
            connection.close()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return
        raise CatalogUnreadable(path, str(exc), origin) from None
    except sqlite3.DatabaseError as exc:
        raise CatalogUnreadable(path, str(exc), origin) from None
    if problems != ["ok"]:
        raise CatalogUnreadable(path, "; ".join(problems), origin)


def _digest(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except FileNotFoundError:
        return None


def _replace_local(path: str, data: bytes | None) -> None:
    """Put ``data`` at ``path`` atomically (``None``: remove it), dropping SQLite side files."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    for suffix in _SIDE_FILES:
        with suppress(FileNotFoundError):
            os.remove(path + suffix)
    if data is None:
        with suppress(FileNotFoundError):
            os.remove(path)
        return
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@dataclass
class CatalogSession:
    """The working copy of one session: ``local`` is the file to open with PyIceberg.

    ``e_tag`` is the version of the remote the local copy derives from (``None``: there
    was no remote catalog yet); ``digest`` the content it had then.
    """

    local: str
    remote: str | None
    e_tag: str | None = None
    digest: str | None = None
    skip_upload: bool = False
    uploads: int = 0

    @property
    def changed(self) -> bool:
        return _digest(self.local) != self.digest

    def commit(self) -> bool:
        """Upload the local catalog if it changed since it was downloaded or last uploaded.

        Returns whether it uploaded. Raises :class:`CatalogConflict` if the remote is no
        longer the version we started from.
        """
        if self.remote is None or not os.path.exists(self.local):
            return False
        with open(self.local, "rb") as f:
            data = f.read()
        digest = hashlib.sha256(data).hexdigest()
        if digest == self.digest:
            return False
        if self.skip_upload:
            log.warning(
                "catalog %s changed; not uploaded to %s (skip_upload)", self.local, self.remote
            )
            return False
        try:
            e_tag = storage.write_if_match(self.remote, data, self.e_tag)
        except storage.PreconditionFailed:
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
            kept = f"{self.local}.conflict-{stamp}"
            shutil.copyfile(self.local, kept)
            log.error("upload of catalog %s refused: it changed since download", self.remote)
            raise CatalogConflict(self.remote, kept) from None
        self.e_tag, self.digest = e_tag, digest
        self.uploads += 1
        log.info("uploaded catalog %s (%d bytes) to %s", self.local, len(data), self.remote)
        return True


def _download(session: CatalogSession) -> None:
    """Replace the local working copy with the remote catalog (absent: start fresh)."""
    assert session.remote is not None
    try:
        data, e_tag = storage.read_with_etag(session.remote)
    except storage.ObjectNotFound:
        data, e_tag = None, None
        if os.path.exists(session.local):
            backup = session.local + ".bak"
            log.warning(
                "no remote catalog at %s yet: starting a fresh catalog; the local %s "
                "(not from the remote) is moved to %s",
                session.remote,
                session.local,
                backup,
            )
            os.replace(session.local, backup)
    _replace_local(session.local, data)
    if data is not None:
        check_catalog_file(session.local, origin=session.remote)
    session.e_tag = e_tag
    session.digest = _digest(session.local)


@contextmanager
def catalog_session(
    local: str,
    remote: str | None = None,
    *,
    use_lock: bool = True,
    skip_upload: bool = False,
    owner: str = "earthcatalog-dagster",
    lock_timeout: float = 600.0,
    ttl_hours: float = lock.DEFAULT_TTL_HOURS,
    poll: float = 0.5,
) -> Iterator[CatalogSession]:
    """Hold the catalog for one commit: lock, download, yield, conditional upload, release.

    ``remote=None`` keeps the local-only behaviour: the lock beside ``local`` and no
    transfer. See the module documentation for the steps and the failure modes.
    """
    local = os.path.abspath(local)
    anchor = remote or local
    lock_uri = layout.catalog_lock(anchor) if use_lock else None
    with lock.held(lock_uri, owner=owner, timeout=lock_timeout, ttl_hours=ttl_hours, poll=poll):
        session = CatalogSession(local=local, remote=remote, skip_upload=skip_upload)
        if remote is not None:
            _download(session)
        with _held_lock:
            _held[local] = _held.get(local, 0) + 1
        try:
            yield session
            session.commit()
        finally:
            with _held_lock:
                _held[local] -= 1
                if not _held[local]:
                    del _held[local]


def is_held(local: str) -> bool:
    """Whether a session of this process currently holds the working copy at ``local``."""
    with _held_lock:
        return os.path.abspath(local) in _held


# --- read-only copies -------------------------------------------------------------------------

_copies: dict[str, tuple[str, str | None]] = {}  # remote -> (private path, e_tag)
_copies_lock = threading.Lock()
_copies_dir: scratch.ScratchFolder | None = None


def _private_dir() -> str:
    global _copies_dir
    if _copies_dir is None:
        _copies_dir = scratch.claim("earthcatalog-catalog-")
        atexit.register(_copies_dir.release)
    return _copies_dir.path


def read_copy(remote: str, *, missing_ok: bool = True) -> str:
    """A private local copy of the remote catalog as it is now, for reading without the lock.

    One file per remote and process, refreshed when the remote's ETag changed; with no
    remote catalog yet, the path of a fresh empty catalog (``missing_ok=False``: raise
    :class:`FileNotFoundError` naming the remote instead, for readers such as ``info``
    that must not report an empty catalog that does not exist). A copy that is not a
    readable catalog raises :class:`CatalogUnreadable` naming the remote.
    """
    with _copies_lock:
        name = hashlib.sha256(remote.encode()).hexdigest()[:16] + ".db"
        path = os.path.join(_private_dir(), name)
        try:
            data, e_tag = storage.read_with_etag(remote)
        except storage.ObjectNotFound:
            if not missing_ok:
                raise FileNotFoundError(
                    f"no catalog at {remote} (CATALOG_REMOTE, or beside a remote WAREHOUSE): "
                    "nothing has been ingested there yet, or the URI is wrong"
                ) from None
            data, e_tag = None, None
        cached = _copies.get(remote)
        if cached is None or cached[1] != e_tag or (data is not None and not os.path.exists(path)):
            _replace_local(path, data)
            if data is not None:
                check_catalog_file(path, origin=remote)
            _copies[remote] = (path, e_tag)
        return path
