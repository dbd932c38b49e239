"""Writing a search result for people and tools: GeoJSON, NDJSON, GeoParquet or a table.

Used by the ``earthcatalog-dagster search`` command. GeoJSON is one RFC 7946
FeatureCollection (what ``geopandas.read_file``, QGIS and ogr2ogr open), written item by
item so that a large answer is never held twice; NDJSON is one item per line (what
``stac-geoparquet`` and ``rustac`` read); Parquet is the stac-geoparquet table of
:meth:`~earthcatalog_dagster.query.result.SearchResult.to_arrow` with its GeoParquet
metadata (DuckDB, geopandas, ``stac_geoparquet``).
"""

from __future__ import annotations

import io
from typing import IO

import orjson
import pyarrow.parquet as pq

from earthcatalog_dagster.core import storage
from earthcatalog_dagster.core.items import format_timestamps
from earthcatalog_dagster.query.result import SearchResult

FORMATS = ("geojson", "ndjson", "parquet", "table")
#: Columns of the ``table`` format: what a person scans first.
TABLE_COLUMNS = ("id", "datetime", "platform", "percent_valid_pixels", "date_dt")


def write_geojson(result: SearchResult, out: IO[bytes]) -> int:
    """The items as one FeatureCollection; returns how many were written."""
    out.write(b'{"type":"FeatureCollection","features":[')
    count = 0
    for item in result.items():
        if count:
            out.write(b",")
        out.write(b"\n")
        out.write(orjson.dumps(item))
        count += 1
    out.write(b"\n]}\n")
    return count


def write_ndjson(result: SearchResult, out: IO[bytes]) -> int:
    """One item per line; returns how many were written."""
    count = 0
    for item in result.items():
        out.write(orjson.dumps(item) + b"\n")
        count += 1
    return count


def parquet_bytes(result: SearchResult) -> bytes:
    """The stac-geoparquet table (GeoParquet 1.1 metadata, zstd) as bytes."""
    sink = io.BytesIO()
    pq.write_table(result.to_arrow(), sink, compression="zstd")
    return sink.getvalue()


def render_table(result: SearchResult) -> str:
    """A plain text table of the main columns, one line per item."""
    table = format_timestamps(result.to_arrow())
    names = [c for c in TABLE_COLUMNS if c in table.column_names]
    rows = [[("" if v is None else str(v)) for v in table[c].to_pylist()] for c in names]
    widths = [max([len(n), *map(len, col)]) for n, col in zip(names, rows, strict=True)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
    for values in zip(*rows, strict=True):
        lines.append("  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)))
    lines.append(f"({table.num_rows} items)")
    return "\n".join(lines)


def write_result(result: SearchResult, fmt: str, output: str | None, stdout: IO[bytes]) -> int:
    """Write ``result`` in ``fmt`` to ``output`` (a local path or ``s3://`` URI; ``None``:
    ``stdout``); returns the number of items."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if fmt == "parquet":
        if output is None:
            raise ValueError("--format parquet needs --output PATH")
        storage.write_bytes(output, parquet_bytes(result))
        return result.count()
    buffer = io.BytesIO() if output is not None else stdout
    if fmt == "geojson":
        count = write_geojson(result, buffer)
    elif fmt == "ndjson":
        count = write_ndjson(result, buffer)
    else:
        text = render_table(result)
        buffer.write(text.encode() + b"\n")
        count = result.count()
    if output is not None:
        assert isinstance(buffer, io.BytesIO)
        storage.write_bytes(output, buffer.getvalue())
    return count
