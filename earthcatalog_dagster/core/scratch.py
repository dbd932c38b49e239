"""Local scratch folders that a killed process does not leave behind for good.

A run removes its scratch folder when it ends, but a run killed outright (SIGKILL, the
OOM killer, a machine stopped) cannot: ``ingest()`` at 100,000 items leaves ~400 MB of
spilled rows in ``TMPDIR`` (RAM, where ``TMPDIR`` is a tmpfs). So each folder holds an
exclusive ``flock`` on its ``.owner`` file for as long as its process lives, and a new
folder's claim first removes every folder of the same prefix that nobody holds any more.
The kernel drops the lock of a dead process, so no PID is involved (a container reuses
them). Where ``flock`` does not exist (Windows), folders are not swept.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

OWNER_FILE = ".owner"


@dataclass
class ScratchFolder:
    """A claimed scratch folder: its path, and the open owner file holding its lock."""

    path: str
    owner: IO[str] | None

    def release(self) -> None:
        """Remove the folder and drop its lock (idempotent)."""
        shutil.rmtree(self.path, ignore_errors=True)
        if self.owner is not None:
            self.owner.close()
            self.owner = None


def claim(prefix: str, parent: str | None = None) -> ScratchFolder:
    """A new scratch folder ``<parent>/<prefix><random>`` (``parent``: the system's
    temporary folder), held until :meth:`ScratchFolder.release` or the process ends; the
    abandoned folders of ``prefix`` are removed first."""
    parent = parent or tempfile.gettempdir()
    sweep_abandoned(prefix, parent)
    path = tempfile.mkdtemp(prefix=prefix, dir=parent)
    owner = None
    if fcntl is not None:
        owner = open(os.path.join(path, OWNER_FILE), "w")  # noqa: SIM115 - held while claimed
        fcntl.flock(owner, fcntl.LOCK_EX)
    return ScratchFolder(path, owner)


@contextmanager
def scratch_folder(prefix: str, parent: str | None = None) -> Iterator[str]:
    """:func:`claim` for the length of a ``with`` block; the folder's path."""
    folder = claim(prefix, parent)
    try:
        yield folder.path
    finally:
        folder.release()


def sweep_abandoned(prefix: str, parent: str | None = None) -> list[str]:
    """Remove the folders of ``prefix`` in ``parent`` whose owner is gone; their paths.

    A folder without an owner file (claimed this instant, not locked yet, or made by
    something else) is left alone.
    """
    if fcntl is None:  # pragma: no cover - not on POSIX
        return []
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        names = [n for n in os.listdir(parent) if n.startswith(prefix)]
    except FileNotFoundError:
        return []
    for name in names:
        path = os.path.join(parent, name)
        try:
            owner = open(os.path.join(path, OWNER_FILE))  # noqa: SIM115 - closed below
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held: its process is alive
            owner.close()
            continue
        shutil.rmtree(path, ignore_errors=True)
        owner.close()
        removed.append(path)
    return removed
