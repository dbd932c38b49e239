"""The three ingest paths side by side, on a synthetic ITS_LIVE day served over HTTP.

For each ``--items`` N:

1. ``generate`` (a child process, timed, not counted): a synthetic day of N items under
   ``<workdir>/<N>/source/its-live-data/<key>`` and its S3 Inventory under
   ``<workdir>/<N>/inventory`` (``synthetic.generate_day`` + ``write_inventory``); kept
   and reused while ``<workdir>/<N>/generated.json`` says the same N and seed;
2. a local S3 endpoint on 127.0.0.1 serving those objects (``--server static``: the
   minimal path-style ``GET``/``HEAD /<bucket>/<key>`` server below, a bare asyncio
   protocol in its own process; ``--server moto``: moto's ``ThreadedMotoServer`` in its
   own process, every object uploaded first), stopped with its whole process group;
3. per path, on a fresh embedded catalog (``<workdir>/<N>/<path>/``) in its own process
   tree, with the items read as in production: ``s3://its-live-data/<key>``, unsigned,
   through ``AWS_ENDPOINT_URL`` (the warehouse is not the embedded one, so no local
   source mirror is used):

   - ``run-backfill``: ``earthcatalog-dagster run-backfill --inventory <manifest>
     --scheduler synchronous --h3-resolution R --update-hash-index`` (the staged path);
   - ``dagster``: ``dagster asset materialize -m earthcatalog_dagster.definitions
     --select group:ingest --partition <date>`` (the six assets and their checks; the
     partition's ``delta_inventory`` finds the day's manifest under ``$INVENTORY`` by
     itself), wall time of the whole command, start-up included;
   - ``ingest``: ``earthcatalog-dagster ingest <manifest> --h3-resolution R``.

Reported per N and path: wall seconds, items/s (inventory rows / wall) against the
issue's budget, the peak RSS of the process tree (the sum over the command and its
children, sampled every 50 ms with psutil) and of its largest process
(``RUSAGE_CHILDREN``), the hash index size afterwards (= good items when the run is
complete), and for ``dagster`` each step's seconds from its log. The machine and its load
average at start and end are printed with the table.

Usage::

    python benchmarks/bench_http.py                              # 20 000 and 100 000 items
    python benchmarks/bench_http.py --items 20000 --paths dagster,ingest --json out.json
    python benchmarks/bench_http.py --items 20000 --workdir /tmp/bh --keep --server moto
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import email.utils
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from _common import MB, comma_list, ints, loadavg, machine, run_child

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout

DATE = dt.date(2026, 4, 28)
PATHS = ("run-backfill", "dagster", "ingest")
SOURCE_BUCKET = "its-live-data"
#: The issue's budgets, items/s at N items (missing N: none stated).
BUDGETS: dict[str, dict[int, int]] = {
    "run-backfill": {20_000: 2_700},
    "dagster": {20_000: 1_500, 100_000: 2_700},
    "ingest": {20_000: 5_400, 100_000: 5_400},
}
RSS_BUDGET_MB = 1024  # peak RSS of the head at 100 k
_DUMMY_KEY, _DUMMY_SECRET = "bench", "bench-secret"
_BIN = Path(sys.executable).parent


# --- the static S3 server ------------------------------------------------------------------------


_NOT_FOUND = b"<Error><Code>NoSuchKey</Code><Message>not found</Message></Error>"


class _StaticS3(asyncio.Protocol):
    """Path-style ``GET``/``HEAD /<bucket>/<key>`` of ``<root>/<bucket>/<key>``: what the
    fetchers need from S3 (body, ``Content-Length``, ``ETag``, ``Last-Modified``; 404 with
    S3's ``NoSuchKey``), over HTTP/1.1 keep-alive. Requests are not authenticated and
    carry no body. A bare asyncio protocol (on uvloop when installed) rather than
    ``http.server``: a thread per connection and its parsing cost several times more CPU
    per request, CPU the measured process shares on a 2-core machine."""

    root: Path = Path(".")

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            method, target = head.split(b"\r\n", 1)[0].split(b" ")[:2]
            self.transport.write(self.respond(method, target.decode()))

    def respond(self, method: bytes, target: str) -> bytes:
        path = (self.root / unquote(target.split("?", 1)[0].lstrip("/"))).resolve()
        try:
            if not str(path).startswith(str(self.root)) or method not in (b"GET", b"HEAD"):
                raise FileNotFoundError(target)
            stat = path.stat()
            data = path.read_bytes() if method == b"GET" else b""
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            body = _NOT_FOUND if method == b"GET" else b""
            return (
                b"HTTP/1.1 404 Not Found\r\nContent-Type: application/xml\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(_NOT_FOUND), body)
            )
        modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b'ETag: "%x-%x"\r\nLast-Modified: %s\r\nContent-Length: %d\r\n\r\n%s'
            % (stat.st_ino, stat.st_size, modified.encode(), stat.st_size, data)
        )


def serve_static(root: str) -> None:
    """Serve ``root`` on a free port of 127.0.0.1; print the endpoint, then serve forever."""
    _StaticS3.root = Path(root).resolve()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_StaticS3, "127.0.0.1", 0, backlog=2048)
        print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()

    asyncio.run(run())


def serve_moto(root: str) -> None:
    """moto's threaded S3 server, with every object of ``root/<bucket>/`` uploaded to it."""
    import logging
    from concurrent.futures import ThreadPoolExecutor

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=_DUMMY_KEY,
        aws_secret_access_key=_DUMMY_SECRET,
        region_name="us-west-2",
    )
    start = time.perf_counter()
    uploads = 0
    for bucket_dir in sorted(Path(root).iterdir()):
        client.create_bucket(
            Bucket=bucket_dir.name,
            CreateBucketConfiguration={"LocationConstraint": "us-west-2"},
        )
        files = [p for p in bucket_dir.rglob("*") if p.is_file()]

        def put(path: Path, bucket: str = bucket_dir.name, base: Path = bucket_dir) -> None:
            client.put_object(
                Bucket=bucket, Key=str(path.relative_to(base)), Body=path.read_bytes()
            )

        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(put, files))
        uploads += len(files)
    sys.stderr.write(f"moto: {uploads} objects uploaded in {time.perf_counter() - start:.1f} s\n")
    print(endpoint, flush=True)
    threading.Event().wait()


