"""Embedded mode: how soon a run triggered by ``manage.py trigger`` in another process starts under ``manage.py up``.

``up`` runs on SQLite in a temporary directory with its in-process worker, as a user without
DATABASE_URL and REDIS_URL would start it; the figures are read from that SQLite file.
"""
from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import closing
from datetime import datetime
from importlib.util import find_spec
from pathlib import Path

from stepwise.runs.benchmarks.measure import BenchFailed, BenchUnavailable, Latencies
from stepwise.runs.benchmarks.processes import process_group_stop, task_modules
from stepwise.runs.benchmarks.tasks import NOOP_TASK_ID

# A checkout of the repository: its project (manage.py beside console/) is what a new user starts.
# Found, not imported: the console sits above the engine's tools.
REPOSITORY = Path(find_spec("stepwise.console").origin).resolve().parent.parent


def embedded_start_latencies(*, triggers: int, timeout: float, log_dir: Path) -> Latencies:
    """Start ``manage.py up`` on a fresh SQLite file, trigger runs from other processes, time their starts."""
    if not (REPOSITORY / "manage.py").exists():
        raise BenchUnavailable("it starts the repository's own project on its embedded default, and this "
                               "Stepwise is installed, not a checkout")
    workdir = Path(tempfile.mkdtemp(prefix="stepwise-bench-embedded-"))
    env = _embedded_env(workdir)
    port = _free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "embedded-up.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(REPOSITORY / "manage.py"), "up", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPOSITORY, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _until_serving(proc, port, timeout=timeout, log=log_dir / "embedded-up.log")
        sqlite_path = Path(env["STEPWISE_SQLITE_PATH"])
        _trigger_and_time(env, sqlite_path, timeout=timeout)  # warm-up: the worker's first run, not counted
        return Latencies(tuple(_trigger_and_time(env, sqlite_path, timeout=timeout) for _ in range(triggers)))
    finally:
        process_group_stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def _embedded_env(workdir: Path) -> dict[str, str]:
    """Return this process's environment without DATABASE_URL and REDIS_URL, on a SQLite file in ``workdir``."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        STEPWISE_SQLITE_PATH=str(workdir / "stepwise.sqlite3"),
        STEPWISE_TASK_MODULES=task_modules(),
        DJANGO_SETTINGS_MODULE="stepwise.console.settings",
        PYTHONPATH=str(REPOSITORY),
        LOG_LEVEL="WARNING",
    )
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _until_serving(proc: subprocess.Popen, port: int, *, timeout: float, log: Path) -> None:
    """Poll the console until it answers HTTP; raise BenchFailed if ``up`` exits or takes too long."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise BenchFailed(f"manage.py up exited with status {proc.returncode}; see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it serves
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchFailed(f"manage.py up did not serve within {timeout:g}s; see {log}")
        time.sleep(0.2)


def _trigger_and_time(env: dict[str, str], sqlite_path: Path, *, timeout: float) -> float:
    """Run ``manage.py trigger`` in a new process; return the run's started_at - created_at in ms."""
    done = subprocess.run(
        [sys.executable, str(REPOSITORY / "manage.py"), "trigger", NOOP_TASK_ID, "{}"],
        cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=timeout,
    )
    if done.returncode != 0 or not done.stdout.startswith("run_"):
        raise BenchFailed(f"manage.py trigger failed ({done.returncode}): {(done.stderr or done.stdout)[-300:]}")
    return _start_latency(sqlite_path, done.stdout.split()[0], timeout=timeout)


def _start_latency(sqlite_path: Path, run_id: str, *, timeout: float) -> float:
    """Poll the SQLite file until the run has started; return started_at - created_at in ms."""
    deadline = time.monotonic() + timeout
    with closing(sqlite3.connect(f"file:{sqlite_path}?mode=ro", uri=True, timeout=10)) as db:
        while True:
            row = db.execute("SELECT created_at, started_at FROM stepwise_runs_run WHERE id = ?", (run_id,)).fetchone()
            if row and row[1]:
                return (datetime.fromisoformat(row[1]) - datetime.fromisoformat(row[0])).total_seconds() * 1000
            if time.monotonic() > deadline:
                raise BenchFailed(f"run {run_id} did not start within {timeout:g}s in the embedded server")
            time.sleep(0.02)
