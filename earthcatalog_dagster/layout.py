"""The storage layout: the one module that builds every path of the platform.

Each function takes a root URI (a local path or ``s3://bucket/prefix``) and returns a URI
under it. Nothing else in the code base concatenates paths of the catalog by hand.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Iterable

NO_CELL = "__none__"
NO_YEAR = "__none__"

_WAREHOUSE_FILE = re.compile(
    r"grid_partition=(?P<cell>[^/]+)/year=(?P<year>[^/]+)/(?P<name>part_[^/]+\.parquet)$"
)


def join(root: str, *parts: str) -> str:
    """``root/part/part``, tolerant of trailing slashes on the root."""
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts if p)])


def date_key(date: dt.date | str) -> str:
    """``YYYY-MM-DD`` for a date or an already formatted key (validated)."""
    if isinstance(date, dt.date):
        return date.isoformat()
    return dt.date.fromisoformat(date).isoformat()


# --- source items -------------------------------------------------------------------------


def source_object(bucket: str, key: str, source_root: str | None) -> str:
    """Where the item ``s3://bucket/key`` is read from: its bucket, or a mirror root."""
    if source_root is None:
        return f"s3://{bucket}/{key}"
    return join(source_root, bucket, key)


def item_id_from_key(key: str) -> str:
    """The STAC id of an item object: its file name without ``.stac.json``."""
    name = key.rsplit("/", 1)[-1]
    return name[: -len(".stac.json")] if name.endswith(".stac.json") else name


# --- inventory and deltas ------------------------------------------------------------------


def inventory_manifest(inventory_root: str, date: dt.date | str) -> str:
    """The S3 Inventory manifest delivered for ``date`` (ITS_LIVE's arrive at 01:00Z)."""
    return join(inventory_root, f"{date_key(date)}T01-00Z", "manifest.json")


def inventory_data_dir(inventory_root: str) -> str:
    return join(inventory_root, "data")


def delta_pending(delta_prefix: str, date: dt.date | str) -> str:
    return join(delta_prefix, "pending", f"delta_{date_key(date)}.parquet")


def delta_ingested(delta_prefix: str, date: dt.date | str) -> str:
    return join(delta_prefix, "ingested", f"delta_{date_key(date)}.done")


def deltas_pending_dir(delta_prefix: str) -> str:
    return join(delta_prefix, "pending")


def deltas_ingested_dir(delta_prefix: str) -> str:
    return join(delta_prefix, "ingested")


_DELTA_NAME = re.compile(r"(?:^|/)delta_(?P<date>\d{4}-\d{2}-\d{2})\.(?:parquet|done)$")


def parse_delta_date(uri: str) -> str | None:
    """The ``YYYY-MM-DD`` of a ``delta_D.parquet`` / ``delta_D.done`` URI, or ``None``."""
    match = _DELTA_NAME.search(uri)
    if not match:
        return None
    try:
        return date_key(match["date"])
    except ValueError:
        return None


# --- staging (one isolated prefix per delta date) ---------------------------------------------


def staging_for(staging_root: str, date: dt.date | str) -> str:
    return join(staging_root, f"delta_{date_key(date)}")


def chunk_file(staging_dir: str, number: int) -> str:
    return join(staging_dir, "chunks", f"chunk_{number:06d}.parquet")


def chunk_plan(staging_dir: str) -> str:
    """Written last by Phase 1: the list of chunks, so a half-written set is never reused."""
    return join(staging_dir, "chunks", "_plan.json")


def ndjson_dir(staging_dir: str) -> str:
    return join(staging_dir, "staging")


def ndjson_file(staging_dir: str, cell: str, year: int | str | None, number: int) -> str:
    year_label = NO_YEAR if year is None else year
    return join(ndjson_dir(staging_dir), cell, str(year_label), f"chunk_{number:06d}.ndjson")


def parse_ndjson_file(uri: str) -> tuple[str, str] | None:
    """``(cell, year)`` of an NDJSON staging file URI, or ``None``."""
    parts = uri.rstrip("/").split("/")
    if len(parts) < 4 or parts[-4] != "staging" or not parts[-1].endswith(".ndjson"):
        return None
    return parts[-3], parts[-2]


def warehouse_ids(staging_dir: str) -> str:
    """The ids of the files a partition's ``warehouse_parquets`` wrote, by file: read by
    its checks, ``iceberg_table`` and ``hash_index`` instead of the files themselves."""
    return join(staging_dir, "warehouse_ids.parquet")


def warehouse_footers(staging_dir: str) -> str:
    """The size and Parquet footer of each file a partition's ``warehouse_parquets``
    wrote: ``iceberg_table`` registers them without reading the files back."""
    return join(staging_dir, "warehouse_footers.parquet")


def run_complete(staging_dir: str) -> str:
    """Written by a bulk run's Phase 4: the run is done, a plain rerun is a no-op."""
    return join(staging_dir, "_complete.json")


def chunk_marker(staging_dir: str, number: int) -> str:
    return join(staging_dir, "markers", f"chunk_{number:06d}.json")


