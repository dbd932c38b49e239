"""The ``earthcatalog-dagster`` command line, on click.

Every ingest setting's flag is declared by :func:`setting`, which reads the default from
:data:`~earthcatalog_dagster.options.DEFAULTS` (no default is written here), and each
command builds its :class:`~earthcatalog_dagster.options.IngestOptions` first, so a bad
number (``--compact-rows 0``) fails before any work with a one-line error and exit code 2.
Roots given as flags override the environment through
:meth:`~earthcatalog_dagster.config.Settings.with_overrides`, where they count as
configured exactly like the operators' variables.

:func:`main` is the console-script entry point and returns the exit code: 0 success,
1 a run that did not reconcile or a runtime failure (lock held, catalog conflict or
unreadable, storage), 2 bad usage or input (flags, missing files, bad values), 141 when
the reader of our output went away (``info | head -1``). An anticipated error prints one
``error: ...`` line on stderr, never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from earthcatalog_dagster.config import WRITTEN_ROOTS, Settings
from earthcatalog_dagster.options import (
    DEFAULTS,
    MAINTENANCE_DEFAULTS,
    MODES,
    IngestOptions,
    MaintenanceOptions,
    OptionError,
)

PROG = "earthcatalog-dagster"
#: Exit codes of :func:`main`.
EXIT_FAILED, EXIT_USAGE, EXIT_BROKEN_PIPE, EXIT_INTERRUPTED = 1, 2, 141, 130

INSTANCE_YAML = """\
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""

F = TypeVar("F", bound=Callable[..., Any])

# --- option declarations --------------------------------------------------------------------

#: The flag of each ingest setting, for messages naming the flag rather than the field.
_FLAG_OF_SETTING: dict[str, str] = {}


def _setting_type(name: str) -> click.ParamType:
    """The click type of an :class:`IngestOptions` field, from its annotation."""
    annotation = str(next(f.type for f in dataclasses.fields(IngestOptions) if f.name == name))
    if name == "mode":
        return click.Choice(MODES)
    if "int" in annotation:
        return click.INT
    if "float" in annotation:
        return click.FLOAT
    return click.STRING


def setting(name: str, flag: str | None = None, *, help: str) -> Callable[[F], F]:
    """A click option for the :class:`IngestOptions` field ``name``, defaulting to
    ``DEFAULTS.<name>`` (``--chunk-size`` for ``chunk_size`` unless ``flag`` says otherwise).

    Values are not range-checked here: :func:`_options` builds the options object, whose
    validation is the one place that knows the limits.
    """
    flag = flag or "--" + name.replace("_", "-")
    _FLAG_OF_SETTING.setdefault(name, flag)
    default = getattr(DEFAULTS, name)
    return click.option(
        flag,
        name,
        type=_setting_type(name),
        default=default,
        show_default=default is not None,
        help=help,
    )


def _options(**values: Any) -> IngestOptions:
    """The defaults with the given flags' values, validated: a bad value is a usage error
    naming its flag (exit code 2, before any work)."""
    try:
        return DEFAULTS.with_values(**values)
    except OptionError as exc:
        message = str(exc)
        for name in sorted(values, key=len, reverse=True):
            if message.startswith(name + " ") and name in _FLAG_OF_SETTING:
                message = _FLAG_OF_SETTING[name] + message[len(name) :]
                break
        raise click.UsageError(message) from None


#: The flag of each maintenance setting, for messages naming the flag.
_FLAG_OF_MAINTENANCE_SETTING: dict[str, str] = {}


def maintenance_setting(name: str, flag: str | None = None, *, help: str) -> Callable[[F], F]:
    """A click option for the :class:`MaintenanceOptions` field ``name``, defaulting to
    ``MAINTENANCE_DEFAULTS.<name>``; list fields (``cells``, ``years``) take a
    comma-separated value. Validation is :func:`_maintenance_options`'."""
    flag = flag or "--" + name.replace("_", "-")
    _FLAG_OF_MAINTENANCE_SETTING.setdefault(name, flag)
    default = getattr(MAINTENANCE_DEFAULTS, name)
    annotation = str(next(f.type for f in dataclasses.fields(MaintenanceOptions) if f.name == name))
    if annotation.startswith("tuple"):
        kind: click.ParamType = click.STRING
        default = ",".join(map(str, default)) if default is not None else None
    elif "int" in annotation:
        kind = click.INT
    elif "float" in annotation:
        kind = click.FLOAT
    else:
        kind = click.STRING
    return click.option(
        flag, name, type=kind, default=default, show_default=default is not None, help=help
    )


