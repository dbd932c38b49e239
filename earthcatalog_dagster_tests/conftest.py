"""Shared fixtures: an isolated embedded home per test and synthetic ITS_LIVE days."""

from __future__ import annotations

import datetime as dt

import pytest

from earthcatalog_dagster.config import Settings

DAY_1 = dt.date(2026, 4, 27)
DAY_2 = dt.date(2026, 4, 28)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Settings:
    """Embedded-default settings under a temporary ``$EARTHCATALOG_HOME``."""
    for name in (
        "WAREHOUSE",
        "WAREHOUSE_HASH",
        "STAGING",
        "DELTA_PREFIX",
        "INVENTORY",
        "CATALOG",
        "SOURCE_ROOT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EARTHCATALOG_HOME", str(tmp_path / "home"))
    return Settings.from_env()
