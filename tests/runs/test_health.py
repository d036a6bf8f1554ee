"""Health probes: /health/live, /health/ready and manage.py health, against real services and processes."""
from __future__ import annotations

import json
import signal
from datetime import timedelta

import pytest
from django.core.management import CommandError
from django.test import override_settings
from django.utils import timezone

from stepwise.runs.models import SchedulerBeat
from tests.commands import run_command
from tests.waiting import wait_for

UNREACHABLE = "redis://127.0.0.1:1/0"
UNREACHABLE_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                 "CONFIG": {"hosts": [UNREACHABLE], "prefix": "health-test"}}}


def _fresh_beat(**ago) -> None:
    at = timezone.now() - timedelta(**ago)
    SchedulerBeat.objects.create(scheduler="elsewhere:1:abc", started_at=at, beat_at=at)


def test_live_answers_any_host_over_plain_http(client):
    response = client.get("/health/live", HTTP_HOST="10.0.3.7:8000")  # a probe comes by address
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_ready_lists_every_check_and_answers_200_when_they_pass(client, transactional_db):
    _fresh_beat(seconds=1)
    response = client.get("/health/ready", HTTP_HOST="10.0.3.7")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True, "broker": True, "channel_layer": True, "scheduler": True}


def test_ready_answers_503_naming_the_broker_and_channel_layer_when_redis_is_down(client, transactional_db):
    _fresh_beat(seconds=1)
    with override_settings(REDIS_URL=UNREACHABLE, CELERY_BROKER_URL=UNREACHABLE, CHANNEL_LAYERS=UNREACHABLE_LAYER):
        response = client.get("/health/ready")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is False and "Connection" in body["checks"]["broker"]["detail"]
    assert body["checks"]["channel_layer"]["ok"] is False


def test_a_stale_scheduler_is_reported_without_taking_the_console_out_of_service(client, transactional_db):
    _fresh_beat(minutes=5)
    response = client.get("/health/ready")
    scheduler = response.json()["checks"]["scheduler"]
    assert response.status_code == 200
    assert scheduler == {"ok": False, "required": False, "detail": scheduler["detail"]}
    assert "ago (limit 60s)" in scheduler["detail"]
    with pytest.raises(CommandError, match=r"unhealthy: scheduler \(the last scheduler pass was \d+s ago"):
        run_command("health", "--scheduler", "--any-host")


def test_health_command_without_a_flag_checks_what_the_web_needs(transactional_db):
    out = json.loads(run_command("health", "--json"))
    assert out["ok"] is True  # no scheduler: reported, not required
    assert {c["name"]: c["ok"] for c in out["checks"]} == {
        "database": True, "broker": True, "channel_layer": True, "scheduler": False}
    with override_settings(REDIS_URL=UNREACHABLE, CELERY_BROKER_URL=UNREACHABLE), \
            pytest.raises(CommandError, match=r"unhealthy: broker \("):
        run_command("health")


def test_health_scheduler_follows_a_real_scheduler_process(transactional_db, processes):
    with pytest.raises(CommandError, match="no scheduler on .* has recorded a pass"):
        run_command("health", "--scheduler")
    with override_settings(STEPWISE_SCHEDULER_STALE_SECONDS=2):
        scheduler = processes.scheduler(STEPWISE_SCHEDULER_STALE_SECONDS="2")
        wait_for(lambda: SchedulerBeat.objects.exists(), timeout=30, message="the scheduler's first beat")
        assert "scheduler      ok" in run_command("health", "--scheduler")
        processes.kill(scheduler, signal.SIGKILL)  # a dead process says nothing: its beat goes stale

        def unhealthy():
            try:
                run_command("health", "--scheduler")
            except CommandError as exc:
                return str(exc)
            return None

        assert "the last scheduler pass on" in wait_for(unhealthy, timeout=10, message="the beat to go stale")


def test_a_stopped_scheduler_removes_its_beat(transactional_db, processes):
    scheduler = processes.scheduler()
    wait_for(lambda: SchedulerBeat.objects.exists(), timeout=30, message="the scheduler's first beat")
    processes.kill(scheduler, signal.SIGTERM)
    assert scheduler.returncode == 0
    assert not SchedulerBeat.objects.exists()


def test_health_worker_follows_a_real_worker_process(transactional_db, processes):
    with pytest.raises(CommandError, match=r"unhealthy: worker \(no worker on .* announced itself"):
        run_command("health", "--worker")
    worker = processes.worker(pool="prefork", concurrency=1)
    out = wait_for(lambda: _healthy("--worker"), timeout=60, message="the worker to announce itself")
    assert "database       ok" in out and "broker         ok" in out and "1 worker process on" in out
    wait_for(lambda: b" ready." in worker.log_path.read_bytes(), timeout=60, message="the worker to be ready")
    processes.kill(worker, signal.SIGTERM)  # a warm shutdown says the worker left
    with pytest.raises(CommandError, match="unhealthy: worker"):
        run_command("health", "--worker")


def _healthy(*args: str) -> str | None:
    try:
        return run_command("health", *args)
    except CommandError:
        return None