def _maintenance_options(**values: Any) -> MaintenanceOptions:
    """The maintenance defaults with the given flags' values, validated: a bad value is a
    usage error naming its flag (exit code 2, before any work)."""
    try:
        return MAINTENANCE_DEFAULTS.with_values(**values)
    except OptionError as exc:
        message = str(exc)
        for name in sorted(values, key=len, reverse=True):
            if message.startswith(name + " ") and name in _FLAG_OF_MAINTENANCE_SETTING:
                message = _FLAG_OF_MAINTENANCE_SETTING[name] + message[len(name) :]
                break
        raise click.UsageError(message) from None


def _in_order(options: list[Callable[[F], F]]) -> Callable[[F], F]:
    """One decorator applying ``options``, listed in --help in the order given."""

    def decorate(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _roots(*, catalog_remote: bool = False) -> Callable[[F], F]:
    """``--catalog``, ``--warehouse``, ``--hash-index`` (and ``--catalog-remote``)."""
    options = [
        click.option("--catalog", help="local catalog.db path (env CATALOG)"),
        click.option("--warehouse", help="warehouse root (env WAREHOUSE)"),
        click.option("--hash-index", help="hash index Parquet (env WAREHOUSE_HASH)"),
    ]
    if catalog_remote:
        options.append(
            click.option(
                "--catalog-remote",
                help="shared catalog.db, e.g. s3://.../earthcatalog.db (env CATALOG_REMOTE; "
                "default beside a remote warehouse: <parent of WAREHOUSE>/earthcatalog.db)",
            )
        )
    return _in_order(options)


def _maintenance_run_flags(*, dry_run_help: str) -> Callable[[F], F]:
    """The flags every maintenance command ends with: ``--lock-timeout``, ``--dry-run``
    (``dry_run_help`` says what a dry run shows), ``--no-lock``, ``--skip-upload`` and
    ``--json``; they become the ``lock_timeout`` setting and the commands' parameters
    ``dry_run``, ``no_lock``, ``skip_upload`` and ``as_json``."""
    return _in_order(
        [
            maintenance_setting("lock_timeout", help="seconds to wait for the catalog lock"),
            click.option("--dry-run", is_flag=True, help=dry_run_help),
            click.option("--no-lock", is_flag=True, help="skip the catalog lock"),
            click.option(
                "--skip-upload", is_flag=True, help="do not upload catalog.db to its remote copy"
            ),
            click.option("--json", "as_json", is_flag=True, help="print the result as JSON"),
        ]
    )


class _Date(click.ParamType):
    """A ``YYYY-MM-DD`` date."""

    name = "YYYY-MM-DD"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            self.fail(f"not a date (YYYY-MM-DD): {value!r}", param, ctx)


DATE = _Date()


def _settings(**roots: str | None) -> Settings:
    """The environment's settings with the roots given as flags (``None``: not given)."""
    return Settings.from_env().with_overrides(
        warehouse=roots.get("warehouse"),
        warehouse_hash=roots.get("hash_index"),
        catalog=roots.get("catalog"),
        catalog_remote=roots.get("catalog_remote"),
        staging=roots.get("staging"),
        source_root=roots.get("source_root"),
    )


# --- the commands -------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="log progress")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Keep the ITS_LIVE STAC catalog current (GeoParquet warehouse + Iceberg)."""
    chatty = verbose or ctx.invoked_subcommand == "run-backfill"
    logging.basicConfig(
        level=logging.INFO if chatty else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@_roots(catalog_remote=True)
def info(
    catalog: str | None, warehouse: str | None, hash_index: str | None, catalog_remote: str | None
) -> int:
    """Print the catalog summary (and where the catalog was read from)."""
    from earthcatalog_dagster.pipeline.info import catalog_info

    cfg = _settings(
        catalog=catalog, warehouse=warehouse, hash_index=hash_index, catalog_remote=catalog_remote
    )
    if cfg.catalog_remote and not catalog:  # the shared catalog as it is now
        from earthcatalog_dagster.core.remote_catalog import read_copy

        how = "CATALOG_REMOTE" if "catalog_remote" in cfg.given else "beside WAREHOUSE"
        path = read_copy(cfg.catalog_remote, missing_ok=False)
        label = f"{cfg.catalog_remote} (the shared copy, {how})"
    else:
        path, label = cfg.catalog, f"{cfg.catalog} (local)"
        if not os.path.exists(cfg.catalog) and not os.path.isdir(cfg.home) and not catalog:
            raise FileNotFoundError(
                f"no catalog at {cfg.catalog}: EARTHCATALOG_HOME {cfg.home} does not exist "
                "(run an ingest first, or point EARTHCATALOG_HOME / --catalog at a catalog)"
            )
    click.echo(catalog_info(path, cfg.warehouse, cfg.warehouse_hash, catalog_label=label).render())
    return 0


@cli.command("daily-delta")
@click.argument("manifest", required=False)
@click.option("--date", type=DATE, help="delta date YYYY-MM-DD (default: yesterday, UTC)")
@click.option("--warehouse-hash", help="hash index Parquet (env WAREHOUSE_HASH)")
@click.option("--delta-prefix", help="deltas root: pending/, ingested/ (env DELTA_PREFIX)")
@click.option("--inventory", help="S3 Inventory root, default manifest (env INVENTORY)")
@setting("since", help="only rows with last_modified_date >= this (ISO date/time)")
@click.option("--no-carry-over", is_flag=True, help="leave older pending deltas out")
def daily_delta_command(
    manifest: str | None,
    date: dt.date | None,
    warehouse_hash: str | None,
    delta_prefix: str | None,
    inventory: str | None,
    since: str | None,
    no_carry_over: bool,
) -> int:
    """Write DELTA_PREFIX/pending/delta_D.parquet: the day's S3 Inventory minus the hash
    index, plus older pending deltas (reused if it exists).

    MANIFEST is the day's S3 Inventory manifest (default
    <INVENTORY>/<date>T01-00Z/manifest.json).
    """
    from earthcatalog_dagster import layout
    from earthcatalog_dagster.pipeline.delta import daily_delta

    options = _options(since=since)
    cfg = Settings.from_env().with_overrides(
        warehouse_hash=warehouse_hash, delta_prefix=delta_prefix, inventory=inventory
    )
    cfg.check_writable("delta_prefix")
    date = date or dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    result = daily_delta(
        manifest or layout.inventory_manifest(cfg.inventory, date),
        delta_prefix=cfg.delta_prefix,
        date=date,
        hash_index_uri=cfg.warehouse_hash,
        since=options.since,
        carry_over=not no_carry_over,
    )
    click.echo(json.dumps(result.as_dict(), indent=2))
    return 0


@cli.command("ingest")
@click.argument("inventory")
@_roots(catalog_remote=True)
@click.option("--staging", help="where rejects are recorded (env STAGING)")
@click.option("--source-root", help="read <root>/<bucket>/<key> instead of s3://bucket/key")
@setting("mode", help="delta: skip indexed ids; full: every row; auto: delta if a table exists")
@setting("since", help="only rows with last_modified_date >= this (ISO date/time)")
@setting("limit", help="only the first N rows of the inventory (smoke test)")
@setting("h3_resolution", help="H3 resolution of a first build; later runs read the table's")
@setting("fetch_concurrency", help="concurrent GETs of source items")
@setting("batch_rows", help="rows fetched and parsed at once")
@setting("compact_rows", help="the most rows one warehouse file holds")
@setting("workers", help="processes that parse the batches")
@setting("lock_timeout", help="seconds to wait for the catalog lock")
@setting("max_missing_fraction", help="fail when a larger share of the objects is missing")
@click.option("--no-hash-index", is_flag=True, help="do not update the hash index")
@click.option("--no-lock", is_flag=True, help="skip the catalog lock")
@click.option("--skip-upload", is_flag=True, help="do not upload catalog.db to its remote copy")
def ingest_command(
    inventory: str,
    catalog: str | None,
    warehouse: str | None,
    hash_index: str | None,
    catalog_remote: str | None,
    staging: str | None,
    source_root: str | None,
    no_hash_index: bool,
    no_lock: bool,
    skip_upload: bool,
    **settings: Any,
) -> int:
    """Single-node ingest of INVENTORY (ingest()): a manifest.json, a CSV/CSV.gz/Parquet
    of bucket,key, or a delta."""
    options = _options(
        **settings,
        update_hash_index=not no_hash_index,
        use_lock=not no_lock,
        skip_upload=skip_upload,
    )
    from earthcatalog_dagster.pipeline.ingest import ingest

    cfg = _settings(
        catalog=catalog,
        warehouse=warehouse,
        hash_index=hash_index,
        catalog_remote=catalog_remote,
        staging=staging,
        source_root=source_root,
    )
    cfg.check_writable(*WRITTEN_ROOTS)
    summary = ingest(inventory, options, settings=cfg)
    click.echo(json.dumps(summary.as_dict(), indent=2, default=str))
    return 0 if summary.reconciles else EXIT_FAILED


@cli.command("run-backfill")
@click.option("--inventory", required=True, help="delta Parquet, manifest.json or CSV/Parquet")
@click.option("--catalog", help="local catalog.db (env CATALOG)")
@click.option(
    "--catalog-remote",
    help="shared catalog copy, e.g. s3://.../earthcatalog.db (env CATALOG_REMOTE; default "
    "beside a remote warehouse: <parent of WAREHOUSE>/earthcatalog.db)",
)
@click.option("--warehouse", help="warehouse root (env WAREHOUSE)")
@click.option("--staging", help="this run's own staging prefix, e.g. .../ingest/delta_D")
@click.option("--delta", is_flag=True, help="append mode: add files, keep the table")
@click.option("--update-hash-index", is_flag=True, help="merge the new ids into the hash index")
@click.option("--hash-index", help="hash index Parquet (env WAREHOUSE_HASH)")
@click.option("--skip-upload", is_flag=True, help="do not upload catalog.db")
@click.option("--skip-inventory", is_flag=True, help="reuse existing chunks (after a crash)")
@click.option("--no-lock", is_flag=True, help="skip the catalog lock")
@setting("limit", help="only the first N items (smoke test)")
@setting("scheduler", help="local | synchronous | processes | auto | coiled | tcp://host:8786")
@setting("workers", help="Dask workers (local scheduler)")
@setting("chunk_size", help="items per chunk")
@setting("since", help="only rows with last_modified_date >= this (ISO date/time)")
@setting("h3_resolution", help="required for a first build; later runs read the table's")
@setting("compact_rows", help="the most rows one warehouse file holds")
@setting("fetch_concurrency", help="concurrent GETs of source items per task")
@click.option("--retry-pending", is_flag=True, help="retry recorded failures")
@click.option("--skip-ingest", is_flag=True, help="go straight to Phase 3")
@setting("threads_per_worker", help="threads of each local Dask worker")
@setting("lock_timeout", help="seconds to wait for the catalog lock")
@setting("max_missing_fraction", help="fail when a larger share of the objects is missing")
@click.option("--coiled-n-workers", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--coiled-vm-type", help="e.g. m6i.large")
@click.option("--source-root", help="read <root>/<bucket>/<key> instead of s3://")
def run_backfill(
    inventory: str,
    catalog: str | None,
    catalog_remote: str | None,
    warehouse: str | None,
    staging: str | None,
    delta: bool,
    update_hash_index: bool,
    hash_index: str | None,
    skip_upload: bool,
    skip_inventory: bool,
    no_lock: bool,
    retry_pending: bool,
    skip_ingest: bool,
    coiled_n_workers: int,
    coiled_vm_type: str | None,
    source_root: str | None,
    **settings: Any,
) -> int:
    """The operators' run_backfill.py: the 4-phase pipeline on Dask (bulk_ingest())."""
    options = _options(
        **settings,
        mode="delta" if delta else "full",
        update_hash_index=update_hash_index,
        use_lock=not no_lock,
        skip_upload=skip_upload,
    )
    from earthcatalog_dagster.pipeline.bulk import bulk_ingest
    from earthcatalog_dagster.pipeline.compute import validate_scheduler

    create_client = None
    if options.scheduler == "coiled":
        create_client = _coiled_client(coiled_n_workers, coiled_vm_type)
    validate_scheduler(options.scheduler, create_client)
    cfg = _settings(
        catalog=catalog,
        warehouse=warehouse,
        hash_index=hash_index,
        catalog_remote=catalog_remote,
        staging=staging,
        source_root=source_root,
    )
    cfg.check_writable(*WRITTEN_ROOTS)
    summary = bulk_ingest(
        inventory,
        options,
        settings=cfg,
        staging=staging,
        create_client=create_client,
        skip_inventory=skip_inventory,
        skip_ingest=skip_ingest,
        retry_pending=retry_pending,
    )
    click.echo(summary.render())
    return 0 if summary.reconciles else EXIT_FAILED


@cli.command("compact")
@_roots(catalog_remote=True)
@maintenance_setting("min_files", help="compact a (cell, year) with at least N files")
@maintenance_setting("small_file_bytes", help="...or with two or more files under N bytes")
@maintenance_setting("compact_rows", help="the most rows one compacted file holds")
@maintenance_setting("cells", help="only these H3 cells (comma-separated)")
@maintenance_setting("years", help="only these years (comma-separated)")
@maintenance_setting("max_buckets", help="compact at most N buckets in this run")
@_maintenance_run_flags(dry_run_help="print the plan; change nothing")
def compact_command(
    catalog: str | None,
    warehouse: str | None,
    hash_index: str | None,
    catalog_remote: str | None,
    dry_run: bool,
    no_lock: bool,
    skip_upload: bool,
    as_json: bool,
    **settings: Any,
) -> int:
    """Merge the small files of each (cell, year) into files of at most --compact-rows
    rows, de-duplicated by id, in one OVERWRITE snapshot (compact()). Old files stay on
    storage until their snapshots expire."""
    options = _maintenance_options(
        **settings, dry_run=dry_run, use_lock=not no_lock, skip_upload=skip_upload
    )
    from earthcatalog_dagster.pipeline.maintenance.compact import compact

    cfg = _settings(
        catalog=catalog, warehouse=warehouse, hash_index=hash_index, catalog_remote=catalog_remote
    )
    result = compact(options, settings=cfg)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.render())
    return 0


#: Days per unit of a duration flag.
_DURATION_UNITS = {"d": 1.0, "h": 1 / 24, "m": 1 / 1440, "s": 1 / 86400}


class _Duration(click.ParamType):
    """An age such as ``7d``, ``36h``, ``90m`` or ``3600s`` (a bare number: days), in days."""

    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        unit = text[-1:] if text[-1:] in _DURATION_UNITS else "d"
        number = text[:-1] if text[-1:] in _DURATION_UNITS else text
        try:
            days = float(number) * _DURATION_UNITS[unit]
        except ValueError:
            self.fail(f"not a duration (e.g. 7d, 36h): {value!r}", param, ctx)
        if days < 0:
            self.fail(f"a duration is 0 or more, not {value!r}", param, ctx)
        return days


DURATION = _Duration()


def _days(days: float) -> str:
    """A default age for --help: ``7d``."""
    return f"{days:g}d"


@cli.command("expire-snapshots")
@_roots(catalog_remote=True)
@click.option(
    "--older-than",
    "expire_older_than_days",
    type=DURATION,
    default=_days(MAINTENANCE_DEFAULTS.expire_older_than_days),
    show_default=True,
    help="expire snapshots older than this (7d, 36h, ...)",
)
@maintenance_setting("retain_last", help="always keep the newest N snapshots (and the current)")
@_maintenance_run_flags(dry_run_help="print what would go; change nothing")
def expire_snapshots_command(
    catalog: str | None,
    warehouse: str | None,
    hash_index: str | None,
    catalog_remote: str | None,
    dry_run: bool,
    no_lock: bool,
    skip_upload: bool,
    as_json: bool,
    **settings: Any,
) -> int:
    """Expire old snapshots (the newest --retain-last always stay), publish the catalog,
    then delete the data files, manifests and manifest lists no retained snapshot reads."""
    options = _maintenance_options(
        **settings, dry_run=dry_run, use_lock=not no_lock, skip_upload=skip_upload
    )
    from earthcatalog_dagster.pipeline.maintenance.expire import expire_snapshots

    cfg = _settings(
        catalog=catalog, warehouse=warehouse, hash_index=hash_index, catalog_remote=catalog_remote
    )
    result = expire_snapshots(options, settings=cfg)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.render())
    return 0


@cli.command("remove-orphans")
@_roots(catalog_remote=True)
@click.option(
    "--older-than",
    "orphan_older_than_days",
    type=DURATION,
    default=_days(MAINTENANCE_DEFAULTS.orphan_older_than_days),
    show_default=True,
    help="only files older than this (a run in progress writes younger ones)",
)
@_maintenance_run_flags(dry_run_help="list the orphans; delete nothing")
def remove_orphans_command(
    catalog: str | None,
    warehouse: str | None,
    hash_index: str | None,
    catalog_remote: str | None,
    dry_run: bool,
    no_lock: bool,
    skip_upload: bool,
    as_json: bool,
    **settings: Any,
) -> int:
    """Delete the warehouse data files and table metadata files that no snapshot reads and
    that are older than --older-than (--dry-run lists them)."""
    options = _maintenance_options(
        **settings, dry_run=dry_run, use_lock=not no_lock, skip_upload=skip_upload
    )
    from earthcatalog_dagster.pipeline.maintenance.orphans import remove_orphans

    cfg = _settings(
        catalog=catalog, warehouse=warehouse, hash_index=hash_index, catalog_remote=catalog_remote
    )
    result = remove_orphans(options, settings=cfg)
    click.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.render())
    return 0


