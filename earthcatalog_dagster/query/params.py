"""The parameters of an item search, parsed and validated once (STAC API Item Search).

Everything a caller may hand :func:`~earthcatalog_dagster.query.search` — Python objects,
CLI strings or a STAC API request — becomes one :class:`SearchParams`, or raises
:class:`QueryError` (a ``ValueError``) with a message a user can act on; the server maps it
to a 400. Planning and execution only ever see validated values:

* the query area as one shapely geometry in lon/lat, folded into [-180, 180]: a ``bbox``
  whose west is greater than its east crosses the antimeridian and becomes two boxes; an
  ``intersects`` polygon whose ring jumps more than 180° of longitude between two
  vertices (``170 → -170``) crosses it too, and is cut there (:func:`across_antimeridian`);
* the time interval as two optional UTC datetimes (``None``: open end);
* the CQL2 filter as a parsed ``cql2.Expr`` (text or JSON);
* ``fields`` as include/exclude sets, ``sortby`` as ``(column, ascending)`` pairs.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely
from shapely.geometry import box, shape

from earthcatalog_dagster.core.schema import PROPERTY_NAMES

#: Names that are STAC top-level fields rather than ``properties.*`` (for sortby / fields).
TOP_LEVEL_SORTABLE = ("id", "collection")


class QueryError(ValueError):
    """A search parameter is malformed; the message says which and why."""


@dataclass(frozen=True)
class Fields:
    """The Fields extension: dotted paths to include and to exclude (empty: no change)."""

    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)


@dataclass(frozen=True)
class SearchParams:
    """One validated search. ``geometry`` is ``None`` for no spatial constraint."""

    geometry: shapely.Geometry | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    ids: tuple[str, ...] | None = None
    collections: tuple[str, ...] | None = None
    filter: Any = None  # cql2.Expr
    fields: Fields = field(default_factory=Fields)
    sortby: tuple[tuple[str, bool], ...] = ()
    limit: int | None = None

    @property
    def has_time(self) -> bool:
        return self.start is not None or self.end is not None


def build_params(
    *,
    bbox: Sequence[float] | str | None = None,
    intersects: Any = None,
    datetime: str | dt.datetime | Sequence[Any] | None = None,
    ids: Iterable[str] | str | None = None,
    collections: Iterable[str] | str | None = None,
    filter: Any = None,
    filter_lang: str | None = None,
    fields: Any = None,
    sortby: Any = None,
    limit: int | str | None = None,
) -> SearchParams:
    """Parse and validate every parameter (see the module doc); raise :class:`QueryError`."""
    if bbox is not None and intersects is not None:
        raise QueryError("give either bbox or intersects, not both")
    geometry = None
    if bbox is not None:
        geometry = parse_bbox(bbox)
    elif intersects is not None:
        geometry = parse_intersects(intersects)
    start, end = parse_datetime(datetime)
    return SearchParams(
        geometry=geometry,
        start=start,
        end=end,
        ids=_strings(ids, "ids"),
        collections=_strings(collections, "collections"),
        filter=parse_filter(filter, filter_lang),
        fields=parse_fields(fields),
        sortby=parse_sortby(sortby),
        limit=parse_limit(limit),
    )


# --- space ----------------------------------------------------------------------------------


def parse_bbox(value: Sequence[float] | str) -> shapely.Geometry:
    """A 2D (or 3D: heights ignored) bbox as a lon/lat geometry; ``west > east`` crosses
    the antimeridian and gives the two boxes either side of it (RFC 7946)."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[,\s]+", value.strip().strip("[]")) if p]
    else:
        parts = list(value)
    try:
        numbers = [float(v) for v in parts]
    except (TypeError, ValueError):
        raise QueryError(f"bbox must be 4 (or 6) numbers, got {value!r}") from None
    if len(numbers) == 6:
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    if len(numbers) != 4:
        raise QueryError(f"bbox must be 4 (or 6) numbers: west,south,east,north; got {value!r}")
    west, south, east, north = numbers
    if not all(map(_finite, numbers)):
        raise QueryError(f"bbox values must be finite, got {value!r}")
    if not (-180.0 <= west <= 180.0 and -180.0 <= east <= 180.0):
        raise QueryError(f"bbox longitudes must lie in [-180, 180], got {value!r}")
    if not (-90.0 <= south <= 90.0 and -90.0 <= north <= 90.0):
        raise QueryError(f"bbox latitudes must lie in [-90, 90], got {value!r}")
    if south > north:
        raise QueryError(f"bbox south ({south}) is greater than north ({north})")
    if west <= east:
        return box(west, south, east, north)
    return shapely.MultiPolygon([box(west, south, 180.0, north), box(-180.0, south, east, north)])


