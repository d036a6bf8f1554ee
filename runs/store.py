"""The engine's RunStore implemented with the Django ORM."""
from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from runs import waits
from runs.dispatch import dispatch_run_on_commit
from runs.engine.errors import RunInterrupted, StoreUnavailable
from runs.engine.store import Claim, LogEntry, RecordedStep
from runs.engine.waits import WaitpointState, WaitSpec
from runs.events import event_append, event_append_with
from runs.lifecycle import run_settle
from runs.models import Attempt, AttemptStatus, Run, Step
from runs.states import TransitionRefused, run_transition
from runs.statuses import RunStatus
from tasks.models import Queue


def _lease_expiry():
    return timezone.now() + timedelta(seconds=settings.STEPWISE_LEASE_SECONDS)


def queue_has_room(run: Run) -> bool:
    """Tell whether a run's queue may start it now; locks the queue row to serialise claims."""
    queue = Queue.objects.select_for_update(no_key=True).filter(name=run.queue).first()
    if queue is None:
        return True
    if queue.paused:
        return False
    if queue.concurrency_limit is None:
        return True
    key = run.concurrency_key or None
    if Run.objects.executing_in(run.queue, key).count() >= queue.concurrency_limit:
        return False
    # A full-enough queue starts its best-priority runs first: hand the slot to a better one.
    better = (
        Run.objects.filter(queue=run.queue, status=RunStatus.QUEUED, priority__gt=run.priority)
        .filter(**({"concurrency_key": run.concurrency_key} if key else {}))
        .order_by("-priority", "id")
        .values_list("id", "priority")
        .first()
    )
    if better is not None:
        dispatch_run_on_commit(better[0], priority=better[1])
        return False
    return True


StoreClass = TypeVar("StoreClass", bound=type)


def _database_errors_interrupt(cls: StoreClass) -> StoreClass:
    """Turn a lost database connection inside any store method into StoreUnavailable.

    A restart or outage of the database must never count as the task's own failure (which
    could fail the run for good); the attempt stops and the lease decides what happens next.
    """

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                raise StoreUnavailable(f"the database is unavailable: {exc}".strip()) from exc

        return guarded

    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_"):
            setattr(cls, name, wrap(member))
    return cls