def _coiled_client(n_workers: int, vm_type: str | None) -> Callable[[], Any]:
    """A client factory for ``--scheduler coiled``; the package is checked at once."""
    try:
        import coiled  # noqa: F401
    except ImportError:
        raise click.UsageError(
            "--scheduler coiled needs the coiled package (pip install coiled)"
        ) from None

    def create() -> Any:
        import coiled

        cluster = coiled.Cluster(
            n_workers=n_workers, worker_vm_types=[vm_type] if vm_type else None
        )
        return cluster.get_client()

    return create


@cli.command()
@_roots()
@click.option(
    "--date",
    type=DATE,
    default=lambda: dt.date.today() - dt.timedelta(days=1),
    show_default="yesterday",
)
@click.option("--items", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet")
def generate(
    catalog: str | None,
    warehouse: str | None,
    hash_index: str | None,
    date: dt.date,
    items: int,
    seed: int,
    fmt: str,
) -> int:
    """Write a synthetic ITS_LIVE day and its S3 Inventory."""
    from earthcatalog_dagster.synthetic import generate_day, write_inventory

    cfg = _settings(catalog=catalog, warehouse=warehouse, hash_index=hash_index)
    cfg.check_writable("inventory", "source_root" if cfg.source_root else "home")
    day = generate_day(date, items, source_root=cfg.source_root or cfg.home, seed=seed)
    manifest = write_inventory(cfg.inventory, date, day.refs, fmt=fmt)
    click.echo(f"wrote {len(day.items):,} items and the inventory {manifest}")
    return 0


@cli.command()
@click.option("--home", help="embedded root (default $EARTHCATALOG_HOME or ./.earthcatalog)")
@click.option("--date", type=DATE, default="2026-04-28", show_default=True)
@click.option("--items", type=click.IntRange(min=1), default=3000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--scheduler",
    default="synchronous",
    show_default=True,
    help="synchronous | local (a Dask LocalCluster)",
)
def demo(home: str | None, date: dt.date, items: int, seed: int, scheduler: str) -> int:
    """Two days generated and materialized through Dagster on the embedded default."""
    from earthcatalog_dagster.pipeline.info import catalog_info
    from earthcatalog_dagster.synthetic import generate_day, write_inventory

    cfg = Settings.embedded(home) if home else Settings.from_env()
    cfg.check_writable("home")
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or Path(cfg.home) / "dagster")
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance_yaml = dagster_home / "dagster.yaml"
    if not instance_yaml.exists():
        instance_yaml.write_text(INSTANCE_YAML)
    click.echo(f"Embedded catalog under {cfg.home} (Dagster instance: {dagster_home})")
    dates = [date, date + dt.timedelta(days=1)]
    for day_seed, day_date in enumerate(dates, start=seed):
        day = generate_day(day_date, items, source_root=cfg.source_root or cfg.home, seed=day_seed)
        manifest = write_inventory(
            cfg.inventory, day_date, day.refs, fmt="parquet" if day_seed % 2 == 0 else "csv"
        )
        click.echo(f"{day_date}: generated {len(day.items):,} ITS_LIVE items (+ a few bad objects)")
        click.echo(f"{day_date}: inventory {manifest}")
    env = {
        **os.environ,
        "EARTHCATALOG_HOME": cfg.home,
        "DAGSTER_HOME": str(dagster_home),
        "EARTHCATALOG_SCHEDULER": scheduler,
    }
    for day_date in dates:
        command = [
            sys.executable,
            "-m",
            "dagster",
            "asset",
            "materialize",
            "-m",
            "earthcatalog_dagster.definitions",
            "--select",
            "group:ingest",
            "--partition",
            day_date.isoformat(),
        ]
        click.echo(
            f"{day_date}: dagster asset materialize --select group:ingest "
            f"--partition {day_date} ..."
        )
        started = time.perf_counter()
        done = subprocess.run(command, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            click.echo(done.stdout[-4000:] + done.stderr[-4000:], err=True)
            click.echo(f"error: materializing {day_date} failed", err=True)
            return EXIT_FAILED
        click.echo(f"{day_date}: materialized in {time.perf_counter() - started:.1f} s")
    click.echo()
    click.echo(catalog_info(cfg.catalog, cfg.warehouse, cfg.warehouse_hash).render())
    click.echo()
    click.echo(
        f"See the runs: DAGSTER_HOME={dagster_home} EARTHCATALOG_HOME={cfg.home} dagster dev"
    )
    return 0


@cli.command("search")
@_roots(catalog_remote=True)
@click.option("--bbox", help="W,S,E,N in degrees (W > E crosses the antimeridian)")
@click.option("--intersects", help="a GeoJSON geometry: a file path or the JSON itself")
@click.option("--datetime", "datetime_", help="RFC 3339 instant or interval a/b ('..': open)")
@click.option("--ids", help="comma-separated item ids")
@click.option("--collections", help="comma-separated collection ids")
@click.option("--filter", "filter_", help="CQL2 filter (text, or JSON)")
@click.option("--fields", help="Fields extension, e.g. id,properties.datetime,-assets")
@click.option("--sortby", help="e.g. -datetime,platform")
@click.option("--limit", type=click.IntRange(min=1), help="the most items to return")
@click.option("--as-of", help="snapshot id, or a time (RFC 3339) to read the table as of")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["geojson", "ndjson", "parquet", "table"]),
    default="geojson",
    show_default=True,
    help="output format",
)
@click.option("--output", help="write here (local path or s3://) instead of stdout")
@click.option("--explain", is_flag=True, help="print the plan and what was read (stderr)")
def search_command(
    catalog: str | None,
    warehouse: str | None,
    hash_index: str | None,
    catalog_remote: str | None,
    bbox: str | None,
    intersects: str | None,
    datetime_: str | None,
    ids: str | None,
    collections: str | None,
    filter_: str | None,
    fields: str | None,
    sortby: str | None,
    limit: int | None,
    as_of: str | None,
    fmt: str,
    output: str | None,
    explain: bool,
) -> int:
    """Search the catalog's items (exact; each item once) and print or write them."""
    from earthcatalog_dagster.query import search
    from earthcatalog_dagster.query.execute import use_search_memory_pool
    from earthcatalog_dagster.query.output import write_result

    use_search_memory_pool()

    if intersects and not intersects.lstrip().startswith("{"):
        intersects = Path(intersects).read_text()
    cfg = _settings(catalog=catalog, warehouse=warehouse, catalog_remote=catalog_remote)
    result = search(
        bbox=bbox,
        intersects=intersects,
        datetime=datetime_,
        ids=ids,
        collections=collections,
        filter=filter_,
        fields=fields,
        sortby=sortby,
        limit=limit,
        as_of=as_of,
        settings=cfg,
        catalog=catalog,
    )
    count = write_result(result, fmt, output, sys.stdout.buffer)
    if output:
        click.echo(f"{count} items written to {output}", err=True)
    if explain:
        click.echo(str(result.explain()), err=True)
    return 0


