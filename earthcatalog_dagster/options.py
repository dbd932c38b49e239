"""Every ingest setting, with its default stated once.

``ingest()``, ``bulk_ingest()``, the ``ingest``/``run-backfill`` commands and the Dagster
``Config`` classes are all built from :class:`IngestOptions`: a CLI flag's default, a
keyword argument's default and a launchpad field's default are the field default below,
read through :data:`DEFAULTS`. Values are validated when the object is made, so a bad
number fails before any work starts, naming the setting.

Where the files live (the roots) is the other half of a run's configuration:
:class:`~earthcatalog_dagster.config.Settings`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Self

Mode = Literal["auto", "full", "delta"]
MODES: tuple[str, ...] = ("auto", "full", "delta")
MAX_H3_RESOLUTION = 15


class OptionError(ValueError):
    """A setting has a value no run can use; the message names the setting."""


class _Settings:
    """``with_values`` and ``as_dict`` of the options dataclasses below."""

    def with_values(self, **values: Any) -> Self:
        """A copy with the given settings replaced; ``None`` keeps a setting whose default
        is not ``None`` (so an unset CLI flag or Config field means "the default")."""
        defaults = {f.name: f.default for f in fields(self)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            kind = type(self).__name__
            raise OptionError(f"unknown setting(s) of {kind}: {', '.join(unknown)}")
        given = {k: v for k, v in values.items() if v is not None or defaults[k] is None}
        return replace(self, **given)  # type: ignore[type-var]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class IngestOptions(_Settings):
    """How a run ingests (what it reads and where it writes is :class:`Settings`).

    Attributes:
        mode: ``"delta"`` skips items the hash index holds and adds files to the table;
            ``"full"`` fetches every inventory row; ``"auto"`` is ``delta`` when the table
            exists, ``full`` otherwise. Neither mode drops the table: rows whose id the
            table holds already are dropped at commit, so a full build over an existing
            table does not double it.
        since: only inventory rows modified on or after this date/time (ISO 8601).
        limit: only the first ``limit`` rows of the inventory (smoke tests).
        h3_resolution: the H3 resolution of a first build; later runs read it from the
            table, and a different value is refused.
        chunk_size: rows per staged chunk (one Dask task each on the staged path).
        batch_rows: rows per batch that ``ingest()`` fetches and parses at once.
        compact_rows: the most rows one warehouse file holds.
        fetch_concurrency: concurrent GETs of source items per task.
        max_missing_fraction: a run fails when more than this share of the fetched
            objects is missing (404), or when every one is: the source root is wrong.
        update_hash_index: merge the new ids into the hash index after registering.
        use_lock: hold the catalog lock while committing (the operators' ``--no-lock``).
        lock_timeout: seconds to wait for the lock before giving up.
        skip_upload: never upload ``catalog.db`` to its remote copy (testing).
        scheduler: where the staged path's tasks run: ``synchronous``, ``local`` (a Dask
            LocalCluster), ``coiled`` or a ``tcp://`` scheduler address.
        workers: worker processes (Dask workers of a local cluster; processes of
            ``ingest()``'s parse pool).
        threads_per_worker: threads of each local Dask worker.
    """

    mode: Mode = "auto"
    since: str | None = None
    limit: int | None = None
    h3_resolution: int | None = None
    chunk_size: int = 10_000
    batch_rows: int = 2_000
    compact_rows: int = 200_000
    fetch_concurrency: int = 256
    max_missing_fraction: float = 0.5
    update_hash_index: bool = True
    use_lock: bool = True
    lock_timeout: float = 600.0
    skip_upload: bool = False
    scheduler: str = "local"
    workers: int = 4
    threads_per_worker: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise OptionError(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        for name in ("chunk_size", "batch_rows", "compact_rows", "fetch_concurrency"):
            _positive_int(name, getattr(self, name))
        for name in ("workers", "threads_per_worker"):
            _positive_int(name, getattr(self, name))
        if self.limit is not None:
            _int(name="limit", value=self.limit)
            if self.limit < 0:
                raise OptionError(f"limit must be 0 or more, not {self.limit}")
        if self.h3_resolution is not None:
            _int("h3_resolution", self.h3_resolution)
            if not 0 <= self.h3_resolution <= MAX_H3_RESOLUTION:
                raise OptionError(
                    f"h3_resolution must be between 0 and {MAX_H3_RESOLUTION}, "
                    f"not {self.h3_resolution}"
                )
        if not 0.0 <= self.max_missing_fraction <= 1.0:
            raise OptionError(
                f"max_missing_fraction must be between 0 and 1, not {self.max_missing_fraction}"
            )
        if self.lock_timeout < 0:
            raise OptionError(f"lock_timeout must be 0 or more seconds, not {self.lock_timeout}")
        if self.since is not None:
            object.__setattr__(self, "since", _iso_since(self.since))
        if not self.scheduler:
            raise OptionError("scheduler must not be empty")


def _int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise OptionError(f"{name} must be a whole number, not {value!r}")


def _positive_int(name: str, value: Any) -> None:
    _int(name, value)
    if value <= 0:
        raise OptionError(f"{name} must be a positive number, not {value}")


def _iso_since(value: Any) -> str:
    """``since`` as given, once it is known to parse as an ISO date or date/time."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    text = str(value)
    try:
        dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise OptionError(f"since must be an ISO date or date/time, not {value!r}") from None
    return text


@dataclass(frozen=True)
class MaintenanceOptions(_Settings):
    """How table maintenance (compaction, snapshot expiry, orphan cleanup) runs.

    Attributes:
        min_files: a (cell, year) with at least this many files is compacted.
        small_file_bytes: files under this size count as small; a bucket with two or
            more small files is compacted too.
        compact_rows: the most rows one compacted file holds.
        cells: only these H3 cells (all when ``None``).
        years: only these years (all when ``None``).
        max_buckets: compact at most this many buckets in one run (all when ``None``).
        expire_older_than_days: snapshots older than this many days are expired...
        retain_last: ...except the newest ``retain_last`` ones, which are always kept.
        orphan_older_than_days: unreferenced files younger than this are left alone
            (a run in progress writes them).
        dry_run: plan and report, change nothing.
        use_lock: hold the catalog lock while committing.
        lock_timeout: seconds to wait for the lock.
        skip_upload: never upload ``catalog.db`` to its remote copy (testing).
    """

    min_files: int = 4
    small_file_bytes: int = 32 * 1024 * 1024
    compact_rows: int = IngestOptions.compact_rows
    cells: tuple[str, ...] | None = None
    years: tuple[int, ...] | None = None
    max_buckets: int | None = None
    expire_older_than_days: float = 7.0
    retain_last: int = 10
    orphan_older_than_days: float = 3.0
    dry_run: bool = False
    use_lock: bool = IngestOptions.use_lock
    lock_timeout: float = IngestOptions.lock_timeout
    skip_upload: bool = IngestOptions.skip_upload

    def __post_init__(self) -> None:
        for name in ("min_files", "small_file_bytes", "compact_rows", "retain_last"):
            _positive_int(name, getattr(self, name))
        if self.max_buckets is not None:
            _positive_int("max_buckets", self.max_buckets)
        for name in ("expire_older_than_days", "orphan_older_than_days", "lock_timeout"):
            if getattr(self, name) < 0:
                raise OptionError(f"{name} must be 0 or more, not {getattr(self, name)}")
        if self.cells is not None:
            object.__setattr__(self, "cells", tuple(_listed(self.cells)))
        if self.years is not None:
            years = []
            for year in _listed(self.years):
                try:
                    years.append(int(year))
                except (TypeError, ValueError):
                    raise OptionError(f"years must be whole years, not {year!r}") from None
            object.__setattr__(self, "years", tuple(years))


def _listed(value: Any) -> list[Any]:
    """A list from a sequence or a comma-separated string (``"a,b"``, as flags give it)."""
    if isinstance(value, str | int):
        value = str(value).split(",")
    items = [v.strip() if isinstance(v, str) else v for v in value]
    return [v for v in items if v != ""]


#: The defaults, for flags and Config fields: ``DEFAULTS.chunk_size`` and so on.
DEFAULTS = IngestOptions()
MAINTENANCE_DEFAULTS = MaintenanceOptions()
#: The names of the ingest settings (e.g. to pick them out of a larger set of arguments).
NAMES = frozenset(f.name for f in fields(IngestOptions))
