"""CQL2 filters evaluated on warehouse rows: vectorized where possible, exact always.

A filter (a parsed ``cql2.Expr``) is split into its top-level ``AND`` conjuncts. Each
conjunct built from what the warehouse columns can answer directly — ``and``, ``or``,
``not``, the comparisons, ``like``, ``between``, ``in`` and ``isNull`` on ``id``,
``collection`` and the ``properties.*`` columns, with number, string, boolean and
``TIMESTAMP`` literals — is compiled to ``pyarrow.compute`` calls over whole columns. Any
other conjunct (spatial or temporal functions, ``casei``, properties kept in
``stac_extra``, ...) is a *residual*: it is evaluated by cql2's own evaluator on the
STAC item of each row that passed everything else. That per-row loop is deliberate — it
runs only on the few candidate rows, and it is what keeps the answer exact for any filter
cql2 accepts.

Null semantics follow cql2: a comparison with a missing value is false.

The simple comparisons of the top-level conjuncts are also returned as PyIceberg
expressions (:func:`iceberg_pushdown`), so the planner can skip files whose column
statistics rule them out (an inclusive test; exactness comes from the row-level pass).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from earthcatalog_dagster.core.schema import PROPERTIES, TIMESTAMP, Kind
from earthcatalog_dagster.query.params import QueryError

_KIND = {p.name: p.kind for p in PROPERTIES}
_KIND["id"] = Kind.STRING
_KIND["collection"] = Kind.STRING
_COMPARISONS = {
    "=": pc.equal,
    "<>": pc.not_equal,
    "<": pc.less,
    "<=": pc.less_equal,
    ">": pc.greater,
    ">=": pc.greater_equal,
}
_MIRROR = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

Evaluator = Callable[[pa.Table], pa.ChunkedArray | pa.Array]


class _Unsupported(Exception):
    """This node is not compiled to Arrow: the conjunct holding it becomes a residual."""


@dataclass
class CompiledFilter:
    """A filter ready to run: vectorized conjuncts and residual ones (see the module doc)."""

    vectorized: list[Evaluator] = field(default_factory=list)
    residual: list[Any] = field(default_factory=list)  # cql2.Expr, one per conjunct
    columns: set[str] = field(default_factory=set)
    pushdown: list[tuple[str, str, Any]] = field(default_factory=list)

    def mask(self, table: pa.Table) -> pa.Array:
        """The rows the vectorized conjuncts keep (nulls count as false)."""
        result: Any = pa.array([True] * table.num_rows, pa.bool_())
        for evaluate in self.vectorized:
            result = pc.and_kleene(result, evaluate(table))
        return _as_array(pc.fill_null(result, False))

    def residual_mask(self, items: list[dict[str, Any]]) -> pa.Array:
        """cql2's evaluation of the residual conjuncts on the given STAC items.

        A filter cql2 parses but cannot evaluate (an unknown function) is a
        :class:`~earthcatalog_dagster.query.params.QueryError`.
        """
        try:
            keep = [all(expr.matches(item) for expr in self.residual) for item in items]
        except Exception as exc:  # cql2 raises a bare Exception when it cannot evaluate
            raise QueryError(f"cannot evaluate the CQL2 filter: {exc}") from None
        return pa.array(keep, pa.bool_())


def compile_filter(expr: Any) -> CompiledFilter:
    """Compile a ``cql2.Expr`` (or ``None``: no filter) as the module doc describes."""
    compiled = CompiledFilter()
    if expr is None:
        return compiled
    import cql2

    tree = expr.to_json()
    for conjunct in _conjuncts(tree):
        columns: set[str] = set()
        try:
            compiled.vectorized.append(_compile(conjunct, columns))
            compiled.columns |= columns
            simple = _simple_comparison(conjunct)
            if simple is not None:
                compiled.pushdown.append(simple)
        except _Unsupported:
            compiled.residual.append(cql2.parse_json(json.dumps(conjunct)))
    return compiled


def _conjuncts(tree: Any) -> list[Any]:
    if isinstance(tree, dict) and tree.get("op") == "and":
        return [c for arg in tree["args"] for c in _conjuncts(arg)]
    return [tree]


def _as_array(values: Any) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _column_name(node: Any) -> str | None:
    if isinstance(node, dict) and set(node) == {"property"}:
        name = str(node["property"]).removeprefix("properties.")
        return name if name in _KIND else None
    return None


def _compile(node: Any, columns: set[str]) -> Evaluator:
    if isinstance(node, bool):
        return lambda table: pa.array([node] * table.num_rows, pa.bool_())
    if not isinstance(node, dict) or "op" not in node:
        raise _Unsupported(node)
    op, args = node["op"], node.get("args") or []
    if op in ("and", "or"):
        parts = [_compile(arg, columns) for arg in args]
        combine = pc.and_kleene if op == "and" else pc.or_kleene

        def logical(table: pa.Table) -> Any:
            result = parts[0](table)
            for part in parts[1:]:
                result = combine(result, part(table))
            return result

        return logical
    if op == "not":
        inner = _compile(args[0], columns)
        return lambda table: pc.invert(pc.fill_null(inner(table), False))
    if op == "isNull":
        name = _property(args[0], columns)
        return lambda table: pc.is_null(table[name])
    if op in _COMPARISONS:
        left, right = args
        name = _column_name(left)
        if name is None:
            name, op, right = _column_name(right), _MIRROR[op], left
        if name is None:
            raise _Unsupported(node)
        columns.add(name)
        value = _literal(right, _KIND[name])
        function = _COMPARISONS[op]
        return lambda table: function(table[name], value)
    if op == "between":
        name = _property(args[0], columns)
        low, high = (_literal(v, _KIND[name]) for v in args[1:3])
        return lambda table: pc.and_kleene(
            pc.greater_equal(table[name], low), pc.less_equal(table[name], high)
        )
    if op == "in":
        name = _property(args[0], columns)
        if not isinstance(args[1], list):
            raise _Unsupported(node)
        kind = _KIND[name]
        values = [_literal(v, kind) for v in args[1]]
        if kind in (Kind.INTEGER, Kind.FLOAT):
            value_set = pa.array([v.as_py() for v in values], pa.float64())
            return lambda table: pc.is_in(table[name].cast(pa.float64()), value_set=value_set)
        value_set = pa.array([v.as_py() for v in values], values[0].type if values else None)
        return lambda table: pc.is_in(table[name], value_set=value_set)
    if op == "like":
        name = _property(args[0], columns)
        if _KIND[name] is not Kind.STRING or not isinstance(args[1], str):
            raise _Unsupported(node)
        pattern = args[1]
        return lambda table: pc.match_like(table[name], pattern)
    raise _Unsupported(node)


def _property(node: Any, columns: set[str]) -> str:
    name = _column_name(node)
    if name is None:
        raise _Unsupported(node)
    columns.add(name)
    return name


def _literal(node: Any, kind: Kind) -> pa.Scalar:
    """A literal as a scalar of the column's kind; anything ambiguous is unsupported."""
    if isinstance(node, dict):
        if set(node) == {"timestamp"} and kind is Kind.TIMESTAMP:
            return pa.scalar(_timestamp(node["timestamp"]), TIMESTAMP)
        raise _Unsupported(node)
    if isinstance(node, bool):
        raise _Unsupported(node)
    if kind in (Kind.INTEGER, Kind.FLOAT):
        if not isinstance(node, (int, float)):
            raise _Unsupported(node)
        return pa.scalar(float(node), pa.float64())
    if kind is Kind.TIMESTAMP:
        if not isinstance(node, str):
            raise _Unsupported(node)
        return pa.scalar(_timestamp(node), TIMESTAMP)
    if not isinstance(node, str):
        raise _Unsupported(node)
    return pa.scalar(node, pa.string())


