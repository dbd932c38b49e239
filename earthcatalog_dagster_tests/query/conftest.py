"""Fixtures of the query tests: one ingested catalog per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from earthcatalog_dagster.config import Settings
from earthcatalog_dagster.query import files
from earthcatalog_dagster_tests.query.oracle import Catalog, build_catalog


@pytest.fixture(scope="module")
def cat(tmp_path_factory) -> Catalog:
    """One catalog per test module (two days, two snapshots)."""
    return build_catalog(Settings.embedded(tmp_path_factory.mktemp("search") / "home"))


@pytest.fixture(scope="module", autouse=True)
def query_cache(tmp_path_factory) -> Iterator[str]:
    """The on-disk manifest-index cache of this module: a fresh folder, not the user's."""
    folder = str(tmp_path_factory.mktemp("query-cache"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(files.CACHE_VAR, folder)
        yield folder
