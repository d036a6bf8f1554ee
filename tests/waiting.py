"""Polling helpers: wait for a condition in the database, with a deadline."""
from __future__ import annotations

import time

import pytest


def wait_for(predicate, *, timeout: float = 30, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` until it returns a truthy value; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {message}\n{_diagnose()}")
        time.sleep(interval)


def wait_finished(run_id: str, timeout: float = 40):
    """Wait until a run reaches a final status and return it."""
    from stepwise.runs.models import Run

    def done():
        run = Run.objects.filter(id=run_id).first()
        return run if run is not None and run.is_finished else None

    return wait_for(done, timeout=timeout, message=f"run {run_id} to finish")


def _diagnose() -> str:
    """Describe unfinished runs and held locks, to explain a timeout."""
    from django.db import connection

    from stepwise.runs.models import Run

    lines = [
        f"{r.id} {r.task_id} {r.status} attempts={r.attempt_count} worker={r.worker_id} lease={r.lease_expires_at}"
        for r in Run.objects.active()[:20]
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT a.application_name, a.state, now() - a.state_change, left(a.query, 160) "
            "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.granted AND l.relation IS NOT NULL "
            "AND a.pid <> pg_backend_pid() AND a.datname = current_database()"
        )
        lines += [" | ".join(map(str, row)) for row in cursor.fetchall()]
    return "\n".join(lines)


def waits_resume_now(run_id: str) -> None:
    """Make a run's pending timers due now and fire them, as the scheduler would: the run is QUEUED again."""
    from datetime import timedelta

    from django.utils import timezone

    from stepwise.runs.models import Waitpoint
    from stepwise.runs.waits import waitpoints_fire_due

    Waitpoint.objects.filter(run_id=run_id, status="PENDING").update(resume_at=timezone.now() - timedelta(seconds=1))
    waitpoints_fire_due(timezone.now())


def run_requeue(run_id: str) -> None:
    """Queue a retrying run at once, instead of waiting for its retry delay and the scheduler."""
    from stepwise.runs.models import Run
    from stepwise.runs.statuses import RunStatus

    Run.objects.filter(id=run_id).update(status=RunStatus.QUEUED)
