"""Canary: a planted secret reaches the task and nowhere else (rows, events, errors, logs, API, broker)."""
from __future__ import annotations

import threading
import uuid
from pathlib import Path

import redis
from django.conf import settings
from django.db import connection

from stepwise.runs.models import Run
from tests.processes import LOG_DIR
from tests.waiting import wait_finished


class RedisMonitor:
    """Record every command Redis receives (broker messages, channel-layer frames) during a test.

    The monitor connection blocks without a timeout (redis-py closes a monitor connection that times
    out, and the commands after that would go unseen); leaving sends a PING, which wakes it.
    """

    def __init__(self) -> None:
        self.commands: list[str] = []
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with redis.Redis.from_url(settings.REDIS_URL).monitor() as monitor:  # MONITOR acknowledged here
            self._ready.set()
            while not self._stop.is_set():
                self.commands.append(monitor.next_command()["command"])

    def __enter__(self) -> RedisMonitor:
        self._thread.start()
        assert self._ready.wait(timeout=10), "the Redis monitor did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        redis.Redis.from_url(settings.REDIS_URL).ping()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive(), "the Redis monitor did not stop"


def rows_containing(needle: str) -> list[str]:
    hits = []
    with connection.cursor() as cursor:
        for table in ("stepwise_runs_run", "stepwise_runs_attempt", "stepwise_runs_step", "stepwise_runs_runevent",
                      "stepwise_tasks_secret"):
            cursor.execute(f"SELECT row_to_json(t)::text FROM {table} t")  # noqa: S608
            hits += [f"{table}: {row[0][:200]}" for row in cursor.fetchall() if needle in row[0]]
    return hits


def test_a_planted_secret_reaches_the_task_but_never_rows_events_errors_logs_api_or_broker(live_api):
    canary = f"canary-{uuid.uuid4().hex}"
    saved = live_api.put("/api/secrets/CANARY_TOKEN", {"value": canary})
    assert canary not in saved.content.decode()
    with RedisMonitor() as monitor:
        ok = live_api.post("/api/tasks/test-uses-secret/trigger", {"payload": {}}).json()["id"]
        failing = live_api.post("/api/tasks/test-uses-secret/trigger", {"payload": {"fail": True}}).json()["id"]
        wait_finished(ok)
        wait_finished(failing)
        responses = [live_api.get(f"/api/runs/{ok}"), live_api.get(f"/api/runs/{failing}"),
                     live_api.get("/api/runs"), live_api.get("/api/secrets")]

    # The task really had the value.
    assert Run.objects.get(id=ok).output == {"length": len(canary)}, Run.objects.get(id=ok).error
    error = Run.objects.get(id=failing).error
    assert Run.objects.get(id=failing).status == "FAILED"
    assert "partner api refused token ••••" in error["message"] and "••••" in error["traceback"]
    assert rows_containing(canary) == []
    assert not [r for r in responses if canary in r.content.decode()]
    assert monitor.commands, "the Redis monitor saw no traffic"
    assert not [c for c in monitor.commands if canary in c]
    logs = [p for p in Path(LOG_DIR).glob("session-*.log")]
    assert logs and not [p.name for p in logs if canary in p.read_text(errors="replace")]
    assert "calling the partner api with ••••" in "".join(p.read_text(errors="replace") for p in logs)
