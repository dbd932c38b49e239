"""The Iceberg table ``earthcatalog.stac_items`` in a PyIceberg SQLite catalog.

Warehouse files are registered in place, the way ``add_files`` does it (no rewrite);
registration is idempotent (paths already in the table are skipped) and commits one
snapshot per call.
The table's location is the warehouse root, so Iceberg metadata sits in
``<warehouse>/metadata/`` beside the hive-layout data.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.io.pyarrow import (
    PyArrowFileIO,
    _check_pyarrow_schema_compatible,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.table import Table, TableProperties
from pyiceberg.transforms import IdentityTransform, YearTransform
from sqlalchemy.exc import IntegrityError, OperationalError

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.geoparquet import WrittenFile
from earthcatalog_dagster.core.remote_catalog import check_catalog_file
from earthcatalog_dagster.core.schema import (
    GRID_RESOLUTION_PROPERTY,
    GRID_TYPE_PROPERTY,
    HASH_INDEX_PROPERTY,
    TABLE_IDENTIFIER,
    TABLE_NAMESPACE,
    iceberg_schema,
)

log = logging.getLogger(__name__)
CATALOG_NAME = "earthcatalog"
#: Snapshot summary properties of a registration: how many files it added, and the run
#: tokens of their names (what :func:`registered_by_runs` looks up).
FILES_ADDED_PROPERTY = "earthcatalog.files-added"
RUN_TOKENS_PROPERTY = "earthcatalog.run-tokens"
#: Snapshot summary property of a maintenance commit (e.g. ``compact``): what ``info``
#: reports as the last maintenance.
OPERATION_PROPERTY = "earthcatalog.operation"

#: Column statistics kept in the table's manifests: the columns scans filter on. Computing
#: them for all 47 leaf columns of every registered file cost more than writing the file.
PRUNING_COLUMNS = (
    "grid_partition",
    "datetime",
    "start_datetime",
    "end_datetime",
    "created",
    "updated",
    "platform",
    "percent_valid_pixels",
    "date_dt",
    "latitude",
    "longitude",
    "bbox.xmin",
    "bbox.ymin",
    "bbox.xmax",
    "bbox.ymax",
)
#: PyIceberg rebases a refused append onto the new table and commits it; our commit path
#: (pipeline/commit.py) must instead see the refusal and check the new table for rows it
#: holds already, so the table does not retry by itself.
NO_COMMIT_RETRY = {TableProperties.COMMIT_NUM_RETRIES: "0"}
METRICS_PROPERTIES = {
    "write.metadata.metrics.default": "none",
    "write.metadata.metrics.column.id": "truncate(16)",
    **{f"write.metadata.metrics.column.{name}": "full" for name in PRUNING_COLUMNS},
}
#: Old ``metadata.json`` versions are bounded: each commit deletes the versions that fall
#: out of the table's metadata log, which keeps the last ``previous-versions-max``. PyIceberg
#: 0.12 honours both (``Table._do_commit`` → ``Catalog._delete_old_metadata``). Set on a new
#: table here, and on an existing one by its first maintenance run
#: (:func:`ensure_metadata_retention`).
METADATA_RETENTION = {
    TableProperties.METADATA_DELETE_AFTER_COMMIT_ENABLED: "true",
    TableProperties.METADATA_PREVIOUS_VERSIONS_MAX: "20",
}


class SinglePutFileIO(PyArrowFileIO):
    """PyIceberg's pyarrow FileIO, except that a small S3 object (table metadata, manifest
    lists, manifests) is written with one PUT instead of a three-request multipart upload:
    pyarrow's ``allow_delayed_open`` starts a multipart upload only once a part fills."""

    def _initialize_s3_fs(self, netloc: str | None):  # type: ignore[no-untyped-def]
        filesystem = super()._initialize_s3_fs(netloc)
        try:
            rebuild, (options,) = filesystem.__reduce__()
            return rebuild({**options, "allow_delayed_open": True})
        except (TypeError, ValueError):  # another pyarrow: keep its default
            return filesystem


SINGLE_PUT_FILE_IO = f"{__name__}.SinglePutFileIO"


@dataclass(frozen=True)
class Registration:
    """What one registration did: the snapshot it committed (None if nothing new)."""

    snapshot_id: int | None
    added: int
    skipped: int


