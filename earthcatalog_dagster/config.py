"""Configuration: the operators' environment variables, with the embedded local default.

One source of truth. Every entry point (``ingest()``, the CLI, the Dagster resources)
builds a :class:`Settings` from the environment and overrides single fields from its own
arguments (flags, resource fields). With nothing configured every root lives under
``$EARTHCATALOG_HOME`` (default ``./.earthcatalog``), so a laptop runs the whole platform
with no cloud at all.

Three roots are *derived* from the others unless they are given (by a variable, a flag or
an argument): the hash index (beside the warehouse), the source root (the embedded
``source/`` folder while the data roots are the embedded ones, the items' real bucket
otherwise) and the shared catalog (beside a remote warehouse). :meth:`Settings.derive` is
that rule, and it is applied the same way whether a root came from the environment or
from a flag: ``run-backfill --warehouse s3://...`` reads the items from their bucket and
shares the catalog beside the warehouse, exactly as ``WAREHOUSE=s3://...`` does.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from earthcatalog_dagster import layout

DEFAULT_HOME = ".earthcatalog"
DEFAULT_REGION = "us-west-2"

#: The variables that place a root somewhere other than the embedded default.
ROOT_VARS = (
    "WAREHOUSE",
    "WAREHOUSE_HASH",
    "STAGING",
    "DELTA_PREFIX",
    "INVENTORY",
    "CATALOG",
    "CATALOG_REMOTE",
    "SOURCE_ROOT",
)
#: Environment variables read by :meth:`Settings.from_env`, as the operators name them.
ENV_VARS = ("EARTHCATALOG_HOME", *ROOT_VARS, "AWS_REGION")
#: The :class:`Settings` field each root variable sets.
FIELD_OF_VAR = {name: name.lower() for name in ROOT_VARS}
#: The roots that hold the data: while all are the embedded ones, items are read from the
#: embedded ``source/`` folder; once one points elsewhere, from their real bucket.
DATA_ROOTS = ("warehouse", "staging", "delta_prefix")
#: The roots computed from others when they are not given (see :meth:`Settings.derive`).
DERIVED_ROOTS = ("warehouse_hash", "source_root", "catalog_remote")
#: Roots that are folders (prefixes); the others are single files.
FOLDER_ROOTS = ("home", "warehouse", "staging", "delta_prefix", "inventory", "source_root")
#: The flag that sets each root, for messages.
FLAG_OF_FIELD = {
    "home": "EARTHCATALOG_HOME",
    "warehouse": "--warehouse / WAREHOUSE",
    "warehouse_hash": "--hash-index / WAREHOUSE_HASH",
    "staging": "--staging / STAGING",
    "delta_prefix": "--delta-prefix / DELTA_PREFIX",
    "inventory": "--inventory / INVENTORY",
    "catalog": "--catalog / CATALOG",
    "catalog_remote": "--catalog-remote / CATALOG_REMOTE",
    "source_root": "--source-root / SOURCE_ROOT",
}


def hash_index_beside(warehouse: str) -> str:
    """The operators' default hash index location: the warehouse URI + ``_id_hashes.parquet``."""
    return layout.hash_index_beside(warehouse)


def is_remote(uri: str) -> bool:
    """Whether ``uri`` names an object store (``s3://``...), not a local path or ``file://``."""
    return "://" in uri and not uri.startswith("file://")


#: The roots a run writes: checked before any work (:meth:`Settings.check_writable`).
WRITTEN_ROOTS = ("warehouse", "warehouse_hash", "staging", "catalog")


