"""Remove what a killed local write leaves behind: obstore's staging files.

obstore's ``LocalStore`` writes ``<dir>/<name>`` by first writing ``<dir>/<name>#<n>`` —
``n`` the first free counter from 1 — and renaming (or, for ``write_if_absent``,
hard-linking) it into place. A process killed between the two leaves ``<name>#<n>``
behind; a later write of the same name then stages as ``#2`` and the debris stays forever.
(Measured: a writer killed during a 600 MB put leaves ``a.parquet#1``.) S3 has no such
files: our puts are single requests, never multipart.

:func:`remove_debris` deletes exactly those files: a name ending in ``#`` and digits,
regular file, not modified for ``min_age`` seconds. The age guard is for live writers:
roots are shared by runs that may be running side by side (partitions of other dates,
a second ``ingest()``), and deleting a staging file under a live writer makes its
rename fail. A writer refreshes its staging file's mtime as it writes, and one put
takes seconds, so a file untouched for five minutes has no writer left. Pass
``min_age=0`` only when no other writer can be live (e.g. while holding the catalog lock
for a root nobody else writes).
"""

from __future__ import annotations

import os
import re
import stat
import time
from contextlib import suppress

from earthcatalog_dagster.core.storage.uris import parse

__all__ = ["DEBRIS_MIN_AGE", "STAGING_NAME", "remove_debris"]

#: obstore LocalStore's staging name for ``<name>``: ``<name>#<n>`` (``n`` from 1).
STAGING_NAME = re.compile(r".+#[0-9]+")

#: Seconds a staging file must be untouched before it counts as debris (see module doc).
DEBRIS_MIN_AGE = 300.0


def remove_debris(
    root: str,
    *,
    min_age: float = DEBRIS_MIN_AGE,
    now: float | None = None,
    name_prefix: str = "",
) -> list[str]:
    """Delete the staging files killed writes left under the local ``root``; their paths.

    Walks ``root`` recursively (one ``scandir`` per directory, no file is opened) and
    removes every regular file whose name is ``<something>#<digits>`` and whose mtime is
    at least ``min_age`` seconds before ``now`` (default: the current time). Nothing else
    is touched: not the real files, not directories, not symlinks. A remote (``s3://``)
    or missing root is a no-op returning ``[]``. Call it at the start of a run on the
    warehouse and staging roots (or on a narrower prefix to bound the walk).
    ``name_prefix`` limits it to the staging files of names a caller owns (a run's own
    warehouse files): no other writer can be live on those, so ``min_age=0`` is safe.
    """
    loc = parse(root)
    if loc.scheme != "file":
        return []
    cutoff = (time.time() if now is None else now) - min_age
    removed: list[str] = []
    for dirpath, _dirs, files in os.walk(loc.local):
        for name in files:
            if not name.startswith(name_prefix) or not STAGING_NAME.fullmatch(name):
                continue
            path = os.path.join(dirpath, name)
            with suppress(FileNotFoundError):  # another cleaner or its writer got there
                info = os.lstat(path)
                if not stat.S_ISREG(info.st_mode) or info.st_mtime > cutoff:
                    continue
                os.remove(path)
                removed.append(path)
    removed.sort()
    return removed