def bucket_marker(staging_dir: str, cell: str, year: str) -> str:
    return join(staging_dir, "compacted", f"{cell}__{year}.json")


def pending_chunk(staging_dir: str, number: int) -> str:
    """Keys of a chunk that failed past their retries, with the errors: retryable."""
    return join(staging_dir, "pending_chunks", f"chunk_{number:06d}.parquet")


def rejects_file(staging_dir: str, number: int) -> str:
    return join(staging_dir, "rejects", f"chunk_{number:06d}.parquet")


def aliases_dir(staging_dir: str) -> str:
    """Phase 2's record of items whose id differs from their key's file name."""
    return join(staging_dir, "aliases")


def aliases_file(staging_dir: str, number: int) -> str:
    """One chunk's ``(key_id, item_id)`` pairs whose item id is not the key's stem."""
    return join(aliases_dir(staging_dir), f"chunk_{number:06d}.parquet")


def asset_descriptor(staging_dir: str, asset: str) -> str:
    """The small JSON an asset returns, stored by the staging IO manager."""
    return join(staging_dir, f"{asset}.json")


# --- warehouse ------------------------------------------------------------------------------


def partition_dir(warehouse: str, cell: str, year: int | str | None) -> str:
    return join(warehouse, f"grid_partition={cell}", f"year={NO_YEAR if year is None else year}")


def warehouse_file(
    warehouse: str, cell: str, year: int | str | None, token: str, sequence: int
) -> str:
    """A deterministic warehouse file name: the run's token and a sequence number.

    Reruns of the same run write the same names, so they overwrite their own files
    instead of adding copies.
    """
    return join(partition_dir(warehouse, cell, year), f"part_{token}_{sequence:05d}.parquet")


def compaction_token(inputs: Iterable[str]) -> str:
    """The token of a compaction's output files in one bucket: ``compact-`` and a short
    hash of its sorted input paths.

    A rerun of the same compaction (a killed run: same inputs, still registered) writes
    the same names and overwrites its own unregistered files; other inputs give other
    names, so a registered file is never overwritten.
    """
    digest = hashlib.sha256("\n".join(sorted(set(inputs))).encode()).hexdigest()[:16]
    return f"compact-{digest}"


def compacted_file(
    warehouse: str, cell: str, year: int | str | None, token: str, sequence: int
) -> str:
    """Output file ``sequence`` of a compaction (``token`` from :func:`compaction_token`):
    ``grid_partition=<cell>/year=<year>/part_compact-<hash>_<sequence>.parquet``."""
    return warehouse_file(warehouse, cell, year, token, sequence)


_RUN_FILE = re.compile(r"(?:^|/)part_(?P<token>[^/]+)_(?P<sequence>[0-9]{5})\.parquet$")


def warehouse_file_token(uri: str) -> str | None:
    """The run token in a warehouse file name written by :func:`warehouse_file`, or ``None``
    for a file named otherwise."""
    match = _RUN_FILE.search(uri)
    return match["token"] if match else None


def parse_warehouse_file(uri: str) -> tuple[str, str] | None:
    """``(cell, year)`` of a warehouse file URI, or ``None`` if it is not one."""
    match = _WAREHOUSE_FILE.search(uri)
    return (match["cell"], match["year"]) if match else None


def table_metadata_dir(warehouse: str) -> str:
    """Where Iceberg writes the table's metadata (the table's location is the warehouse):
    ``metadata.json`` versions, manifest lists (``snap-*.avro``) and manifests."""
    return join(warehouse, "metadata")


# --- hash index -----------------------------------------------------------------------------


def hash_aliases(warehouse_hash: str) -> str:
    """The alias file beside the hash index: ``<index without .parquet>_aliases.parquet``.

    It holds the hashes of key stems (file names without ``.stac.json``) whose item id
    differs from the stem, so the daily anti-joins, which hash key stems, skip those keys
    too, while the index itself keeps holding exactly the item ids.
    """
    stem = warehouse_hash.removesuffix(".parquet")
    return f"{stem}_aliases.parquet"


# --- catalog ------------------------------------------------------------------------------


def catalog_lock(catalog: str) -> str:
    """The lock object beside the catalog (``<catalog>.lock``)."""
    return catalog.rstrip("/") + ".lock"


CATALOG_NAME = "earthcatalog.db"


def catalog_beside(warehouse: str) -> str:
    """The operators' shared ``catalog.db``: ``<parent of the warehouse>/earthcatalog.db``.

    ``s3://its-live-data/test-space/stac/catalog/warehouse`` gives
    ``s3://its-live-data/test-space/stac/catalog/earthcatalog.db``. A warehouse at the
    root of a bucket has no parent: the catalog goes at the bucket's root.
    """
    root = warehouse.rstrip("/")
    scheme, sep, rest = root.rpartition("://")
    head, slash, _ = rest.rpartition("/")
    parent = f"{scheme}{sep}{head}" if slash else root
    return join(parent, CATALOG_NAME)


def hash_index_beside(warehouse: str) -> str:
    """The operators' default hash index: the warehouse URI + ``_id_hashes.parquet``."""
    return warehouse.rstrip("/") + "_id_hashes.parquet"