class Server:
    """The S3 endpoint process (its own process group, stopped as a whole)."""

    def __init__(self, kind: str, root: Path) -> None:
        started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), f"--serve={kind}", str(root)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint.startswith("http://"):
            self.stop()
            raise SystemExit(f"the {kind} S3 server did not start")
        self.start_seconds = time.perf_counter() - started

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


# --- child processes ---------------------------------------------------------------------------


def child_generate(home: Path, n: int, seed: int) -> dict[str, Any]:
    """A synthetic day and its inventory under ``home`` (reused when already there)."""
    from earthcatalog_dagster.synthetic import generate_day, write_inventory

    record = home / "generated.json"
    if record.exists():
        done = json.loads(record.read_text())
        if done.get("items") == n and done.get("seed") == seed:
            return {**done, "reused": True}
    if home.exists():
        shutil.rmtree(home)
    start = time.perf_counter()
    day = generate_day(DATE, n, source_root=str(home / "source"), seed=seed)
    manifest = write_inventory(str(home / "inventory"), DATE, day.refs)
    done = {
        "items": n,
        "seed": seed,
        "manifest": manifest,
        "generate_seconds": time.perf_counter() - start,
        "inventory_rows": day.refs.num_rows,
        "good_items": len(set(day.good_ids)),
    }
    record.write_text(json.dumps(done))
    return {**done, "reused": False}


def _tree_sample(proc: Any, cpu: dict[int, float]) -> int:
    """Resident bytes of ``proc`` and all its descendants now (0 for those already gone);
    records each one's CPU seconds so far in ``cpu`` (by pid)."""
    import psutil

    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        with contextlib.suppress(psutil.NoSuchProcess), member.oneshot():
            total += member.memory_info().rss
            times = member.cpu_times()
            cpu[member.pid] = times.user + times.system
    return total


