"""Start ``earthcatalog-dagster serve`` as a subprocess for the server tests, and stop it.

The server runs in a session (process group) of its own and is stopped with its whole
group (SIGTERM, then SIGKILL), whatever happens in the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from earthcatalog_dagster.config import ENV_VARS
from earthcatalog_dagster.query.files import CACHE_VAR

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_server(env: Mapping[str, str], log_path: Path) -> Iterator[str]:
    """``serve`` on a free port with ``env`` over the parent's environment (its roots
    removed, the query cache beside the log); yield its base URL once ``/conformance``
    answers."""
    port = free_port()
    # A shell's roots never leak in.
    full = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    full[CACHE_VAR] = str(log_path.parent / "query-cache")  # not the user's cache
    full |= env
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "earthcatalog_dagster.cli", "serve", "--port", str(port)],
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while True:
                try:
                    if httpx.get(f"{url}/conformance", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the server did not start (exit {process.poll()}): "
                        f"{log_path.read_text(errors='replace')[-2000:]}"
                    )
                time.sleep(0.2)
            yield url
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
