"""Shared fixtures: an isolated embedded home per test and synthetic ITS_LIVE days.

``home`` is the embedded local default; parametrized indirectly with ``"s3"``
(:data:`local_and_s3`) the same test runs with every root on ``s3://`` against a moto
server over HTTP (fixtures in :mod:`earthcatalog_dagster_tests.s3_fixtures`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os

import pytest

from earthcatalog_dagster.config import ROOT_VARS, Settings
from earthcatalog_dagster.core import storage

pytest_plugins = ["earthcatalog_dagster_tests.s3_fixtures"]

DAY_1 = dt.date(2026, 4, 27)
DAY_2 = dt.date(2026, 4, 28)


#: Run a test using ``home`` once on local paths and once with every root on ``s3://``.
local_and_s3 = pytest.mark.parametrize("home", ["local", "s3"], indirect=True)


@pytest.fixture
def home(request, tmp_path, monkeypatch):
    """Embedded-default settings under a temporary ``$EARTHCATALOG_HOME``.

    With the indirect parameter ``"s3"``: :func:`s3_home`'s settings instead, and at the
    end the shared ``catalog.db`` on S3 must be exactly the working copy the test left.
    """
    if getattr(request, "param", "local") == "s3":
        settings = request.getfixturevalue("s3_home")
        yield settings
        _remote_catalog_is_the_local_one(settings)
        return
    for name in ROOT_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EARTHCATALOG_HOME", str(tmp_path / "home"))
    yield Settings.from_env()


def _remote_catalog_is_the_local_one(settings: Settings) -> None:
    if settings.catalog_remote is None or not os.path.exists(settings.catalog):
        return
    with open(settings.catalog, "rb") as f:
        local = hashlib.sha256(f.read()).hexdigest()
    remote = hashlib.sha256(storage.read_bytes(settings.catalog_remote)).hexdigest()
    assert remote == local, f"{settings.catalog_remote} is not the catalog the run left"


def roots_for(settings: Settings):
    """Dagster resources ``roots`` and ``catalog`` holding exactly ``settings``."""
    from earthcatalog_dagster.orchestration.resources import IcebergCatalog, StorageRoots

    roots = StorageRoots.from_settings(settings)
    return roots, IcebergCatalog(catalog_path=settings.catalog, remote_uri=settings.catalog_remote)
