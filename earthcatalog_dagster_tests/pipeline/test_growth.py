"""A daily run's cost does not grow with the table's history (ARCHITECTURE invariant 8).

Wall time is noisy, so the oracle counts work instead: how many manifests a day's run
opens. Every day appends one manifest; a run that read every manifest (``inspect.files()``,
a listing of every registered file) would open one more each day.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from pyiceberg.manifest import ManifestFile

from earthcatalog_dagster import bulk_ingest, ingest
from earthcatalog_dagster.core import catalog as iceberg
from earthcatalog_dagster_tests.conftest import DAY_1
from earthcatalog_dagster_tests.helpers import (
    load_table,
    materialize_partition,
    table_pairs,
    write_day,
)

pytestmark = pytest.mark.slow
DAYS = 6


@pytest.fixture
def manifest_reads(monkeypatch) -> dict[str, int]:
    """Counts the manifests opened (``ManifestFile.fetch_manifest_entry``) while it lives."""
    counter = {"reads": 0}
    real = ManifestFile.fetch_manifest_entry

    def counting(self, *args, **kwargs):
        counter["reads"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(ManifestFile, "fetch_manifest_entry", counting)
    return counter


def _reads_per_day(home, manifest_reads, run: Callable[[dt.date, int], None]) -> list[int]:
    reads = []
    for n in range(DAYS):
        date = DAY_1 + dt.timedelta(days=n)
        before = manifest_reads["reads"]
        run(date, n)
        reads.append(manifest_reads["reads"] - before)
    manifests = load_table(home).current_snapshot().manifests(load_table(home).io)
    assert len(manifests) >= DAYS  # the history did grow: one manifest (at least) a day
    return reads


def _flat(reads: list[int]) -> None:
    later = reads[1:]  # day 1 creates the table
    assert max(later) == min(later), f"manifests opened per day grow: {reads}"


def test_daily_ingest_reads_the_same_manifests_whatever_the_history(home, manifest_reads):
    def run(date: dt.date, n: int) -> None:
        _, manifest = write_day(home, date, 15, seed=100 + n)
        ingest(manifest, settings=home, h3_resolution=1)

    _flat(_reads_per_day(home, manifest_reads, run))
    pairs = table_pairs(home)
    assert len(pairs) == len(set(pairs))


def test_daily_bulk_ingest_reads_the_same_manifests_whatever_the_history(home, manifest_reads):
    def run(date: dt.date, n: int) -> None:
        _, manifest = write_day(home, date, 15, seed=200 + n)
        bulk_ingest(
            manifest, settings=home, h3_resolution=1, scheduler="synchronous", progress=False
        )

    _flat(_reads_per_day(home, manifest_reads, run))


def test_daily_partitions_read_the_same_manifests_whatever_the_history(
    home, manifest_reads, monkeypatch
):
    def every_file(*args, **kwargs):
        raise AssertionError("a daily run listed every file of the table")

    monkeypatch.setattr(iceberg, "registered_files", every_file)

    def run(date: dt.date, n: int) -> None:
        write_day(home, date, 15, seed=300 + n)
        assert materialize_partition(home, date).success

    _flat(_reads_per_day(home, manifest_reads, run))
