"""A redis-server of the chaos run's own, the workers' broker, which a scenario kills and restarts empty."""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from stepwise.runs.benchmarks.processes import free_port


class RedisServerMissing(RuntimeError):
    """No redis-server binary to start a private broker with."""


class PrivateRedis:
    """A redis-server on a free port that keeps nothing on disk: killed, it comes back empty."""

    def __init__(self, *, log_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._log = log_dir / "redis.log"
        self._proc: subprocess.Popen | None = None

    def start(self, *, timeout: float = 10) -> None:
        """Start the server and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerMissing("redis-server is not installed (PATH); the chaos command starts its own broker")
        with open(self._log, "ab") as log:
            self._proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError(f"the private redis-server did not answer within {timeout:g}s; see {self._log}")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with redis.Redis.from_url(self.url, socket_connect_timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """Stop it at once, as a crash would: every message it held is gone."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=10)
            self._proc = None