def child_run(cmd: list[str], env: dict[str, str], log: str) -> dict[str, Any]:
    """Run ``cmd``; its wall time, the peak RSS of its process tree and of its largest
    process, and the CPU seconds of the tree (each process's last sample: a process living
    under 50 ms is missed). Run in a fresh child so ``RUSAGE_CHILDREN`` holds this command
    alone."""
    import psutil

    peak = 0
    cpu: dict[int, float] = {}
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=Path(log).parent
        )
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            peak = max(peak, _tree_sample(watched, cpu))
            time.sleep(0.05)
        wall = time.perf_counter() - start
    return {
        "returncode": proc.returncode,
        "wall_seconds": wall,
        "tree_peak_rss_mb": peak / MB,
        "tree_cpu_seconds": sum(cpu.values()),
        "largest_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def child_hashes(uri: str) -> int | None:
    from earthcatalog_dagster.core import storage
    from earthcatalog_dagster.core.hash_index import load_hash_index

    return len(load_hash_index(uri)) if storage.exists(uri) else None


# --- one measurement ---------------------------------------------------------------------------


def _env(home: Path, inventory: Path, endpoint: str, scheduler: str | None) -> dict[str, str]:
    """The environment of one path's run: a fresh embedded catalog whose warehouse is not
    the embedded one (so items come from ``s3://its-live-data``, unsigned), S3 at
    ``endpoint``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "EARTHCATALOG_", "DAGSTER_"))
        and k
        not in (
            "WAREHOUSE",
            "WAREHOUSE_HASH",
            "STAGING",
            "DELTA_PREFIX",
            "INVENTORY",
            "CATALOG",
            "CATALOG_REMOTE",
            "SOURCE_ROOT",
        )
    }
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env.update(
        {
            # The commands import the checkout this script belongs to (an older one too).
            "PYTHONPATH": str(REPO),
            "EARTHCATALOG_HOME": str(home),
            "WAREHOUSE": str(home / "wh"),
            "INVENTORY": str(inventory),
            "DAGSTER_HOME": str(dagster_home),
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": _DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": _DUMMY_SECRET,
            "AWS_REGION": "us-west-2",
            "AWS_DEFAULT_REGION": "us-west-2",
        }
    )
    if scheduler:
        env["EARTHCATALOG_SCHEDULER"] = scheduler
    return env


def _command(path: str, manifest: str, args: argparse.Namespace) -> list[str]:
    resolution = str(args.h3_resolution)
    if path == "run-backfill":
        return [
            str(_BIN / "earthcatalog-dagster"),
            "run-backfill",
            "--inventory",
            manifest,
            "--scheduler",
            "synchronous",
            "--h3-resolution",
            resolution,
            "--update-hash-index",
            "--skip-upload",
        ]
    if path == "ingest":
        return [
            str(_BIN / "earthcatalog-dagster"),
            "ingest",
            manifest,
            "--h3-resolution",
            resolution,
        ]
    config = {"resources": {"catalog": {"config": {"h3_resolution": args.h3_resolution}}}}
    return [
        str(_BIN / "dagster"),
        "asset",
        "materialize",
        "-m",
        "earthcatalog_dagster.definitions",
        "--select",
        "group:ingest",
        "--partition",
        DATE.isoformat(),
        "--config-json",
        json.dumps(config),
    ]


_STEP = re.compile(r'Finished execution of step "([^"]+)" in ([0-9hms.]+)\.')
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_FIRST_STEP = re.compile(r'Started execution of step "([^"]+)"')


def dagster_steps(log: str) -> dict[str, float]:
    """Seconds per step of a ``dagster asset materialize`` log."""
    steps: dict[str, float] = {}
    for name, text in _STEP.findall(Path(log).read_text(errors="replace")):
        # Dagster writes "850ms", "3.2s", "2m29s", "1h2m3s".
        steps[name] = sum(float(v) * _UNITS[u] for v, u in re.findall(r"([0-9.]+)(ms|h|m|s)", text))
    return steps


def measure(n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    home = workdir / str(n)
    gen = run_child(__file__, [f"--generate={n}", f"--seed={args.seed}", str(home)])
    made = "reused" if gen["reused"] else f"generated in {gen['generate_seconds']:.0f} s"
    print(
        f"  data: {gen['inventory_rows']:,} inventory rows, {gen['good_items']:,} good items"
        f" ({made})",
        flush=True,
    )
    server = Server(args.server, home / "source")
    print(f"  {args.server} S3 server at {server.endpoint} ({server.start_seconds:.1f} s)")
    result: dict[str, Any] = {
        "items": n,
        "inventory_rows": gen["inventory_rows"],
        "good_items": gen["good_items"],
        "server": args.server,
        "server_start_seconds": server.start_seconds,
        "paths": {},
    }
    try:
        for path in args.paths:
            catalog = home / path
            if catalog.exists():
                shutil.rmtree(catalog)
            catalog.mkdir(parents=True)
            scheduler = args.dagster_scheduler if path == "dagster" else None
            env = _env(catalog, home / "inventory", server.endpoint, scheduler)
            log = str(catalog / "command.log")
            cmd = _command(path, gen["manifest"], args)
            load_before = loadavg()
            run = run_child(__file__, ["--run", json.dumps({"cmd": cmd, "env": env, "log": log})])
            run["loadavg_before"] = load_before
            run["items_per_s"] = gen["inventory_rows"] / run["wall_seconds"]
            run["budget_items_per_s"] = BUDGETS[path].get(n)
            run["hashes_after"] = run_child(
                __file__, [f"--hashes={catalog / 'wh_id_hashes.parquet'}"]
            )["hashes"]
            run["complete"] = run["returncode"] == 0 and run["hashes_after"] == gen["good_items"]
            if path == "dagster":
                run["steps"] = dagster_steps(log)
                run["scheduler"] = scheduler or "default"
            run["log"] = log
            result["paths"][path] = run
            status = "ok" if run["complete"] else f"FAILED (exit {run['returncode']}, see {log})"
            print(
                f"  {path}: {run['wall_seconds']:.1f} s, {run['items_per_s']:,.0f} items/s,"
                f" peak RSS tree {run['tree_peak_rss_mb']:.0f} MB, {status}",
                flush=True,
            )
            if not args.keep and run["complete"]:
                shutil.rmtree(catalog, ignore_errors=True)
    finally:
        server.stop()
    return result


# --- report ------------------------------------------------------------------------------------


def print_report(results: list[dict[str, Any]], info: dict[str, Any]) -> None:
    print()
    print(
        f"machine: {info['cpus']} CPUs, {info['mem_gib']} GiB RAM, Python {info['python']}, "
        f"loadavg at start {info['loadavg_start']}, at end {info['loadavg_end']}"
    )
    cols = [(r, p) for r in results for p in r["paths"]]
    width = max(18, *(len(f"{p} {r['items'] // 1000}k") + 2 for r, p in cols))

    def line(label: str, values: list[str]) -> None:
        print(f"{label:<28}" + "".join(f"{v:>{width}}" for v in values))

    line("", [f"{p} {r['items'] // 1000}k" for r, p in cols])
    line("inventory rows", [f"{r['inventory_rows']:,}" for r, _ in cols])
    line("wall s", [f"{r['paths'][p]['wall_seconds']:.1f}" for r, p in cols])
    line("items/s", [f"{r['paths'][p]['items_per_s']:,.0f}" for r, p in cols])
    line(
        "budget items/s",
        [f"{b:,}" if (b := r["paths"][p]["budget_items_per_s"]) else "-" for r, p in cols],
    )
    line("CPU s (process tree)", [f"{r['paths'][p]['tree_cpu_seconds']:.1f}" for r, p in cols])
    line("peak RSS tree MB", [f"{r['paths'][p]['tree_peak_rss_mb']:.0f}" for r, p in cols])
    line(
        "peak RSS largest proc MB", [f"{r['paths'][p]['largest_peak_rss_mb']:.0f}" for r, p in cols]
    )
    line(
        "hashes after / good items",
        [f"{r['paths'][p]['hashes_after']}/{r['good_items']}" for r, p in cols],
    )
    line("complete", [str(r["paths"][p]["complete"]) for r, p in cols])
    line("loadavg before", [r["paths"][p]["loadavg_before"].split()[0] for r, p in cols])
    steps = sorted({s for r, p in cols for s in r["paths"][p].get("steps", {})})
    if steps:
        print("dagster steps: seconds")
        for step in steps:
            line(
                f"  {step}",
                [
                    f"{r['paths'][p]['steps'][step]:.1f}"
                    if step in r["paths"][p].get("steps", {})
                    else ""
                    for r, p in cols
                ],
            )
    print(f"(peak RSS budget of the head at 100 k: {RSS_BUDGET_MB} MB)")


# --- driver ------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--items",
        action="append",
        help="items per day; repeatable or a comma list (default 20000,100000)",
    )
    parser.add_argument(
        "--paths", action="append", help=f"paths to measure (default {','.join(PATHS)})"
    )
    parser.add_argument("--server", choices=("static", "moto"), default="static")
    parser.add_argument(
        "--dagster-scheduler",
        default=None,
        help="EARTHCATALOG_SCHEDULER of the dagster run (default: the deployment default)",
    )
    parser.add_argument("--h3-resolution", type=int, default=1)
    parser.add_argument("--workdir", help="working directory (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep data and catalogs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--serve", choices=("static", "moto"), help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--hashes", help=argparse.SUPPRESS)
    parser.add_argument("target", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve:  # child: the S3 endpoint
        (serve_static if args.serve == "static" else serve_moto)(args.target)
        return
    if args.generate is not None:  # children below print one JSON line
        print(json.dumps(child_generate(Path(args.target), args.generate, args.seed)))
        return
    if args.run:
        spec = json.loads(args.run)
        print(json.dumps(child_run(spec["cmd"], spec["env"], spec["log"])))
        return
    if args.hashes:
        print(json.dumps({"hashes": child_hashes(args.hashes)}))
        return

    args.paths = comma_list(args.paths, ",".join(PATHS))
    unknown = sorted(set(args.paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown path(s) {', '.join(unknown)}: choose from {', '.join(PATHS)}")
    items = ints(args.items, "20000,100000")
    info = machine()
    info["loadavg_start"] = info.pop("loadavg")
    print(
        f"machine: {info['cpus']} CPUs, {info['mem_gib']} GiB RAM, Python {info['python']}, "
        f"loadavg {info['loadavg_start']}",
        flush=True,
    )
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench_http_"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    try:
        for n in items:
            print(f"{n:,} items in {workdir}/{n} ...", flush=True)
            results.append(measure(n, args, workdir))
            if not args.keep and args.workdir:
                shutil.rmtree(workdir / str(n), ignore_errors=True)
    finally:
        if not args.keep and not args.workdir:  # never delete a folder we did not create
            shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_end"] = loadavg()
    print_report(results, info)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "results": results}, indent=2))


if __name__ == "__main__":
    main()
