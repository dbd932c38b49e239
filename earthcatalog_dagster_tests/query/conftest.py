"""Fixtures of the query tests: one ingested catalog per module."""

from __future__ import annotations

import pytest

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster_tests.query.oracle import Catalog, build_catalog


@pytest.fixture(scope="module")
def cat(tmp_path_factory) -> Catalog:
    """One catalog per test module (two days, two snapshots)."""
    return build_catalog(Settings.embedded(tmp_path_factory.mktemp("search") / "home"))