def parse_intersects(value: Any) -> shapely.Geometry:
    """A GeoJSON geometry (dict, JSON text, ``__geo_interface__``) or a shapely geometry."""
    if isinstance(value, shapely.Geometry):
        geometry = value
    else:
        if isinstance(value, (str, bytes)):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise QueryError(f"intersects is not valid GeoJSON: {exc}") from None
        if hasattr(value, "__geo_interface__"):
            value = value.__geo_interface__
        if isinstance(value, Mapping) and value.get("type") == "Feature":
            value = value.get("geometry")
        if not isinstance(value, Mapping) or "type" not in value:
            raise QueryError("intersects must be a GeoJSON geometry object")
        try:
            geometry = shape(value)
        except Exception as exc:  # shapely raises several types on bad GeoJSON
            raise QueryError(f"intersects is not a valid GeoJSON geometry: {exc}") from None
    if geometry.is_empty:
        raise QueryError("intersects is an empty geometry")
    x_min, y_min, x_max, y_max = geometry.bounds
    if not all(map(_finite, (x_min, y_min, x_max, y_max))):
        raise QueryError("intersects has non-finite coordinates")
    if y_min < -90.0 or y_max > 90.0 or x_min < -180.0 or x_max > 180.0:
        raise QueryError("intersects coordinates must be lon/lat within [-180, 180] × [-90, 90]")
    geometry = across_antimeridian(geometry)
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    return geometry


def across_antimeridian(geometry: shapely.Geometry) -> shapely.Geometry:
    """``geometry`` with each polygon whose ring crosses ±180 cut there (RFC 7946 §3.1.9).

    GeoJSON rings are lists of positions, and a step such as ``170 → -170`` is read the
    short way (20° east, across the antimeridian), as the fan-out reads stored footprints
    (:func:`~earthcatalog_dagster.query.geometry.planar_area`): read as a plane, the same
    ring would be the band round the rest of the world. A ring winding round a pole is the
    cap between it and the pole. A step along the antimeridian itself (``-180 → 180``, the
    edge of a world-wide box) is not a crossing, and polygons without a jump of more than
    180° are returned as they are. To mean an edge longer than 180°, add vertices.
    """
    from earthcatalog_dagster.query.geometry import planar_area

    parts = list(shapely.get_parts(geometry))
    if not any(isinstance(p, shapely.Polygon) and _crosses(p) for p in parts):
        return geometry
    pieces = [
        planar_area(p) if isinstance(p, shapely.Polygon) and _crosses(p) else p for p in parts
    ]
    return shapely.union_all(pieces)


def _crosses(polygon: shapely.Polygon) -> bool:
    """A ring step of more than 180° of longitude, not along the ±180 meridian."""
    for ring in (polygon.exterior, *polygon.interiors):
        lons = shapely.get_coordinates(ring)[:, 0]
        if len(lons) < 2:
            continue
        a, b = lons[:-1], lons[1:]
        jump = (abs(b - a) > 180.0) & ~((abs(a) == 180.0) & (abs(b) == 180.0))
        if jump.any():
            return True
    return False


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


# --- time -----------------------------------------------------------------------------------

_OPEN = ("", "..")
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:\d{2})?")


def parse_datetime(
    value: str | dt.datetime | dt.date | Sequence[Any] | None,
) -> tuple[dt.datetime | None, dt.datetime | None]:
    """An RFC 3339 instant or interval ``start/end`` (``..`` or empty: open) as UTC bounds.

    A bare date (``2020-01-01``) stands for the whole day; an instant gives equal bounds.
    ``(start, end)`` pairs of datetimes/strings/``None`` are accepted from Python.
    """
    if value is None:
        return None, None
    if isinstance(value, (dt.datetime, dt.date)):
        return _bound(value, False), _bound(value, True)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            raise QueryError("datetime is empty")
        if "/" not in text:
            return _bound(text, False), _bound(text, True)
        parts = text.split("/")
        if len(parts) != 2:
            raise QueryError(f"datetime interval must be start/end, got {value!r}")
    else:
        parts = list(value)
        if len(parts) != 2:
            raise QueryError(f"datetime interval must be (start, end), got {value!r}")
    start = None if parts[0] is None or str(parts[0]).strip() in _OPEN else _bound(parts[0], False)
    end = None if parts[1] is None or str(parts[1]).strip() in _OPEN else _bound(parts[1], True)
    if start is None and end is None:
        raise QueryError("datetime interval cannot be open at both ends")
    if start is not None and end is not None and start > end:
        raise QueryError(f"datetime interval starts after it ends: {value!r}")
    return start, end