def open_catalog(catalog_path: str, warehouse: str, *, attempts: int = 5) -> SqlCatalog:
    """The SQLite-backed catalog at ``catalog_path`` (created if absent).

    Catalogs are opened outside the catalog lock (readers open them too), so two processes
    opening a new ``catalog.db`` at once race to create its tables and namespace; the
    loser's insert fails, and it retries and finds them there.

    When the warehouse is on S3, Iceberg's own metadata and data paths are ``s3://`` URIs:
    PyIceberg's S3 FileIO gets the storage module's settings (region, endpoint,
    credentials) as catalog properties.
    """
    check_catalog_file(catalog_path)  # garbage or truncated: a clear error naming the file
    Path(catalog_path).parent.mkdir(parents=True, exist_ok=True)
    properties = {}
    if not storage.is_local(warehouse):
        properties = {**storage.pyiceberg_properties(), "py-io-impl": SINGLE_PUT_FILE_IO}
    for attempt in range(1, attempts + 1):
        try:
            catalog = SqlCatalog(
                CATALOG_NAME, uri=f"sqlite:///{catalog_path}", warehouse=warehouse, **properties
            )
            with contextlib.suppress(NamespaceAlreadyExistsError):
                catalog.create_namespace(TABLE_NAMESPACE)
            return catalog
        except (IntegrityError, OperationalError):
            if attempt == attempts:
                raise
            time.sleep(0.05 * attempt)
    raise ValueError(f"attempts must be positive, not {attempts}")


def load_table(catalog: SqlCatalog) -> Table | None:
    """The table, or ``None`` before the first build."""
    try:
        return catalog.load_table(TABLE_IDENTIFIER)
    except NoSuchTableError:
        return None


def partition_spec() -> PartitionSpec:
    """identity(grid_partition) + year(datetime), on the fresh ids of :func:`iceberg_schema`."""
    schema = iceberg_schema()
    return PartitionSpec(
        PartitionField(
            source_id=schema.find_field("grid_partition").field_id,
            field_id=1000,
            transform=IdentityTransform(),
            name="grid_partition",
        ),
        PartitionField(
            source_id=schema.find_field("datetime").field_id,
            field_id=1001,
            transform=YearTransform(),
            name="datetime_year",
        ),
    )


def create_table(
    catalog: SqlCatalog, *, warehouse: str, resolution: int, hash_index_path: str
) -> Table:
    """A new, empty table with the operators' partition spec and properties."""
    return catalog.create_table(
        TABLE_IDENTIFIER,
        schema=iceberg_schema(),
        location=warehouse.rstrip("/"),
        partition_spec=partition_spec(),
        properties={
            "format-version": "2",
            GRID_TYPE_PROPERTY: "h3",
            GRID_RESOLUTION_PROPERTY: str(resolution),
            HASH_INDEX_PROPERTY: hash_index_path,
            "write.parquet.compression-codec": "zstd",
            **METRICS_PROPERTIES,
            **NO_COMMIT_RETRY,
            **METADATA_RETENTION,
        },
    )


def ensure_metadata_retention(table: Table) -> bool:
    """Set :data:`METADATA_RETENTION` on a table made before it (one commit; no-op after).

    Returns whether it committed. Run under the catalog lock, like every commit.
    """
    if all(table.properties.get(k) == v for k, v in METADATA_RETENTION.items()):
        return False
    with table.transaction() as tx:
        tx.set_properties(**METADATA_RETENTION)
    return True


def table_resolution(table: Table) -> int:
    """The H3 resolution the table was built with."""
    return int(table.properties.get(GRID_RESOLUTION_PROPERTY, "1"))


def registered_files(table: Table) -> set[str]:
    """Paths of the data files in the table's current snapshot."""
    if table.current_snapshot() is None:
        return set()
    return set(table.inspect.files().column("file_path").to_pylist())


def registered_by_runs(table: Table, uris: Iterable[str]) -> set[str]:
    """Which of ``uris`` the table has ever registered (see :func:`files_of_runs`)."""
    wanted = set(uris)
    tokens = {layout.warehouse_file_token(uri) for uri in wanted}
    if None in tokens:  # a file not named by a run: only a full listing can tell
        return wanted & registered_files(table)
    return wanted & files_of_runs(table, {t for t in tokens if t is not None})


def files_of_runs(table: Table, tokens: Iterable[str]) -> set[str]:
    """Every file the runs with these tokens ever registered: a daily run's cost-flat answer
    to "is this file registered already?" and "which file number is free?".

    Every registration records in its snapshot's summary the run tokens of the files it
    added (``part_<token>_<n>.parquet``), so only the manifests that the snapshots of
    these runs added are read, never every manifest of the table: the cost follows the
    run, not the table's history. A file once registered stays in the answer after
    compaction removed it, so its name is never reused. A table with registrations from
    before the tokens were recorded falls back to every file of the current snapshot.
    """
    wanted = set(tokens)
    if not wanted:
        return set()
    snapshots = table.metadata.snapshots
    if any(
        FILES_ADDED_PROPERTY in s.summary.additional_properties
        and RUN_TOKENS_PROPERTY not in s.summary.additional_properties
        for s in snapshots
        if s.summary is not None
    ):
        return registered_files(table)
    found: set[str] = set()
    for snapshot in snapshots:
        recorded = (snapshot.summary.additional_properties if snapshot.summary else {}).get(
            RUN_TOKENS_PROPERTY, ""
        )
        if not wanted & set(recorded.split(",")):
            continue
        for manifest in snapshot.manifests(table.io):
            if manifest.added_snapshot_id != snapshot.snapshot_id:
                continue
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
                if layout.warehouse_file_token(entry.data_file.file_path) in wanted:
                    found.add(entry.data_file.file_path)
    return found


