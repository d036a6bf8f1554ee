"""Start the benchmark's Celery workers and scheduler as subprocesses, and always stop them."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

# The bench tasks (no-op, steps, wait and observability tasks); they need nothing but the SDK.
BENCH_TASK_MODULES = ("runs.benchmarks.tasks",)


class WorkersNotReady(RuntimeError):
    """The benchmark's workers did not answer a ping in time."""


def database_url() -> str:
    """Return a URL for the database this process uses (the test database under pytest)."""
    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    auth = f"{user}:{s['PASSWORD']}" if s.get("PASSWORD") else user
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def task_modules() -> str:
    """Return the task modules the workers load: the configured ones plus the bench tasks."""
    modules = [m for m in settings.STEPWISE_TASK_MODULES if m not in BENCH_TASK_MODULES]
    return ",".join([*modules, *BENCH_TASK_MODULES])


class BenchProcesses:
    """Owns the worker and scheduler subprocesses of one benchmark; ``stop`` kills them all."""

    def __init__(
        self, *, queue: str, log_dir: Path, loglevel: str = "WARNING", wake_interval: float = 0,
        durability: str = "strict",
    ) -> None:
        self.queue = queue
        self.wake_interval = wake_interval
        self.durability = durability
        self.log_dir = log_dir
        self.loglevel = loglevel
        self.hostnames: list[str] = []
        self._procs: list[subprocess.Popen] = []

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            STEPWISE_CELERY_QUEUE=self.queue,
            STEPWISE_CHANNEL_PREFIX=settings.CHANNEL_PREFIX,
            STEPWISE_TASK_MODULES=task_modules(),
            PYTHONPATH=str(settings.BASE_DIR),
            DJANGO_SETTINGS_MODULE="console.settings",
            LOG_LEVEL=self.loglevel,
            STEPWISE_BENCH_WAKE_INTERVAL=str(self.wake_interval),
            STEPWISE_DURABILITY=self.durability,
            # Workers run as in production: with DEBUG on, Django's debug cursor would record and
            # format every statement. The keys are this process's own, so both read the same secrets.
            DEBUG="0",
            SECRET_KEY=settings.SECRET_KEY,
            STEPWISE_SECRET_KEYS=",".join(settings.STEPWISE_SECRET_KEYS),
        )
        return env

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=settings.BASE_DIR,
                env=self._env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopping it takes its pool children too
            )
        self._procs.append(proc)
        return proc

    def start_worker(self, *, pool: str, concurrency: int) -> None:
        """Start one ``celery worker`` process consuming only the bench queue."""
        index = len(self.hostnames)
        hostname = f"{self.queue}-{index}@{socket.gethostname()}"
        self.hostnames.append(hostname)
        self._spawn(
            ["-m", "celery", "-A", "console", "worker", f"--pool={pool}", f"--concurrency={concurrency}",
             "--without-mingle", "--without-gossip", "--without-heartbeat", "-Q", self.queue,
             f"--loglevel={self.loglevel}", f"--hostname={hostname}"],
            f"worker-{index}",
        )

    def start_scheduler(self, *, interval: float) -> None:
        """Start ``manage.py scheduler``, which re-sends lost hints and recovers lost leases."""
        self._spawn([str(settings.BASE_DIR / "manage.py"), "scheduler", f"--interval={interval}"], "scheduler")

    def wait_ready(self, *, timeout: float) -> float:
        """Ping the workers until every one answers; return the seconds it took."""
        from console.celery import app

        started = time.monotonic()
        pending = set(self.hostnames)
        while pending:
            dead = [p.args for p in self._procs if p.poll() is not None]
            if dead:
                raise WorkersNotReady(f"a benchmark process exited early; see the logs in {self.log_dir}")
            if time.monotonic() - started > timeout:
                raise WorkersNotReady(
                    f"workers {', '.join(sorted(pending))} did not answer within {timeout:g}s; "
                    f"see the logs in {self.log_dir}"
                )
            for reply in app.control.ping(destination=sorted(pending), timeout=0.5) or []:
                pending -= set(reply)
        return time.monotonic() - started

    def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after a grace period)."""
        for proc in self._procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self._procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        self._procs.clear()


def process_group_stop(proc: subprocess.Popen, *, grace: float = 10) -> None:
    """Stop a process started in its own session (SIGTERM, then SIGKILL after ``grace`` seconds)."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait(timeout=10)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
