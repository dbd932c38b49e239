"""``earthcatalog-dagster expire-snapshots`` and ``remove-orphans``: flags, defaults from
MAINTENANCE_DEFAULTS, durations, dry runs and usage errors."""

from __future__ import annotations

import json

import pytest

from earthcatalog_dagster.cli import DURATION, main
from earthcatalog_dagster.pipeline.ingest import ingest
from earthcatalog_dagster_tests.conftest import DAY_1, DAY_2
from earthcatalog_dagster_tests.helpers import load_table, write_day


@pytest.mark.parametrize(
    ("text", "days"), [("7d", 7.0), ("36h", 1.5), ("90m", 90 / 1440), ("3600s", 1 / 24), ("2", 2.0)]
)
def test_durations(text: str, days: float) -> None:
    assert DURATION.convert(text, None, None) == pytest.approx(days)


def test_expire_and_remove_orphans_commands(home, capsys) -> None:
    for seed, date in enumerate((DAY_1, DAY_2)):
        _, manifest = write_day(home, date, 6, seed=30 + seed)
        ingest(manifest, settings=home, h3_resolution=1, workers=1)
    capsys.readouterr()

    # The defaults keep everything this young table has.
    assert main(["expire-snapshots", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["snapshots_expired"] == 0

    assert main(["expire-snapshots", "--older-than", "0d", "--retain-last", "1", "--dry-run"]) == 0
    assert "would expire 1 snapshot(s)" in capsys.readouterr().out
    assert len(load_table(home).snapshots()) == 2

    args = ["expire-snapshots", "--older-than", "0h", "--retain-last", "1", "--json"]
    assert main([*args, "--catalog", home.catalog, "--warehouse", home.warehouse]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["snapshots_expired"] == 1 and done["manifest_lists_deleted"] == 1
    assert len(load_table(home).snapshots()) == 1

    assert main(["remove-orphans", "--dry-run"]) == 0
    assert "would delete 0 data file(s)" in capsys.readouterr().out
    assert main(["remove-orphans", "--older-than", "36h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["orphans"] == []


def test_bad_values_are_usage_errors(home, capsys) -> None:
    assert main(["expire-snapshots", "--older-than", "7x"]) == 2
    assert "not a duration" in capsys.readouterr().err
    assert main(["expire-snapshots", "--retain-last", "0"]) == 2
    assert "--retain-last" in capsys.readouterr().err
    assert main(["remove-orphans", "--older-than", "-1d"]) == 2
