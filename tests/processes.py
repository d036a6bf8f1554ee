"""Start and stop real Celery workers and schedulers against the test database."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "artifacts" / "logs"
TASK_MODULES = "examples.orders,examples.videos,examples.batch,examples.approvals,tests.engine_tasks"


def test_queue_name() -> str:
    return f"stepwise-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{os.getpid()}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url() -> str:
    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    auth = f"{user}:{s['PASSWORD']}" if s.get("PASSWORD") else user
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        STEPWISE_CELERY_QUEUE=test_queue_name(),
        STEPWISE_CHANNEL_PREFIX=test_queue_name(),
        STEPWISE_LEASE_SECONDS="2",
        STEPWISE_HEARTBEAT_SECONDS="0.4",
        STEPWISE_REDISPATCH_SECONDS="1",
        STEPWISE_TASK_MODULES=TASK_MODULES,
        STEPWISE_TEST_RECORDS_URL=os.environ.get("REDIS_URL", ""),
        PYTHONPATH=str(ROOT),
        CONN_MAX_AGE="0",
        LOG_LEVEL="INFO",
    )
    env.update(extra)
    return env


def code_env(directory: Path, *modules: str) -> dict[str, str]:
    """Return the environment of a process that also runs the task ``modules`` found in ``directory``.

    Two workers given two directories holding different source under the same module name
    run different versions of the same tasks, as old and new workers do during a deploy.
    """
    return {"PYTHONPATH": f"{directory}{os.pathsep}{ROOT}", "STEPWISE_TASK_MODULES": ",".join([TASK_MODULES, *modules])}


def _die_with_parent() -> None:
    """Ask Linux to kill this child when the test process dies, so no worker outlives its test run.

    A worker left behind would keep serving the next run's database of the same name.
    """
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Processes:
    """Owns the subprocesses of one test (or session) and kills them at the end."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.procs: list[subprocess.Popen] = []
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def _spawn(self, args: list[str], name: str, **env: str) -> subprocess.Popen:
        log_path = LOG_DIR / f"{self.label}-{name}-{len(self.procs)}.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=child_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a kill takes its children too
            preexec_fn=_die_with_parent,
        )
        proc.log_path = log_path  # what the process printed, for tests that read it
        self.procs.append(proc)
        return proc

    def worker(
        self, *, concurrency: int = 2, pool: str = "threads", queue: str | None = None, **env: str
    ) -> subprocess.Popen:
        return self._spawn(
            ["-m", "celery", "-A", "console", "worker", f"--pool={pool}", f"--concurrency={concurrency}",
             "--without-mingle", "--without-gossip", "--without-heartbeat", "-Q", queue or test_queue_name(),
             "--loglevel=INFO", f"--hostname={self.label}-{len(self.procs)}@%h"],
            "worker",
            **env,
        )

    def scheduler(self, *, interval: float = 0.2, **env: str) -> subprocess.Popen:
        return self._spawn(["manage.py", "scheduler", f"--interval={interval}"], "scheduler", **env)

    def asgi_server(self, *, port: int, **env: str) -> subprocess.Popen:
        """Serve the console (HTTP and websockets) with uvicorn on the test database."""
        return self._spawn(
            ["-m", "uvicorn", "stepwise.console.asgi:application", "--host", "127.0.0.1", f"--port={port}",
             "--log-level=warning"],
            "asgi",
            **env,
        )

    def console(self, **env: str) -> str:
        """Serve the console and API with uvicorn on a free port; return its URL once it answers."""
        port = free_port()
        server = self.asgi_server(port=port, **env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/login/", timeout=2).close()
                return url
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the console server did not start; see {LOG_DIR}/{self.label}-asgi-*.log")
                time.sleep(0.2)

    @staticmethod
    def _signal(proc: subprocess.Popen, sig: int) -> None:
        """Send ``sig`` to the process's whole group (a prefork worker's children too), if it still runs."""
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self, proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
        self._signal(proc, sig)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        # SIGTERM to all at once (each shuts down warmly in parallel), then SIGKILL whatever outlives 5 s.
        for proc in self.procs:
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(proc)
        self.procs.clear()


class EmbeddedServer(NamedTuple):
    """A running ``manage.py up``: the environment that reaches it, its address, and what it printed."""

    env: dict[str, str]
    url: str
    log: Path


@contextmanager
def embedded_up(workdir: Path, *, label: str, **env: str) -> Iterator[EmbeddedServer]:
    """Serve ``manage.py up`` as a user without DATABASE_URL and REDIS_URL would, on SQLite in ``workdir``.

    Yields what a command (``manage.py trigger``) or a request needs to reach it; stops it afterwards.
    """
    from stepwise.runs.benchmarks.embedded import _embedded_env, _free_port, _until_serving
    from stepwise.runs.benchmarks.processes import process_group_stop

    env = {**_embedded_env(workdir), **env}
    port = _free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = LOG_DIR / f"{label}.log"
    with open(log, "wb") as out:
        up = subprocess.Popen([sys.executable, "manage.py", "up", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _until_serving(up, port, timeout=60, log=log)
        yield EmbeddedServer(env, f"http://127.0.0.1:{port}", log)
    finally:
        process_group_stop(up)
