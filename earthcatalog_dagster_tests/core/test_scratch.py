"""Scratch folders: a folder whose process was killed is removed by the next claim; one
whose process lives, or that is not a scratch folder, is kept."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from earthcatalog_dagster.core import scratch

pytestmark = pytest.mark.skipif(scratch.fcntl is None, reason="flock is POSIX only")

PREFIX = "earthcatalog-test-scratch-"

# A process that claims a folder, fills it, reports its path, then waits to be killed.
_HOLDER = """
import sys, time
from earthcatalog_dagster.core import scratch
folder = scratch.claim(sys.argv[1], sys.argv[2])
with open(folder.path + "/rows.arrow", "wb") as f:
    f.write(b"x" * 1000)
print(folder.path, flush=True)
time.sleep(600)
"""


def start_holder(parent: Path, prefix: str = PREFIX) -> tuple[subprocess.Popen[str], Path]:
    """A process holding a scratch folder of ``prefix`` in ``parent``; it and the folder."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, prefix, str(parent)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def stop(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_killed_holders_folder_goes_and_a_living_ones_stays(tmp_path: Path) -> None:
    killed, killed_folder = start_holder(tmp_path)
    living, living_folder = start_holder(tmp_path)
    try:
        stop(killed)  # SIGKILL: no cleanup of its own ran
        assert (killed_folder / "rows.arrow").exists()
        unrelated = tmp_path / f"{PREFIX}not-a-scratch-folder"  # no owner file
        unrelated.mkdir()

        with scratch.scratch_folder(PREFIX, str(tmp_path)) as mine:
            assert Path(mine).is_dir()
            assert not killed_folder.exists()
            assert (living_folder / "rows.arrow").exists()
            assert unrelated.is_dir()
            # A second claim in this process leaves the first alone too.
            other = scratch.claim(PREFIX, str(tmp_path))
            assert Path(mine).is_dir()
            other.release()
            assert not Path(other.path).exists()
        assert not Path(mine).exists()
    finally:
        stop(living)
    # Once its holder is gone too, the next sweep takes it.
    assert scratch.sweep_abandoned(PREFIX, str(tmp_path)) == [str(living_folder)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [unrelated.name]