@_database_errors_interrupt
class OrmRunStore:
    """Every write is conditional on the claim's lease token (a fencing token)."""

    def claim(self, run_id: str, worker_id: str) -> Claim | None:
        with transaction.atomic():
            run = (
                # of=self: locking the joined version row too would make concurrent claims skip each other.
                Run.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
                .select_related("version")
                .filter(id=run_id, status=RunStatus.QUEUED)
                .first()
            )
            if run is None or not queue_has_room(run):
                return None
            token = uuid.uuid4().hex
            number = run.attempt_count + 1
            now = timezone.now()
            run_transition(
                run_id=run_id,
                to=RunStatus.EXECUTING,
                expected_from=[RunStatus.QUEUED],
                event_data={"attempt": number, "worker": worker_id},
                lease_token=token,
                lease_expires_at=_lease_expiry(),
                worker_id=worker_id,
                attempt_count=number,
                started_at=run.started_at or now,
            )
            Attempt.objects.create(
                run_id=run_id,
                number=number,
                status=AttemptStatus.EXECUTING,
                worker_id=worker_id,
                lease_token=token,
                version_id=run.version_id,
                started_at=now,
            )
            failed = Attempt.objects.filter(run_id=run_id, status=AttemptStatus.FAILED).count()
            steps = tuple(
                RecordedStep(
                    s.position, s.key, s.name, s.status, s.output, s.error, s.kind, s.started_at, s.finished_at
                )
                for s in Step.objects.filter(run_id=run_id).order_by("position")
            )
        return Claim(
            run_id=run.id,
            task_id=run.task_id,
            payload=run.payload,
            attempt_number=number,
            lease_token=token,
            worker_id=worker_id,
            version_hash=run.version.content_hash,
            environment=run.environment_id,
            max_duration=run.max_duration,
            executed_seconds=run.executed_seconds,
            tags=list(run.tags),
            metadata=dict(run.metadata),
            steps=steps,
            failed_attempts=failed,
            trace_id=run.trace_id,
            span_id=run.span_id,
        )

    def step_begin(self, claim: Claim, *, key: str, name: str, position: int) -> None:
        # The conditional seq bump is the fencing check: it fails unless the lease is ours.
        event_append_with(
            run_id=claim.run_id,
            type="step.started",
            data={"key": key, "name": name, "position": position, "attempt": claim.attempt_number},
            lease_token=claim.lease_token,
        )

    def step_record(self, claim: Claim, step: RecordedStep) -> None:
        duration_ms = (step.finished_at - step.started_at).total_seconds() * 1000
        error = {"error": {k: step.error[k] for k in ("type", "message")}} if step.error else {}
        try:
            event_append_with(
                run_id=claim.run_id,
                type="step.completed" if step.status == "COMPLETED" else "step.failed",
                data={
                    "key": step.key,
                    "kind": step.kind,
                    "position": step.position,
                    "attempt": claim.attempt_number,
                    "duration_ms": round(duration_ms, 3),
                    **error,
                },
                lease_token=claim.lease_token,
                row=Step(
                    run_id=claim.run_id,
                    position=step.position,
                    key=step.key,
                    name=step.name,
                    kind=step.kind,
                    status=step.status,
                    output=step.output,
                    error=step.error,
                    attempt_number=claim.attempt_number,
                    started_at=step.started_at,
                    finished_at=step.finished_at,
                ),
            )
        except IntegrityError as exc:
            raise RunInterrupted(f"step {step.key} of run {claim.run_id} was recorded by another attempt") from exc

    def lease_renew(self, claim: Claim) -> bool:
        return bool(
            Run.objects.filter(
                id=claim.run_id, lease_token=claim.lease_token, status=RunStatus.EXECUTING
            ).update(lease_expires_at=_lease_expiry())
        )

    def version_mismatch_note(self, claim: Claim, *, worker_hash: str) -> None:
        with transaction.atomic():
            event_append(
                run_id=claim.run_id,
                type="version.mismatch",
                data={"pinned": claim.version_hash, "worker": worker_hash, "attempt": claim.attempt_number},
            )

    def _end(self, claim: Claim, *, to: str, attempt_status: str, elapsed: float, event_data=None, error=None,
             retry_delay=None, run_error: bool = False, **fields: Any) -> None:
        if run_error:
            fields["error"] = error
        queue = Run.objects.filter(id=claim.run_id).values_list("queue", flat=True).first()
        try:
            run_settle(
                run_id=claim.run_id,
                to=to,
                expected_from=[RunStatus.EXECUTING],
                expected_token=claim.lease_token,
                queue=queue,
                attempt={"number": claim.attempt_number, "status": attempt_status, "error": error,
                         "retry_delay": retry_delay},
                event_data=event_data,
                executed_seconds=F("executed_seconds") + elapsed,
                **fields,
            )
        except TransitionRefused as exc:
            raise RunInterrupted(str(exc)) from exc

    def run_complete(self, claim: Claim, *, output: Any, elapsed: float) -> None:
        self._end(claim, to=RunStatus.COMPLETED, attempt_status=AttemptStatus.COMPLETED, elapsed=elapsed,
                  event_data={"attempt": claim.attempt_number}, output=output)

    def run_fail(self, claim: Claim, *, error: dict[str, Any], retry_delay: float | None, elapsed: float) -> None:
        summary = {"type": error["type"], "message": error["message"]}
        if retry_delay is None:
            self._end(claim, to=RunStatus.FAILED, attempt_status=AttemptStatus.FAILED, elapsed=elapsed,
                      error=error, run_error=True, event_data={"attempt": claim.attempt_number, "error": summary})
            return
        self._end(
            claim,
            to=RunStatus.RETRYING,
            attempt_status=AttemptStatus.FAILED,
            elapsed=elapsed,
            error=error,
            retry_delay=retry_delay,
            event_data={"attempt": claim.attempt_number, "error": summary, "retry_delay": round(retry_delay, 3)},
            next_attempt_at=timezone.now() + timedelta(seconds=retry_delay),
            lease_token=None,
            lease_expires_at=None,
        )

    def run_time_out(self, claim: Claim, *, elapsed: float) -> bool:
        error = {
            "type": "TimedOut",
            "message": f"the run exceeded its max_duration of {claim.max_duration:g}s",
            "traceback": "",
        }
        try:
            self._end(claim, to=RunStatus.TIMED_OUT, attempt_status=AttemptStatus.TIMED_OUT, elapsed=elapsed,
                      error=error, run_error=True, event_data={"attempt": claim.attempt_number})
        except RunInterrupted:
            return False
        return True

    def waitpoint_get(
        self, claim: Claim, *, key: str | None = None, waitpoint_id: str | None = None
    ) -> WaitpointState | None:
        return waits.waitpoint_get(claim, key=key, waitpoint_id=waitpoint_id)

    def waitpoint_create(self, claim: Claim, *, key: str, position: int, spec: WaitSpec) -> WaitpointState:
        return waits.waitpoint_create(claim, key=key, position=position, spec=spec)

    def run_suspend(self, claim: Claim, *, waitpoint_id: str, elapsed: float) -> bool:
        return waits.run_suspend(claim, waitpoint_id=waitpoint_id, elapsed=elapsed)
    def log_append(self, claim: Claim, entry: LogEntry) -> None:
        event_append_with(
            run_id=claim.run_id,
            type="log",
            data={
                "level": entry.level,
                "message": entry.message,
                "logger": entry.logger,
                "attributes": entry.attributes,
                "span_id": entry.span_id,
                "attempt": claim.attempt_number,
                "at": entry.at.isoformat(),
            },
        )