def _bound(value: Any, upper: bool) -> dt.datetime:
    """One bound as an aware UTC datetime; a date covers its whole day."""
    if isinstance(value, dt.datetime):
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    if isinstance(value, dt.date):
        day = dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC)
        return day + dt.timedelta(days=1, microseconds=-1) if upper else day
    text = str(value).strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        try:
            return _bound(dt.date.fromisoformat(text), upper)
        except ValueError:
            raise QueryError(f"not a date: {text!r}") from None
    if not _RFC3339.fullmatch(text):
        raise QueryError(f"not an RFC 3339 datetime: {text!r}")
    try:
        parsed = dt.datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        raise QueryError(f"not an RFC 3339 datetime: {text!r}") from None
    return _bound(parsed, upper)


# --- the rest -------------------------------------------------------------------------------


def _strings(value: Iterable[str] | str | None, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",") if v.strip()]
    else:
        items = [str(v) for v in value]
    if not items:
        raise QueryError(f"{name} is empty")
    return tuple(dict.fromkeys(items))


def parse_filter(value: Any, lang: str | None = None) -> Any:
    """A CQL2 filter (text, JSON text or a JSON dict) as a ``cql2.Expr``; ``None``: none."""
    if value is None or value == "":
        return None
    import cql2

    if lang not in (None, "cql2-text", "cql2-json"):
        raise QueryError(f"filter-lang must be cql2-text or cql2-json, not {lang!r}")
    try:
        if isinstance(value, Mapping):
            expr = cql2.parse_json(json.dumps(value))
        elif lang == "cql2-json" or (lang is None and str(value).lstrip().startswith("{")):
            expr = cql2.parse_json(str(value))
        else:
            expr = cql2.parse_text(str(value))
        # No expr.validate(): it compiles cql2's JSON schema on every call (~60 ms). What
        # parses but cannot be evaluated fails in the evaluator, as a QueryError too.
    except (cql2.ParseError, cql2.ValidationError, ValueError) as exc:
        detail = " ".join(line.strip(" |") for line in str(exc).splitlines() if line.strip(" |"))
        raise QueryError(f"invalid CQL2 filter: {detail}") from None
    return expr


def parse_fields(value: Any) -> Fields:
    """``"id,-properties.created"`` style text, a list of such entries, or the POST form
    ``{"include": [...], "exclude": [...]}``."""
    if value is None or value == "":
        return Fields()
    if isinstance(value, Fields):
        return value
    if isinstance(value, Mapping):
        return Fields(frozenset(value.get("include") or ()), frozenset(value.get("exclude") or ()))
    entries = value.split(",") if isinstance(value, str) else list(value)
    include, exclude = set(), set()
    for raw in entries:
        entry = str(raw).strip()
        if not entry:
            continue
        if entry.startswith("-"):
            exclude.add(entry[1:])
        else:
            include.add(entry.lstrip("+"))
    return Fields(frozenset(include), frozenset(exclude))


def sort_column(name: str) -> str:
    """The warehouse column of a sortby/fields name (``properties.datetime`` → ``datetime``)."""
    column = name.removeprefix("properties.")
    if column not in PROPERTY_NAMES and column not in TOP_LEVEL_SORTABLE:
        raise QueryError(
            f"cannot sort by {name!r}: sortable fields are id, collection and "
            + ", ".join(sorted(PROPERTY_NAMES))
        )
    return column


def parse_sortby(value: Any) -> tuple[tuple[str, bool], ...]:
    """``"-datetime,id"`` text, a list of such, or the POST form
    ``[{"field": ..., "direction": "asc"|"desc"}]`` as ``(column, ascending)`` pairs."""
    if value is None or value == "" or value == []:
        return ()
    entries = value.split(",") if isinstance(value, str) else list(value)
    out: list[tuple[str, bool]] = []
    for entry in entries:
        if isinstance(entry, Mapping):
            direction = str(entry.get("direction", "asc")).lower()
            if direction not in ("asc", "desc"):
                raise QueryError(f"sort direction must be asc or desc, not {direction!r}")
            out.append((sort_column(str(entry.get("field", ""))), direction == "asc"))
            continue
        text = str(entry).strip()
        if not text:
            continue
        ascending = not text.startswith("-")
        out.append((sort_column(text.lstrip("+-")), ascending))
    return tuple(out)


def parse_limit(value: int | str | None) -> int | None:
    """A positive item count, or ``None`` for no limit."""
    if value is None or value == "":
        return None
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise QueryError(f"limit must be a positive integer, got {value!r}") from None
    if limit < 1:
        raise QueryError(f"limit must be a positive integer, got {value!r}")
    return limit
