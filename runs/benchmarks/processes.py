"""Start the benchmark's Celery workers and scheduler as subprocesses, and always stop them."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import import_module
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from stepwise.runs.celery_app import celery_app

# The bench tasks (no-op, steps, wait and observability tasks); they need nothing but the SDK.
BENCH_TASK_MODULES = ("stepwise.runs.benchmarks.tasks",)


def shared_services_missing(who: str) -> str | None:
    """Say why worker subprocesses cannot run here (no PostgreSQL or no Redis configured), or None."""
    problems = []
    if not getattr(settings, "USES_POSTGRES", connection.vendor == "postgresql"):
        problems.append("DATABASE_URL must point at PostgreSQL")
    if not settings.REDIS_URL:
        problems.append("REDIS_URL must point at Redis")
    if not problems:
        return None
    return (
        f"{who} runs worker processes, which cannot share the embedded SQLite/memory default: "
        + "; ".join(problems)
        + " (e.g. DATABASE_URL=postgres://postgres@127.0.0.1:5432/stepwise REDIS_URL=redis://127.0.0.1:6379/0)"
    )


class WorkersNotReady(RuntimeError):
    """The benchmark's workers did not answer a ping in time."""


def database_url() -> str:
    """Return a URL for the database this process uses (the test database under pytest)."""
    s = connection.settings_dict
    user = s.get("USER") or "postgres"
    auth = f"{user}:{s['PASSWORD']}" if s.get("PASSWORD") else user
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def task_modules(extra: Sequence[str] = BENCH_TASK_MODULES) -> str:
    """Return the task modules the workers load: the configured ones plus ``extra`` (the bench tasks)."""
    modules = [m for m in settings.STEPWISE_TASK_MODULES if m not in extra]
    return ",".join([*modules, *extra])


def project_dir() -> Path:
    """Return the folder the project's settings package lives in (where its manage.py usually is)."""
    top = import_module(settings.SETTINGS_MODULE.partition(".")[0])
    return Path(top.__file__).resolve().parent.parent


SETTINGS_MODULE = "stepwise_bench_settings"
SETTINGS_TEXT = """\
# Written by manage.py bench for its worker and scheduler processes: the project's settings, and what
# the benchmark needs of them, taken from the environment it gives each process, whatever the
# project's own settings read from it.
import os

import dj_database_url

from {project} import *

DEBUG = os.environ.get("DEBUG") == "1"  # off unless asked: Django's debug cursor records every statement
CELERY_TASK_DEFAULT_QUEUE = {queue!r}  # hints, the scheduler's too, go to the bench's workers only
STEPWISE_DURABILITY = os.environ["STEPWISE_DURABILITY"]
STEPWISE_TASK_MODULES = os.environ["STEPWISE_TASK_MODULES"].split(",")
_database = dj_database_url.parse(os.environ["DATABASE_URL"])  # this process's database, or a proxy of it
_connection = {{key: _database[key] for key in ("NAME", "USER", "PASSWORD", "HOST", "PORT")}}
DATABASES = {{**DATABASES, "default": {{**DATABASES["default"], **_connection}}}}
"""