class RootNotWritable(PermissionError):
    """A local root cannot be created or written; the message names the root and why."""

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class Settings:
    """Every root of the platform, each a local path or an ``s3://`` URI.

    ``source_root`` is ``None`` when items are read from their real bucket
    (``s3://<bucket>/<key>``, unsigned); otherwise ``<source_root>/<bucket>/<key>``.
    ``catalog`` is the local SQLite ``catalog.db`` path; ``catalog_remote``, when set
    (``$CATALOG_REMOTE``, or by default ``<parent of WAREHOUSE>/earthcatalog.db`` for a
    remote warehouse), is the shared copy that every commit downloads, updates and uploads
    under the lock beside it. ``given`` names the fields set explicitly (a variable, a
    flag, an argument): the derived roots not in it follow the roots they derive from.
    """

    home: str
    warehouse: str
    warehouse_hash: str
    staging: str
    delta_prefix: str
    inventory: str
    catalog: str
    source_root: str | None
    aws_region: str = DEFAULT_REGION
    catalog_remote: str | None = None
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def embedded(cls, home: str | os.PathLike[str] | None = None) -> Settings:
        """All roots under one local folder: the layout ARCHITECTURE.md fixes."""
        root = Path(home or DEFAULT_HOME).expanduser().resolve()
        embedded = _embedded_roots(str(root))
        warehouse = embedded["warehouse"]
        return cls(
            home=str(root),
            warehouse=warehouse,
            warehouse_hash=layout.hash_index_beside(warehouse),
            staging=embedded["staging"],
            delta_prefix=embedded["delta_prefix"],
            inventory=str(root / "inventory"),
            catalog=str(root / layout.CATALOG_NAME),
            source_root=str(root / "source"),
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from the operators' variables; unset ones fall back to the embedded default.

        Set variables count as given roots, exactly like flags passed to
        :meth:`with_overrides`: see :meth:`derive` for the roots that follow them.
        """
        env = os.environ if env is None else env
        base = cls.embedded(env.get("EARTHCATALOG_HOME") or None)
        base = replace(base, aws_region=env.get("AWS_REGION") or DEFAULT_REGION)
        return base.with_overrides(
            **{FIELD_OF_VAR[name]: env.get(name) or None for name in ROOT_VARS}
        )

    def derive(self, name: str) -> str | None:
        """What the derived root ``name`` is when it is not given, from the other roots.

        - ``warehouse_hash``: ``<WAREHOUSE>_id_hashes.parquet``;
        - ``source_root``: the embedded ``<home>/source`` while the data roots (warehouse,
          staging, deltas) are the embedded ones; ``None`` (the items' real bucket) once
          any of them points elsewhere;
        - ``catalog_remote``: ``<parent of WAREHOUSE>/earthcatalog.db`` when the warehouse is
          remote (the operators' layout; a CI runner's disk never holds the only copy),
          ``None`` (local only) otherwise.
        """
        if name == "warehouse_hash":
            return layout.hash_index_beside(self.warehouse)
        if name == "source_root":
            embedded = _embedded_roots(self.home)
            if all(getattr(self, root) == embedded[root] for root in DATA_ROOTS):
                return layout.join(self.home, "source")
            return None
        if name == "catalog_remote":
            return layout.catalog_beside(self.warehouse) if is_remote(self.warehouse) else None
        raise ValueError(f"{name!r} is not a derived root ({', '.join(DERIVED_ROOTS)})")

    @classmethod
    def for_run(
        cls,
        settings: Settings | None = None,
        *,
        warehouse: str | None = None,
        hash_index: str | None = None,
        catalog: str | None = None,
        catalog_remote: str | None = None,
        staging: str | None = None,
        source_root: str | None = None,
    ) -> Settings:
        """The roots of one run: ``settings`` (default: the environment, then the embedded
        default) with the roots an entry point was given as arguments or flags."""
        return (settings or cls.from_env()).with_overrides(
            warehouse=warehouse,
            warehouse_hash=hash_index,
            catalog=catalog,
            catalog_remote=catalog_remote,
            staging=staging,
            source_root=source_root,
        )

    def with_overrides(self, **values: str | None) -> Settings:
        """A copy with the given fields replaced; ``None`` values keep the current one.

        The given fields count as configured: a derived root that was not given (and
        still had its derived value) follows the new roots (:meth:`derive`).
        """
        known = {f.name for f in fields(self)} - {"given"}
        unknown = sorted(set(values) - known)
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(unknown)}")
        given = {
            name: value if name in ("catalog", "aws_region") else _clean(value)
            for name, value in values.items()
            if value
        }
        updated = replace(self, **given, given=self.given | frozenset(given))
        follow = {
            name: updated.derive(name)
            for name in DERIVED_ROOTS
            if name not in updated.given and getattr(self, name) == self.derive(name)
        }
        return replace(updated, **follow)

    def check_writable(self, *names: str) -> None:
        """Raise :class:`RootNotWritable` naming the first local root of ``names`` that this
        process cannot create or write (a path under a regular file, a read-only folder).

        Called before any work so that a run does not fail half-way on its first write;
        remote roots are not probed (their errors name the URI when they happen).
        """
        for name in names:
            uri = getattr(self, name)
            if not uri or is_remote(uri):
                continue
            path = Path(uri.removeprefix("file://"))
            folder = path if name in FOLDER_ROOTS else path.parent
            what = f"the {name.replace('_', ' ')} root {uri} ({FLAG_OF_FIELD.get(name, name)})"
            if name not in FOLDER_ROOTS and path.exists():
                if path.is_dir():
                    raise RootNotWritable(f"{what} is a folder, not a file")
                if not os.access(path, os.W_OK):
                    raise RootNotWritable(f"{what} is not writable (permission denied)")
            existing = folder
            while not existing.exists() and existing != existing.parent:
                existing = existing.parent
            if not existing.is_dir():
                raise RootNotWritable(
                    f"{what} cannot be created: {existing} is a file, not a folder"
                )
            if not os.access(existing, os.W_OK | os.X_OK):
                raise RootNotWritable(f"{what} is not writable: no write permission on {existing}")


def _embedded_roots(home: str) -> dict[str, str]:
    """The data roots of the embedded layout under ``home``."""
    return {
        "warehouse": layout.join(home, "warehouse"),
        "staging": layout.join(home, "ingest"),
        "delta_prefix": layout.join(home, "delta"),
    }


def _clean(uri: str | None) -> str | None:
    """Strip a trailing slash and make local paths absolute, leaving URIs alone."""
    if not uri:
        return None
    if "://" in uri:
        return uri.rstrip("/")
    return str(Path(uri).expanduser().resolve())