def _timestamp(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        raise _Unsupported(text) from None
    if value.tzinfo is None:
        raise _Unsupported(text)  # a string compared as a string by cql2: keep its semantics
    return value.astimezone(dt.UTC)


def _simple_comparison(node: Any) -> tuple[str, str, Any] | None:
    """``(column, op, python value)`` of a conjunct that is one comparison, else ``None``."""
    if not isinstance(node, dict) or node.get("op") not in ("=", "<", "<=", ">", ">="):
        return None
    left, right = node["args"]
    op = node["op"]
    name = _column_name(left)
    if name is None:
        name, op, right = _column_name(right), _MIRROR[op], left
    if name is None or name in ("id", "collection"):
        return None
    kind = _KIND[name]
    value = _literal(right, kind).as_py()
    if kind is Kind.INTEGER:
        if not float(value).is_integer():
            return None
        value = int(value)
    return name, op, value


def iceberg_pushdown(compiled: CompiledFilter) -> Any:
    """The pushdown comparisons as one PyIceberg expression (``AlwaysTrue`` if none)."""
    from pyiceberg.expressions import (
        AlwaysTrue,
        And,
        EqualTo,
        GreaterThan,
        GreaterThanOrEqual,
        LessThan,
        LessThanOrEqual,
    )

    make = {
        "=": EqualTo,
        "<": LessThan,
        "<=": LessThanOrEqual,
        ">": GreaterThan,
        ">=": GreaterThanOrEqual,
    }
    result: Any = AlwaysTrue()
    for name, op, value in compiled.pushdown:
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        result = And(result, make[op](name, value))
    return result