def free_port() -> int:
    """Return a TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def celery_conf_overridden(**keys: Any) -> Iterator[None]:
    """Point this process's Celery app elsewhere (``CELERY_``-prefixed setting names), restored afterwards.

    A prefixed key the project's settings set shadows Celery's own name, so that one is changed;
    one they do not set is changed under Celery's own name (``task_default_queue``). The app's
    broker connection pools are dropped on the way in and out, so a changed broker URL is used
    by the next message sent, and the old one again afterwards.
    """
    app = celery_app()
    # Celery loads the project's configuration at the first key read; until then ``in`` sees none of it,
    # and what is set now would be overwritten by the load.
    app.conf["broker_url"]
    keys = {key if key in app.conf else key.removeprefix("CELERY_").lower(): value for key, value in keys.items()}
    previous = {key: app.conf[key] for key in keys}

    def apply(values: dict[str, Any]) -> None:
        for key, value in values.items():
            app.conf[key] = value
        # Rebuilt from the conf at the next send: the broker pool (kombu keeps one per URL) and the
        # app's AMQP side, whose default queue, exchange and producers are read once and cached.
        app._pool = None
        app.__dict__.pop("amqp", None)

    apply(keys)
    try:
        yield
    finally:
        apply(previous)


class BenchProcesses:
    """Owns the worker and scheduler subprocesses of one benchmark; ``stop`` kills them all.

    They run on a settings module written beside their logs, which imports the project's and sets
    what the benchmark needs (its queue; DEBUG, durability, task modules and database from the
    environment below), so they start the same in any project, whatever its settings read.
    ``env`` is added to every process's environment (after the defaults: it may point them at
    another database or broker); ``modules`` are the task modules loaded besides the configured ones.
    """

    def __init__(
        self, *, queue: str, log_dir: Path, loglevel: str = "WARNING", wake_interval: float = 0,
        durability: str = "strict", env: dict[str, str] | None = None, modules: Sequence[str] = BENCH_TASK_MODULES,
    ) -> None:
        self.queue = queue
        self.wake_interval = wake_interval
        self.durability = durability
        self.log_dir = log_dir
        self.loglevel = loglevel
        self.env = dict(env or {})
        self.modules = tuple(modules)
        self.hostnames: list[str] = []
        self._started = 0
        self._procs: list[subprocess.Popen] = []

    def _settings_dir(self) -> Path:
        """Write the processes' settings module (once) and return the folder that holds it."""
        folder = self.log_dir / "settings"
        if not (folder / f"{SETTINGS_MODULE}.py").exists():
            folder.mkdir(parents=True, exist_ok=True)
            text = SETTINGS_TEXT.format(project=settings.SETTINGS_MODULE, queue=self.queue)
            (folder / f"{SETTINGS_MODULE}.py").write_text(text)
        return folder

    def _env(self, extra: dict[str, str]) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DATABASE_URL=database_url(),
            REDIS_URL=settings.REDIS_URL,
            STEPWISE_CELERY_QUEUE=self.queue,
            STEPWISE_CHANNEL_PREFIX=getattr(settings, "CHANNEL_PREFIX", "stepwise"),
            STEPWISE_TASK_MODULES=task_modules(self.modules),
            PYTHONPATH=os.pathsep.join([str(self._settings_dir()), str(project_dir())]),
            DJANGO_SETTINGS_MODULE=SETTINGS_MODULE,  # this project's, with the bench's settings over it
            LOG_LEVEL=self.loglevel,
            STEPWISE_BENCH_WAKE_INTERVAL=str(self.wake_interval),
            STEPWISE_DURABILITY=self.durability,
            # Workers run as in production: with DEBUG on, Django's debug cursor would record and
            # format every statement. The keys are this process's own, so both read the same secrets.
            DEBUG="0",
            SECRET_KEY=settings.SECRET_KEY,
            STEPWISE_SECRET_KEYS=",".join(settings.STEPWISE_SECRET_KEYS),
        )
        env.update(self.env)
        env.update(extra)
        return env

    def _spawn(self, args: list[str], name: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, *args],
                cwd=project_dir(),
                env=self._env(env or {}),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopping it takes its pool children too
            )
        proc.log_name = name
        self._procs.append(proc)
        return proc

    def exited(self) -> list[str]:
        """Return the names of the processes that ended before being stopped (a crash in the middle of a phase)."""
        return [proc.log_name for proc in self._procs if proc.poll() is not None]

    def start_worker(self, *, pool: str, concurrency: int, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start one ``celery worker`` process on the project's Celery app, consuming only the bench queue.

        The worker imports the bench's task modules itself (``--include``): a project's settings may
        not read STEPWISE_TASK_MODULES from the environment, as this repository's do.
        """
        index = self._started
        self._started += 1
        hostname = f"{self.queue}-{index}@{socket.gethostname()}"
        self.hostnames.append(hostname)
        proc = self._spawn(
            ["-m", "celery", "-A", "stepwise.runs.celery_app:app", "worker", f"--pool={pool}",
             f"--concurrency={concurrency}",
             f"--include={','.join(self.modules)}",
             "--without-mingle", "--without-gossip", "--without-heartbeat", "-Q", self.queue,
             f"--loglevel={self.loglevel}", f"--hostname={hostname}"],
            f"worker-{index}",
            env,
        )
        proc.hostname = hostname
        return proc

    def start_scheduler(self, *, interval: float, env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start the ``scheduler`` command, which re-sends lost hints and recovers lost leases."""
        return self._spawn(["-m", "django", "scheduler", f"--interval={interval}"], "scheduler", env)

    def kill(self, proc: subprocess.Popen, *, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a process's group (SIGKILL by default, as an OOM kill or a lost machine) and forget it.

        SIGTERM asks for a warm stop and falls back to SIGKILL after a grace period.
        """
        if sig == signal.SIGTERM:
            process_group_stop(proc)
        else:
            _signal_group(proc, sig)
            proc.wait(timeout=10)
        self._procs.remove(proc)
        if getattr(proc, "hostname", None) in self.hostnames:
            self.hostnames.remove(proc.hostname)

    def log_count(self, text: str, *, prefix: str = "worker-") -> int:
        """Count the lines holding ``text`` in the logs of the processes whose log name starts with ``prefix``."""
        return sum(
            sum(1 for line in path.read_text(errors="replace").splitlines() if text in line)
            for path in sorted(self.log_dir.glob(f"{prefix}*.log"))
        )

    def wait_ready(self, *, timeout: float) -> float:
        """Ping the workers until every one answers; return the seconds it took."""
        app = celery_app()
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

    def stop(self, *, grace: float = 10) -> None:
        """Stop every process (SIGTERM, then SIGKILL after ``grace`` seconds)."""
        for proc in self._procs:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace
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


def sigterm_raises() -> Any:
    """Turn SIGTERM into SystemExit so the child processes are stopped; return the previous handler."""
    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        return None
