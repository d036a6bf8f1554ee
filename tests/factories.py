"""Builders of runs with attempts, steps and events, and of waitpoints, for tests that need no worker."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from stepwise.runs.models import Attempt, Run, RunEvent, Step, Waitpoint, WaitpointKind
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.models import TaskVersion

ELSEWHERE = "e" * 64  # a version of task code that no process of the tests holds


def run_build(
    *,
    task_id: str = "test-noop",
    payload: Any = None,
    steps: int = 0,
    failed_attempts: int = 0,
    retry_delay: float = 2.0,
    status: str = "COMPLETED",
    tags: list[str] | None = None,
    idempotency_key: str | None = None,
) -> Run:
    """Trigger a run, then write the history of its attempts and steps as the engine would have."""
    run, _ = run_trigger(
        task_id=task_id,
        payload=payload if payload is not None else {"n": steps},
        # Delayed by an hour, so no worker picks the run up while its history is written.
        options=TriggerOptions(tags=tags or [], idempotency_key=idempotency_key, delay=3600),
    )
    run.refresh_from_db()
    # The history starts now and runs slightly ahead; each event gets the moment it tells of.
    start = timezone.now()
    at = start
    events: list[RunEvent] = []
    moments: dict[int, Any] = {}
    seq = run.last_event_seq

    def event(type_: str, data: dict[str, Any], moment) -> None:
        nonlocal seq
        seq += 1
        events.append(RunEvent(run=run, seq=seq, type=type_, data=data))
        moments[seq] = moment

    attempts: list[Attempt] = []
    for number in range(1, failed_attempts + 2):
        failed = number <= failed_attempts
        source = "DELAYED" if number == 1 else "QUEUED"
        event("run.status", {"from": source, "to": "EXECUTING", "attempt": number, "worker": "w1"}, at)
        begin = at
        at += timedelta(milliseconds=300)
        error = {"type": "Flaky", "message": f"attempt {number} broke", "traceback": "Traceback...\nFlaky"}
        if failed:
            event("step.started", {"key": "fragile", "name": "fragile", "position": 1, "attempt": number}, begin)
        attempts.append(
            Attempt(run=run, number=number, status="FAILED" if failed else status, worker_id="w1", lease_token="t",
                    version_id=run.version_id, error=error if failed else None,
                    retry_delay=retry_delay if failed else None, started_at=begin, finished_at=at)
        )
        if failed:
            summary = {"type": "Flaky", "message": error["message"]}
            event("run.status", {"from": "EXECUTING", "to": "RETRYING", "attempt": number, "error": summary,
                                 "retry_delay": retry_delay}, at)
            at += timedelta(seconds=retry_delay)
            event("run.status", {"from": "RETRYING", "to": "QUEUED"}, at)
    last = attempts[-1]
    recorded = []
    for position in range(1, steps + 1):  # positions count from 1, as the engine's do
        begin = last.started_at + timedelta(milliseconds=position * 2)
        recorded.append(
            Step(run=run, position=position, key=f"step-{position}" if position > 1 else "fragile", name="work",
                 status="COMPLETED", output={"position": position, "value": position * 10},
                 attempt_number=last.number, started_at=begin, finished_at=begin + timedelta(milliseconds=1))
        )
    last.finished_at = last.started_at + timedelta(milliseconds=max(300, steps * 2 + 1))
    event("run.status", {"from": "EXECUTING", "to": status, "attempt": last.number}, last.finished_at)
    with transaction.atomic():
        Attempt.objects.bulk_create(attempts)
        Step.objects.bulk_create(recorded, batch_size=1000)
        RunEvent.objects.bulk_create(events, batch_size=1000)
        for seq_, moment in moments.items():  # created_at is set on insert: give each event its own moment
            RunEvent.objects.filter(run=run, seq=seq_).update(created_at=moment)
        Run.objects.filter(id=run.id).update(
            status=status, attempt_count=len(attempts), started_at=start, finished_at=last.finished_at,
            delay_until=None, last_event_seq=seq, output={"ok": True} if status == "COMPLETED" else None,
        )
    run.refresh_from_db()
    return run


def waitpoint_build(
    *, kind: str = WaitpointKind.TOKEN, environment: str = "dev", event_name: str = "",
    event_filter: dict[str, Any] | None = None,
) -> Waitpoint:
    """Give a new delayed run (no worker picks it up) a pending waitpoint, as its wait would have."""
    run, _ = run_trigger(
        task_id="test-noop", payload={}, options=TriggerOptions(environment=environment, delay=3600)
    )
    return Waitpoint.objects.create(
        run=run, key=f"wait.{kind.lower()}", position=1, kind=kind, event_name=event_name,
        event_filter=event_filter or {},
        events_since=run.created_at if kind == WaitpointKind.EVENT else None, description=f"{kind} in {environment}",
    )


def chained_error_build(depth: int) -> ValueError:
    """Return a raised ``ValueError("level <depth>")`` caused by levels depth-1 to 1, then ``KeyError("<root>")``."""
    def raise_at(level: int) -> None:
        if level == 0:
            raise KeyError("<root>")
        try:
            raise_at(level - 1)
        except Exception as exc:
            raise ValueError(f"level {level}") from exc

    try:
        raise_at(depth)
    except ValueError as exc:
        return exc
    raise AssertionError("unreachable: raise_at always raises")


def run_pinned_elsewhere(*, task_id: str = "test-pinned-noop", delay: float | None = None) -> Run:
    """Trigger a run, then pin it to a version no process holds, as if code long gone had triggered it."""
    run, _ = run_trigger(task_id=task_id, payload={}, options=TriggerOptions(delay=delay))
    elsewhere, _ = TaskVersion.objects.get_or_create(task_id=task_id, content_hash=ELSEWHERE)
    Run.objects.filter(id=run.id).update(version=elsewhere)
    return Run.objects.get(id=run.id)
