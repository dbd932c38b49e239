"""The asset checks of group ``ingest``: one function per check, each on typed inputs.

A step gathers what its checks need once — the new warehouse files' cells, years and ids
(:class:`NewRows`, from what the step's own tasks returned: no file is read back), the
hash index — and hands the same objects to every check. The new files' ids are also kept
in one staging file (:func:`write_new_ids`) for the registration and the hash index sync
of the same partition. The check specs live here too, beside the functions that
evaluate them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import pyarrow as pa
import pyarrow.compute as pc
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec

from earthcatalog_dagster import layout
from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.hash_index import HashIndex, hash_ids, load_hash_index
from earthcatalog_dagster.core.inventory import ids_of_keys
from earthcatalog_dagster.orchestration.descriptors import AlreadyIngested, NdjsonDescriptor
from earthcatalog_dagster.pipeline.hash_sync import read_staged_aliases
from earthcatalog_dagster.pipeline.phases import BucketResult

FILES_MATCH = "files_match_their_bucket"
NO_DUPLICATES = "no_duplicate_rows"
DELTA_ACCOUNTED = "delta_accounted_for"
INDEX_HOLDS = "index_holds_new_ids"
_READ_THREADS = 8

WAREHOUSE_CHECKS = [
    AssetCheckSpec(
        FILES_MATCH,
        asset="warehouse_parquets",
        blocking=True,
        description="Every new file holds exactly one (cell, year), the one its path names",
    ),
    AssetCheckSpec(
        NO_DUPLICATES,
        asset="warehouse_parquets",
        blocking=True,
        description=(
            "No (id, grid_partition) twice among the new rows; rows whose id the table "
            "holds already are dropped at registration"
        ),
    ),
    AssetCheckSpec(
        DELTA_ACCOUNTED,
        asset="warehouse_parquets",
        description="Every id of the delta is in the new files, in rejects or pending",
    ),
]
HASH_INDEX_CHECKS = [
    AssetCheckSpec(
        INDEX_HOLDS,
        asset="hash_index",
        description="The hash index holds every id of the new warehouse files",
    )
]


@dataclass(frozen=True)
class NewRows:
    """What the checks need of each new warehouse file: its cells, its years and its ids.

    Built from what ``warehouse_parquets``' tasks returned for the files they wrote
    (:meth:`from_results`: the cells, years and ids of the rows each file was written
    with), so the step reads no file back; a file without that record (its bucket was
    compacted by an earlier attempt, or spans several cells) is read (:meth:`read`).
    Files that are gone are left out: on a rerun, registration may have deleted a file
    whose every row another run registered first (pipeline/overlap.py).
    """

    files: tuple[str, ...]
    cells: tuple[frozenset[str], ...]
    years: tuple[frozenset[str], ...]
    #: Per file: the ``id`` of each row, and the ``grid_partition`` of each row.
    row_ids: tuple[pa.Array, ...]
    row_cells: tuple[pa.Array, ...]
    files_read: int = 0

    @classmethod
    def from_results(cls, results: Iterable[BucketResult]) -> NewRows:
        parts: list[tuple[str, frozenset[str], frozenset[str], pa.Array, pa.Array]] = []
        unknown: list[str] = []
        for result in results:
            known = (
                result.ids is not None
                and result.file_cells is not None
                and result.file_years is not None
            )
            for i, uri in enumerate(result.files):
                if not known or len(result.file_cells[i]) != 1:  # type: ignore[index]
                    unknown.append(uri)
                    continue
                cell = result.file_cells[i][0]  # type: ignore[index]
                ids = result.ids[i]  # type: ignore[index]
                cells = pa.array([cell] * len(ids), pa.string())
                years = frozenset(result.file_years[i])  # type: ignore[index]
                parts.append((uri, frozenset([cell]), years, ids, cells))
        read = cls.read(unknown)
        for uri, cells, years, ids, row_cells in zip(
            read.files, read.cells, read.years, read.row_ids, read.row_cells, strict=True
        ):
            parts.append((uri, cells, years, ids, row_cells))
        return cls._of(parts, files_read=read.files_read)

    @classmethod
    def read(cls, files: Iterable[str]) -> NewRows:
        """The same, read from the files (those that still exist)."""
        present = [uri for uri in files if storage.exists(uri)]

        def one(uri: str) -> tuple[str, frozenset[str], frozenset[str], pa.Array, pa.Array]:
            rows = storage.read_parquet(uri, columns=["id", "grid_partition", "datetime"])
            cells = frozenset(pc.unique(rows["grid_partition"]).to_pylist())
            years = frozenset(
                str(y) if y is not None else layout.NO_YEAR
                for y in pc.unique(pc.year(rows["datetime"])).to_pylist()
            )
            return (
                uri,
                cells,
                years,
                rows["id"].combine_chunks(),
                rows["grid_partition"].combine_chunks(),
            )

        with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
            parts = list(pool.map(one, present))
        return cls._of(parts, files_read=len(present))

    @classmethod
    def _of(
        cls,
        parts: Sequence[tuple[str, frozenset[str], frozenset[str], pa.Array, pa.Array]],
        files_read: int,
    ) -> NewRows:
        return cls(
            files=tuple(p[0] for p in parts),
            cells=tuple(p[1] for p in parts),
            years=tuple(p[2] for p in parts),
            row_ids=tuple(p[3] for p in parts),
            row_cells=tuple(p[4] for p in parts),
            files_read=files_read,
        )

    @cached_property
    def table(self) -> pa.Table | None:
        """``id`` and ``grid_partition`` of every new row (``None``: no new file)."""
        if not self.files:
            return None
        return pa.table(
            {
                "id": concat_ids(self.row_ids),
                "grid_partition": concat_ids(self.row_cells),
            }
        )

    @cached_property
    def ids(self) -> pa.Array:
        """The distinct ids of the new rows."""
        if self.table is None:
            return pa.array([], pa.string())
        return pc.unique(self.table["id"])

    def ids_by_file(self) -> dict[str, pa.Array]:
        return dict(zip(self.files, self.row_ids, strict=True))


def write_new_ids(staging: str, new: NewRows) -> str:
    """Each new file's ids, in one staging file (``file``, ``id``): the registration and
    the hash index sync of the same partition take them from there instead of reading
    every file back. Returns its URI."""
    uri = layout.warehouse_ids(staging)
    lengths = [len(ids) for ids in new.row_ids]
    table = pa.table(
        {
            "file": pa.array(
                [uri_ for uri_, n in zip(new.files, lengths, strict=True) for _ in range(n)],
                pa.string(),
            ),
            "id": concat_ids(new.row_ids),
        }
    )
    storage.write_parquet(table, uri)
    return uri


def read_new_ids(staging: str, files: Iterable[str]) -> dict[str, pa.Array]:
    """The ids :func:`write_new_ids` recorded for ``files`` (files it does not list, or no
    record at all: left out, for the caller to read)."""
    uri = layout.warehouse_ids(staging)
    wanted = set(files)
    if not wanted or not storage.exists(uri):
        return {}
    table = storage.read_parquet(uri, columns=["file", "id"])
    table = table.filter(pc.is_in(table["file"], value_set=pa.array(sorted(wanted), pa.string())))
    if table.num_rows == 0:
        return {}
    table = table.sort_by("file")
    files_col = table["file"].combine_chunks()
    ids = table["id"].combine_chunks()
    # Runs of one file name: the boundaries where the name changes.
    out: dict[str, pa.Array] = {}
    values = files_col.to_pylist()
    start = 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[start]:
            out[values[start]] = ids.slice(start, i - start)
            start = i
    return out


def load_index(uri: str) -> HashIndex:
    """The hash index, loaded once per step for all its checks (missing: empty)."""
    return load_hash_index(uri)


def read_ids_by_file(files: Iterable[str]) -> dict[str, pa.Array]:
    """Each file's ``id`` column, read: the hash-index sync takes them as ``known_ids``
    (so it does not read the files again) and the check looks them up."""
    files = list(files)

    def ids(uri: str) -> pa.Array:
        return storage.read_parquet(uri, columns=["id"])["id"].combine_chunks()

    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        return dict(zip(files, pool.map(ids, files), strict=True))


def concat_ids(arrays: Iterable[pa.Array]) -> pa.Array:
    arrays = [a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a for a in arrays]
    return pa.concat_arrays(arrays) if arrays else pa.array([], pa.string())


def files_match_their_bucket(new: NewRows) -> AssetCheckResult:
    """Each file holds exactly the (cell, year) its path names (``add_files`` infers the
    partition from the file's statistics, so a file spanning two would break the table)."""
    mismatched = []
    for uri, cells, years in zip(new.files, new.cells, new.years, strict=True):
        cell, year = layout.parse_warehouse_file(uri) or ("?", "?")
        if cells != {cell} or years != {year}:
            mismatched.append(f"{uri}: cells {sorted(cells)}, years {sorted(years)}")
    return AssetCheckResult(
        check_name=FILES_MATCH,
        passed=not mismatched,
        metadata={
            "files checked": len(new.files),
            "files read back": new.files_read,
            "mismatched": "\n".join(mismatched[:20]),
        },
    )


def no_duplicate_rows(new: NewRows, index: HashIndex) -> AssetCheckResult:
    """No (id, grid_partition) twice among the new rows; reports (without failing) how
    many new ids the index holds already: registration drops those rows."""
    table = new.table
    pairs = table.num_rows if table is not None else 0
    distinct = (
        pc.count_distinct(
            pc.binary_join_element_wise(table["id"], table["grid_partition"], "\x00")
        ).as_py()
        if table is not None
        else 0
    )
    already = int(index.contains(hash_ids(new.ids)).sum()) if len(new.ids) else 0
    return AssetCheckResult(
        check_name=NO_DUPLICATES,
        passed=distinct == pairs,
        metadata={
            "new rows": pairs,
            "repeated (id, cell) among new rows": pairs - distinct,
            "new ids already in the table (dropped at registration)": already,
        },
    )


def _keys_under(folder: str) -> list[pa.ChunkedArray]:
    return [
        storage.read_parquet(o.uri, columns=["key"])["key"]
        for o in storage.list_objects(folder, suffix=".parquet")
    ]


def delta_accounted_for(
    new: NewRows, index: HashIndex, staging: str, ndjson: NdjsonDescriptor
) -> AssetCheckResult:
    """Every id of the run's chunks is in a new file, recorded as rejected/missing or
    pending retry, or already in the table (a delta reused after a partial run); and the
    counts of ``ndjson_items`` add up."""
    chunk_keys = _keys_under(layout.join(staging, "chunks"))
    recorded = [
        keys
        for part in ("rejects", "pending_chunks")
        for keys in _keys_under(layout.join(staging, part))
    ]
    delta_ids = pc.unique(pa.chunked_array([ids_of_keys(k) for k in chunk_keys], pa.string()))
    # An item whose id differs from its file name is in the new files under its id.
    aliased = read_staged_aliases(staging)["key_id"]
    known = pa.chunked_array(
        [new.ids, aliased, *(ids_of_keys(k) for k in recorded)], type=pa.string()
    ).combine_chunks()
    unaccounted = delta_ids.filter(pc.invert(pc.is_in(delta_ids, value_set=known)))
    if len(unaccounted):
        unaccounted = unaccounted.filter(pa.array(~index.contains(hash_ids(unaccounted))))
    counts_add_up = ndjson.items + ndjson.rejected + ndjson.missing + ndjson.failed == ndjson.rows
    return AssetCheckResult(
        check_name=DELTA_ACCOUNTED,
        passed=counts_add_up and len(unaccounted) == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "delta ids": len(delta_ids),
            "in warehouse": ndjson.items,
            "rejected": ndjson.rejected,
            "missing (404)": ndjson.missing,
            "pending retry": ndjson.failed,
            "unaccounted": len(unaccounted),
            "unaccounted sample": ", ".join(unaccounted.slice(0, 5).to_pylist()),
        },
    )


def index_holds_new_ids(new_ids: pa.Array, index: HashIndex | None) -> AssetCheckResult:
    """The hash index (as the step's sync wrote it) holds every id of the new files."""
    if index is None:  # no table: nothing was registered, so nothing to hold
        index = HashIndex.empty()
    missing = int((~index.contains(hash_ids(new_ids))).sum()) if len(new_ids) else 0
    return AssetCheckResult(
        check_name=INDEX_HOLDS,
        passed=missing == 0,
        metadata={"ids checked": len(new_ids), "ids missing from the index": missing},
    )


def skipped(specs: Sequence[AssetCheckSpec], ingested: AlreadyIngested) -> list[AssetCheckResult]:
    """The checks of a step that did nothing (the date was ingested already): they pass,
    saying why nothing was checked."""
    return [
        AssetCheckResult(
            check_name=spec.name,
            passed=True,
            metadata={"skipped": f"nothing new: {ingested.message}"},
        )
        for spec in specs
    ]
