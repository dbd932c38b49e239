"""The Iceberg table ``earthcatalog.stac_items`` in a PyIceberg SQLite catalog.

Warehouse files are registered in place, the way ``add_files`` does it (no rewrite);
registration is idempotent (paths already in the table are skipped) and commits one
snapshot per call.
The table's location is the warehouse root, so Iceberg metadata sits in
``<warehouse>/metadata/`` beside the hive-layout data.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pyarrow.lib import ArrowNotImplementedError
from pyarrow.parquet import Statistics
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.conversions import to_bytes
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from pyiceberg.io.pyarrow import (
    MetricModeTypes,
    PyArrowFileIO,
    StatisticsCollector,
    StatsAggregator,
    _check_pyarrow_schema_compatible,
    compute_statistics_plan,
    data_file_statistics_from_parquet_metadata,
    parquet_path_to_id_mapping,
)
from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
from pyiceberg.partitioning import PartitionField, PartitionSpec, partition_record_value
from pyiceberg.schema import Schema
from pyiceberg.table import Table, TableProperties
from pyiceberg.transforms import IdentityTransform, TruncateTransform, YearTransform
from pyiceberg.typedef import Record
from pyiceberg.types import (
    BinaryType,
    DecimalType,
    DoubleType,
    FloatType,
    IntegerType,
    LongType,
    PrimitiveType,
    StringType,
    TimestampType,
    TimestamptzType,
)
from pyiceberg.utils.truncate import (
    truncate_upper_bound_binary_string,
    truncate_upper_bound_text_string,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import geoparquet, storage
from earthcatalog_dagster.core.geoparquet import KnownFile
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
#: them for all 47 leaf columns of every registered file cost more than writing the file;
#: the writer writes Parquet statistics for these (and ``id``) only.
PRUNING_COLUMNS = geoparquet.PRUNING_COLUMNS
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
    table: Table, uris: Iterable[str], *, footers: Mapping[str, KnownFile] | None = None
) -> Registration:
    """Add warehouse files to the table in one snapshot, skipping those already in it.

    This is PyIceberg's ``add_files`` (same statistics, same partition inference from
    column statistics, same name mapping, the same ``DataFile`` field for field) with two
    differences: the schema compatibility check and the per-column statistics decisions,
    which cost milliseconds of Python per file, are made once per distinct file schema
    (:class:`_StatisticsPlan`) instead of once per file, and footers are read
    concurrently — or not at all for files whose footer the writer hands over in
    ``footers``.
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
    table: Table, uris: Iterable[str], *, footers: Mapping[str, KnownFile] | None = None
) -> list[DataFile]:
    """Iceberg ``DataFile`` entries for ``uris``, built exactly as :func:`register_files`
    builds them (statistics plan, partition from column statistics), for commits other
    than an append: compaction adds them in an OVERWRITE snapshot."""
    return _data_files(table, list(uris), footers or {})


