"""The vectorized CQL2 evaluation agrees with cql2's own evaluator, row by row."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from earthcatalog_dagster.core.items import parse_items, table_to_items
from earthcatalog_dagster.query.filters import compile_filter
from earthcatalog_dagster.query.params import parse_filter
from earthcatalog_dagster.synthetic import make_item


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(7)
    items = [make_item(rng) for _ in range(300)]
    parsed = parse_items([orjson.dumps(i) for i in items], [i["id"] for i in items])
    return parsed.table, list(table_to_items(parsed.table))


FILTERS = [
    "percent_valid_pixels > 50",
    "percent_valid_pixels >= 50 AND platform = 'LC08'",
    "platform = 'LC08' OR platform = 'S1A' OR percent_valid_pixels < 10",
    "NOT (percent_valid_pixels < 30) AND date_dt <= 100",
    "percent_valid_pixels BETWEEN 20 AND 40",
    "platform IN ('LC08', 'LC09', 'S2B')",
    "platform LIKE 'S%'",
    "datetime > TIMESTAMP('2018-01-01T00:00:00Z')",
    "latitude < -60 OR latitude > 75",
    "50 < percent_valid_pixels",
    "platform IS NULL",
    "id = 'nope' OR percent_valid_pixels = 99",
    "\"sat:orbit_state\" = 'ascending'",
    "t_after(datetime, TIMESTAMP('2020-01-01T00:00:00Z'))",  # a residual: cql2 evaluates it
]


@pytest.mark.parametrize("text", FILTERS)
def test_vectorized_equals_cql2(rows, text) -> None:
    table, items = rows
    expr = parse_filter(text)
    compiled = compile_filter(expr)
    mask = np.asarray(compiled.mask(table).to_numpy(zero_copy_only=False), dtype=bool)
    if compiled.residual:
        mask &= np.asarray(compiled.residual_mask(items).to_numpy(zero_copy_only=False))
    expected = np.array([expr.matches(item) for item in items])
    assert (mask == expected).all(), text
    assert 0 < expected.sum() < len(items) or text in ("platform IS NULL",) or "nope" in text


def test_simple_conjuncts_are_vectorized_and_pushed_down() -> None:
    compiled = compile_filter(parse_filter("percent_valid_pixels > 50 AND platform = 'LC08'"))
    assert len(compiled.vectorized) == 2 and not compiled.residual
    assert ("percent_valid_pixels", ">", 50) in compiled.pushdown
    residual = compile_filter(parse_filter("S_INTERSECTS(geometry, POINT(1 2))"))
    assert residual.residual and not residual.vectorized