@cli.command("serve")
@_roots(catalog_remote=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8000, show_default=True, type=int, help="port to listen on")
def serve_command(
    catalog: str | None,
    warehouse: str | None,
    hash_index: str | None,
    catalog_remote: str | None,
    host: str,
    port: int,
) -> int:
    """Serve the catalog read-only as a STAC API 1.0 (search, filter, sort, fields)."""
    from earthcatalog_dagster.query.execute import use_search_memory_pool
    from earthcatalog_dagster.query.server import serve

    use_search_memory_pool()
    cfg = _settings(
        catalog=catalog, warehouse=warehouse, hash_index=hash_index, catalog_remote=catalog_remote
    )
    serve(cfg, host=host, port=port)
    return 0


# --- the entry point ------------------------------------------------------------------------


def _anticipated(exc: BaseException) -> tuple[int, str] | None:
    """``(exit code, message)`` for an error a user can meet and fix; ``None`` for a bug."""
    from sqlalchemy.exc import DBAPIError

    from earthcatalog_dagster.core.lock import LockHeld
    from earthcatalog_dagster.core.remote_catalog import CatalogConflict, CatalogUnreadable
    from earthcatalog_dagster.pipeline.outcomes import SourceUnreadable

    if isinstance(exc, click.ClickException):
        return exc.exit_code, exc.format_message()
    if isinstance(exc, FileNotFoundError | PermissionError | ValueError):
        return EXIT_USAGE, str(exc)
    if isinstance(exc, LockHeld | CatalogConflict | CatalogUnreadable | SourceUnreadable):
        return EXIT_FAILED, str(exc)
    if isinstance(exc, DBAPIError | sqlite3.Error):
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return EXIT_FAILED, f"catalog database error: {detail}"
    if isinstance(exc, OSError):  # our StorageError, NotADirectoryError, disk full, ...
        return EXIT_FAILED, str(exc)
    return None


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's last flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real file descriptor (captured in tests)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            # What ``cli.main(standalone_mode=False)`` does, minus its own handling of a
            # closed pipe (``sys.exit(1)``): every outcome is mapped below, in one place.
            with cli.make_context(PROG, args) as ctx:
                code = cli.invoke(ctx)
        finally:
            sys.stdout.flush()  # a closed pipe fails here, inside our handler
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:  # --help
        return exc.exit_code
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        return EXIT_USAGE
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == errno.EPIPE:
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        known = _anticipated(exc)
        if known is None:
            raise
        code, message = known
        with contextlib.suppress(BrokenPipeError):
            click.echo(f"error: {message}", err=True)
        return code


if __name__ == "__main__":
    sys.exit(main())