def _data_files(table: Table, uris: list[str], known: Mapping[str, KnownFile]) -> list[DataFile]:
    metadata = table.metadata
    schema = metadata.schema()
    stats_plan = compute_statistics_plan(schema, metadata.properties)
    column_mapping = parquet_path_to_id_mapping(schema)
    spec = metadata.spec()
    partition_plan = _PartitionPlan(spec, schema)
    plans: list[tuple[pq.ParquetSchema, _StatisticsPlan | None]] = []

    def footer(uri: str) -> tuple[pq.FileMetaData, int]:
        if uri in known:
            return known[uri].footer, known[uri].size
        source = table.io.new_input(uri)
        with source.open() as stream:
            return pq.read_metadata(stream), len(source)

    def plan_for(parquet_schema: pq.ParquetSchema) -> _StatisticsPlan | None:
        for seen, plan in plans:
            if parquet_schema.equals(seen):
                return plan
        _check_pyarrow_schema_compatible(
            schema, parquet_schema.to_arrow_schema(), format_version=metadata.format_version
        )
        plan = _StatisticsPlan.build(parquet_schema, stats_plan, column_mapping)
        plans.append((parquet_schema, plan))
        return plan

    footers: Iterable[tuple[pq.FileMetaData, int]]
    if all(uri in known for uri in uris):  # nothing to read: no pool
        # One at a time: a parsed footer takes ~100 KB, and a writer may hand them over
        # serialized, to be parsed here (``ingest()`` does, for thousands of files).
        footers = ((known[uri].footer, known[uri].size) for uri in uris)
    else:
        with ThreadPoolExecutor(max_workers=16) as pool:
            footers = list(pool.map(footer, uris))
    data_files = []
    missing: set[int] = set()
    for uri, (parquet_metadata, size) in zip(uris, footers, strict=True):
        plan = plan_for(parquet_metadata.schema)
        if plan is None:  # a column type the fast path does not handle: PyIceberg's way
            statistics = data_file_statistics_from_parquet_metadata(
                parquet_metadata=parquet_metadata,
                stats_columns=stats_plan,
                parquet_column_mapping=column_mapping,
            )
            partition = statistics.partition(spec, schema)
            serialized = statistics.to_serialized_dict()
        else:
            serialized, extremes = plan.statistics(parquet_metadata, missing)
            partition = partition_plan.partition(extremes)
        data_files.append(
            DataFile.from_args(
                content=DataFileContent.DATA,
                file_path=uri,
                file_format=FileFormat.PARQUET,
                partition=partition,
                file_size_in_bytes=size,
                sort_order_id=None,
                spec_id=metadata.default_spec_id,
                equality_ids=None,
                key_metadata=None,
                **serialized,
            )
        )
    if missing:  # once per call, not per column of each of thousands of files
        log.warning(
            "no Parquet statistics for field ids %s in some of %d files: no bounds for them",
            sorted(missing),
            len(uris),
        )
    return data_files


@dataclass(frozen=True)
class _ColumnStatistics:
    """How one Parquet leaf column feeds a ``DataFile``: PyIceberg's statistics plan for
    it, resolved once per file schema instead of once per column of every file."""

    position: int
    field_id: int
    mode: MetricModeTypes
    extremes: Callable[[Statistics], tuple[Any, Any]]
    lower: Callable[[Any], bytes | None]
    upper: Callable[[Any], bytes | None]


