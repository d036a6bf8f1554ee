"""The processes a chaos run starts and breaks: workers, a scheduler, a private broker, a database proxy."""
from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection

from stepwise.runs.benchmarks.processes import BenchProcesses, celery_conf_overridden, database_url
from stepwise.runs.chaos.proxy import DatabaseProxy
from stepwise.runs.chaos.records import RECORDS_URL_VARIABLE
from stepwise.runs.chaos.redis_server import PrivateRedis

CHAOS_TASK_MODULES = ("stepwise.runs.chaos.tasks",)
# The one switch of the store's fault injection; its settings refuse it unless DEBUG is on.
FAULT_RATE_VARIABLE = "STEPWISE_STORE_FAULT_RATE"
# The chaos processes get a short warm stop at the end: their runs are final (or deliberately left).
STOP_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class ClusterShape:
    """How many workers of how many slots, the lease they hold runs with, and the crashes a run may survive."""

    workers: int
    concurrency: int
    lease_seconds: float
    max_crashes: int
    loglevel: str = "WARNING"


class ChaosCluster:
    """Workers and a scheduler on a private queue and broker; through a database proxy when a scenario asks.

    The command's own process sends its hints to the same private broker and reads the
    database directly, so it keeps measuring while the proxy is down. Workers and the scheduler
    reach PostgreSQL directly too unless ``setup`` routes them through the proxy (a proxy in
    Python adds to every statement, so only the scenarios that break the database pay for it).
    """

    def __init__(self, *, queue: str, log_dir: Path, shape: ClusterShape) -> None:
        self.shape = shape
        self.broker = PrivateRedis(log_dir=log_dir)
        db = connection.settings_dict
        self.proxy = DatabaseProxy(target_host=db.get("HOST") or "127.0.0.1", target_port=int(db.get("PORT") or 5432))
        env = {
            "REDIS_URL": self.broker.url,
            RECORDS_URL_VARIABLE: settings.REDIS_URL,
            "STEPWISE_LEASE_SECONDS": f"{shape.lease_seconds:g}",
            "STEPWISE_HEARTBEAT_SECONDS": f"{shape.lease_seconds / 4:g}",
            "STEPWISE_MAX_CRASHES": str(shape.max_crashes),
        }
        self.procs = BenchProcesses(queue=queue, log_dir=log_dir, loglevel=shape.loglevel, env=env,
                                    modules=CHAOS_TASK_MODULES)
        self.workers: list[subprocess.Popen] = []
        self.scheduler: subprocess.Popen | None = None
        self.via_proxy = False
        self.fault_rate = 0.0
        self.kills = 0

    @contextmanager
    def running(self, *, timeout: float) -> Iterator[ChaosCluster]:
        """Start the broker, the proxy, the workers and the scheduler; stop everything on the way out."""
        try:
            self.broker.start()
            self.proxy.start()
            with celery_conf_overridden(CELERY_BROKER_URL=self.broker.url,
                                        CELERY_TASK_DEFAULT_QUEUE=self.procs.queue):
                for _ in range(self.shape.workers):
                    self.worker_start()
                self.scheduler_start()
                self.procs.wait_ready(timeout=timeout)
                yield self
        finally:
            self.procs.stop(grace=STOP_GRACE_SECONDS)
            self.proxy.stop()
            self.broker.kill()

    def setup(self, *, via_proxy: bool, fault_rate: float, timeout: float) -> None:
        """Restart the workers and the scheduler if they must reach the database otherwise, or inject other faults."""
        if (via_proxy, fault_rate) == (self.via_proxy, self.fault_rate):
            return
        # Every run of the scenarios before is final: nothing is lost by not waiting for a warm stop.
        for proc in [*self.workers, *([self.scheduler] if self.scheduler else [])]:
            self.procs.kill(proc)
        self.workers, self.scheduler = [], None
        self.via_proxy, self.fault_rate = via_proxy, fault_rate
        for _ in range(self.shape.workers):
            self.worker_start()
        self.scheduler_start()
        self.procs.wait_ready(timeout=timeout)

    def _database_env(self) -> dict[str, str]:
        return {"DATABASE_URL": _with_port(database_url(), self.proxy.port)} if self.via_proxy else {}

    def _worker_env(self) -> dict[str, str]:
        env = self._database_env()
        if self.fault_rate:
            # The store refuses fault injection unless DEBUG is on: these workers only ever serve the chaos queue.
            env.update({FAULT_RATE_VARIABLE: f"{self.fault_rate:g}", "DEBUG": "1"})
        return env

    def worker_start(self) -> subprocess.Popen:
        """Start one more worker (prefork, as in production)."""
        proc = self.procs.start_worker(pool="prefork", concurrency=self.shape.concurrency, env=self._worker_env())
        self.workers.append(proc)
        return proc

    def worker_kill(self, rng: random.Random) -> None:
        """SIGKILL a random worker with its pool children, and start another in its place (as a supervisor would)."""
        victim = rng.choice(self.workers)
        self.workers.remove(victim)
        self.procs.kill(victim)
        self.kills += 1
        self.worker_start()

    def scheduler_start(self) -> None:
        self.scheduler = self.procs.start_scheduler(interval=settings.STEPWISE_SWEEP_INTERVAL_SECONDS,
                                                    env=self._database_env())

    def scheduler_kill(self) -> None:
        """SIGKILL the scheduler: no goodbye, its row and its LISTEN connection just vanish."""
        if self.scheduler is not None:
            self.procs.kill(self.scheduler)
            self.scheduler = None


def _with_port(url: str, port: int) -> str:
    """Return a postgres:// URL pointing at 127.0.0.1:``port`` instead of its own host and port."""
    scheme, rest = url.split("://", 1)
    auth, _, location = rest.rpartition("@")
    path = location.split("/", 1)[1]
    return f"{scheme}://{auth}@127.0.0.1:{port}/{path}"


def wait_until(condition, *, timeout: float, what: str, poll: float = 0.1):
    """Poll ``condition`` until it returns a true value, and return it; raise ChaosTimeout after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise ChaosTimeout(f"{what}: not within {timeout:g}s")
        time.sleep(poll)


class ChaosTimeout(RuntimeError):
    """A scenario waited longer than its bound for something to happen."""