def register_files(
    table: Table, uris: Iterable[str], *, footers: Mapping[str, WrittenFile] | None = None
) -> Registration:
    """Add warehouse files to the table in one snapshot, skipping those already in it.

    This is PyIceberg's ``add_files`` (same statistics, same partition inference from
    column statistics, same name mapping) with one difference: the schema compatibility
    check, which costs milliseconds of Python per file, runs once per distinct file schema
    instead of once per file, and footers are read concurrently — or not at all for
    files whose footer the writer hands over in ``footers``.
    """
    wanted = list(dict.fromkeys(uris))
    already = registered_by_runs(table, wanted)
    new = [uri for uri in wanted if uri not in already]
    if not new:
        return Registration(None, 0, len(wanted))
    tokens = sorted({layout.warehouse_file_token(uri) or "" for uri in new} - {""})
    data_files = _data_files(table, new, footers or {})
    with table.transaction() as tx:
        if tx.table_metadata.name_mapping() is None:
            mapping = tx.table_metadata.schema().name_mapping.model_dump_json()
            tx.set_properties(**{TableProperties.DEFAULT_NAME_MAPPING: mapping})
        if any(tx.table_metadata.properties.get(k) != v for k, v in NO_COMMIT_RETRY.items()):
            tx.set_properties(**NO_COMMIT_RETRY)  # a table made before this setting
        properties = {FILES_ADDED_PROPERTY: str(len(new)), RUN_TOKENS_PROPERTY: ",".join(tokens)}
        with tx.update_snapshot(snapshot_properties=properties).fast_append() as append:
            for data_file in data_files:
                append.append_data_file(data_file)
    snapshot = table.current_snapshot()
    log.info("registered %d files in snapshot %s", len(new), snapshot and snapshot.snapshot_id)
    snapshot_id = snapshot.snapshot_id if snapshot else None
    return Registration(snapshot_id, len(new), len(wanted) - len(new))


def data_files(
    table: Table, uris: Iterable[str], *, footers: Mapping[str, WrittenFile] | None = None
) -> list[DataFile]:
    """Iceberg ``DataFile`` entries for ``uris``, built exactly as :func:`register_files`
    builds them (statistics plan, partition from column statistics), for commits other
    than an append: compaction adds them in an OVERWRITE snapshot."""
    return _data_files(table, list(uris), footers or {})


def _data_files(table: Table, uris: list[str], known: Mapping[str, WrittenFile]) -> list[DataFile]:
    metadata = table.metadata
    schema = metadata.schema()
    stats_plan = compute_statistics_plan(schema, metadata.properties)
    column_mapping = parquet_path_to_id_mapping(schema)
    checked: list[pq.ParquetSchema] = []

    def footer(uri: str) -> tuple[pq.FileMetaData, int]:
        if uri in known:
            return known[uri].footer, known[uri].size
        source = table.io.new_input(uri)
        with source.open() as stream:
            return pq.read_metadata(stream), len(source)

    with ThreadPoolExecutor(max_workers=16) as pool:
        footers = list(pool.map(footer, uris))
    data_files = []
    for uri, (parquet_metadata, size) in zip(uris, footers, strict=True):
        if not any(parquet_metadata.schema.equals(seen) for seen in checked):
            _check_pyarrow_schema_compatible(
                schema,
                parquet_metadata.schema.to_arrow_schema(),
                format_version=metadata.format_version,
            )
            checked.append(parquet_metadata.schema)
        statistics = data_file_statistics_from_parquet_metadata(
            parquet_metadata=parquet_metadata,
            stats_columns=stats_plan,
            parquet_column_mapping=column_mapping,
        )
        data_files.append(
            DataFile.from_args(
                content=DataFileContent.DATA,
                file_path=uri,
                file_format=FileFormat.PARQUET,
                partition=statistics.partition(metadata.spec(), schema),
                file_size_in_bytes=size,
                sort_order_id=None,
                spec_id=metadata.default_spec_id,
                equality_ids=None,
                key_metadata=None,
                **statistics.to_serialized_dict(),
            )
        )
    return data_files