@dataclass(frozen=True)
class _StatisticsPlan:
    """``data_file_statistics_from_parquet_metadata`` + ``to_serialized_dict`` for one
    Parquet schema, with the per-column decisions taken once.

    PyIceberg rebuilds ``MetricsMode`` singletons, truncation transforms and type
    dispatches for every column of every file, which made registering a small file cost
    more than writing it. The values are the same: the same Parquet statistics, merged
    across row groups the same way, serialized by the same PyIceberg functions.
    """

    columns: tuple[_ColumnStatistics, ...]

    @classmethod
    def build(
        cls,
        parquet_schema: pq.ParquetSchema,
        stats_plan: Mapping[int, StatisticsCollector],
        column_mapping: Mapping[str, int],
    ) -> _StatisticsPlan | None:
        """The plan, or ``None`` when a column needs PyIceberg's general path (decimals)."""
        columns = []
        for position in range(len(parquet_schema)):
            leaf = parquet_schema.column(position)
            field_id = column_mapping[leaf.path]
            collector = stats_plan[field_id]
            mode = collector.mode.type
            if mode == MetricModeTypes.NONE or mode == MetricModeTypes.COUNTS:
                columns.append(_ColumnStatistics(position, field_id, mode, _logical, _none, _none))
                continue
            if isinstance(collector.iceberg_type, DecimalType):
                return None
            try:  # the physical type check PyIceberg makes when it meets the column
                StatsAggregator(collector.iceberg_type, leaf.physical_type, collector.mode.length)
            except ValueError as e:
                raise ValueError(f"{e} for column '{collector.column_name}'") from e
            lower, upper = _bound_serializers(collector)
            extremes = _extremes_reader(leaf, collector.iceberg_type)
            columns.append(_ColumnStatistics(position, field_id, mode, extremes, lower, upper))
        return cls(tuple(columns))

    def statistics(
        self, parquet_metadata: pq.FileMetaData, missing: set[int]
    ) -> tuple[dict[str, Any], _Extremes]:
        """The ``DataFile`` statistics fields of one file, and each column's min and max
        (for the partition values). Columns whose metrics the table keeps but the file has
        no statistics of get no bounds (as in PyIceberg) and are added to ``missing``."""
        column_sizes: dict[int, int] = {}
        value_counts: dict[int, int] = {}
        null_value_counts: dict[int, int] = {}
        extremes: _Extremes = {}
        invalid: set[int] = set()
        split_offsets: list[int] = []
        for r in range(parquet_metadata.num_row_groups):
            row_group = parquet_metadata.row_group(r)
            first = row_group.column(0)
            data_offset, dictionary_offset = first.data_page_offset, first.dictionary_page_offset
            if first.has_dictionary_page and dictionary_offset < data_offset:
                split_offsets.append(dictionary_offset)
            else:
                split_offsets.append(data_offset)
            for plan in self.columns:
                column = row_group.column(plan.position)
                field_id = plan.field_id
                column_sizes[field_id] = (
                    column_sizes.get(field_id, 0) + column.total_compressed_size
                )
                if plan.mode == MetricModeTypes.NONE:
                    continue
                value_counts[field_id] = value_counts.get(field_id, 0) + column.num_values
                if not column.is_stats_set:
                    invalid.add(field_id)
                    missing.add(field_id)
                    continue
                try:
                    statistics = column.statistics
                    if statistics.has_null_count:
                        null_value_counts[field_id] = (
                            null_value_counts.get(field_id, 0) + statistics.null_count
                        )
                    if plan.mode == MetricModeTypes.COUNTS:
                        continue
                    low, high = plan.extremes(statistics)
                except ArrowNotImplementedError as e:
                    invalid.add(field_id)
                    log.warning(e)
                    continue
                if field_id not in extremes:
                    extremes[field_id] = (low, high)
                    continue
                current_low, current_high = extremes[field_id]
                if current_low is None:
                    current_low = low
                elif low is not None:
                    current_low = min(low, current_low)
                if current_high is None:
                    current_high = high
                elif high is not None:
                    current_high = max(high, current_high)
                extremes[field_id] = (current_low, current_high)
        split_offsets.sort()
        for field_id in invalid:
            extremes.pop(field_id, None)
            null_value_counts.pop(field_id, None)
        lower_bounds: dict[int, bytes] = {}
        upper_bounds: dict[int, bytes] = {}
        serializers = {plan.field_id: plan for plan in self.columns if plan.field_id in extremes}
        for field_id, (low, high) in extremes.items():
            plan = serializers[field_id]
            if low is not None and (lower := plan.lower(low)) is not None:
                lower_bounds[field_id] = lower
            if high is not None and (upper := plan.upper(high)) is not None:
                upper_bounds[field_id] = upper
        serialized = {
            "record_count": parquet_metadata.num_rows,
            "column_sizes": column_sizes,
            "value_counts": value_counts,
            "null_value_counts": null_value_counts,
            "nan_value_counts": {},
            "lower_bounds": lower_bounds,
            "upper_bounds": upper_bounds,
            "split_offsets": split_offsets,
        }
        return serialized, extremes


#: Each column's merged Parquet (min, max), by field id.
_Extremes = dict[int, tuple[Any, Any]]


def _none(_: Any) -> None:
    return None


def _logical(statistics: Statistics) -> tuple[Any, Any]:
    return statistics.min, statistics.max


def _raw(statistics: Statistics) -> tuple[Any, Any]:
    if not statistics.has_min_max:
        return None, None
    return statistics.min_raw, statistics.max_raw


def _utf8(statistics: Statistics) -> tuple[Any, Any]:
    if not statistics.has_min_max:
        return None, None
    return statistics.min_raw.decode(), statistics.max_raw.decode()


def _extremes_reader(
    leaf: pq.ColumnSchema, iceberg_type: PrimitiveType
) -> Callable[[Statistics], tuple[Any, Any]]:
    """How to read a column's min and max so they serialize as ``Statistics.min``/``max``
    would: pyarrow boxes a logical value through an Arrow scalar (a timestamp becomes a
    ``datetime``, then micros again), which is most of a small file's registration cost.
    Where the raw Parquet value *is* what PyIceberg serializes (numbers, microsecond
    timestamps, UTF-8 strings), it is read raw; anything else keeps the logical path."""
    physical, logical = leaf.physical_type, leaf.logical_type.type
    if isinstance(iceberg_type, StringType) and physical == "BYTE_ARRAY" and logical == "STRING":
        return _utf8
    if logical == "NONE" and (
        (isinstance(iceberg_type, IntegerType | LongType) and physical in ("INT32", "INT64"))
        or (isinstance(iceberg_type, FloatType | DoubleType) and physical in ("FLOAT", "DOUBLE"))
    ):
        return _raw
    if (
        isinstance(iceberg_type, TimestampType | TimestamptzType)
        and physical == "INT64"
        and logical == "TIMESTAMP"
        and '"timeUnit":"microseconds"' in leaf.logical_type.to_json()
    ):
        return _raw
    return _logical


def _bound_serializers(
    collector: StatisticsCollector,
) -> tuple[Callable[[Any], bytes | None], Callable[[Any], bytes | None]]:
    """PyIceberg's ``StatsAggregator.min_as_bytes``/``max_as_bytes`` for one column, as
    two functions of the value, with its truncation and serializer resolved once."""
    iceberg_type = collector.iceberg_type
    length = collector.mode.length
    serialize = functools.partial(to_bytes.dispatch(type(iceberg_type)), iceberg_type)
    truncate = TruncateTransform(width=length).transform(iceberg_type) if length else None

    def lower(value: Any) -> bytes | None:
        return serialize(truncate(value) if truncate is not None else value)

    if isinstance(iceberg_type, StringType | BinaryType):
        kind = str if isinstance(iceberg_type, StringType) else bytes
        bound = (
            truncate_upper_bound_text_string if kind is str else truncate_upper_bound_binary_string
        )

        def upper(value: Any) -> bytes | None:
            if not isinstance(value, kind):
                raise ValueError(f"Expected the current_max to be {kind.__name__}")
            result = bound(value, length)
            return serialize(result) if result is not None else None

        return lower, upper
    if length is not None:
        raise ValueError(f"{iceberg_type} cannot be truncated")
    return lower, serialize


class _PartitionPlan:
    """``DataFileStatistics.partition``: each partition value from the min and max of its
    source column (they must agree), with the fields and transforms resolved once."""

    def __init__(self, spec: PartitionSpec, schema: Schema) -> None:
        self.fields = [
            (
                field,
                field.source_id,
                field.transform.transform(schema.find_field(field.source_id).field_type),
            )
            for field in spec.fields
        ]
        self.schema = schema
        for field in spec.fields:
            if not field.transform.preserves_order:
                raise ValueError(
                    "Cannot infer partition value from parquet metadata for a non-linear "
                    f"Partition Field: {field.name} with transform {field.transform}"
                )

    def partition(self, extremes: _Extremes) -> Record:
        """The partition record of a file whose columns span ``extremes``."""
        values = []
        for field, source_id, transform in self.fields:
            if source_id not in extremes:
                values.append(None)
                continue
            low, high = (
                transform(partition_record_value(field, value, self.schema))
                for value in extremes[source_id]
            )
            if low != high:
                raise ValueError(
                    "Cannot infer partition value from parquet metadata as there are more "
                    f"than one partition values for Partition Field: {field.name}. "
                    f"lower_value={low!r}, upper_value={high!r}"
                )
            values.append(low)
        return Record(*values)
