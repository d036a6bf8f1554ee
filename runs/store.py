"""The engine's RunStore implemented with the Django ORM."""
from __future__ import annotations

import functools
import logging
import random
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, transaction
from django.db.models import F
from django.utils import timezone

from stepwise.runs import waits
from stepwise.runs.dispatch import dispatch_run_on_commit
from stepwise.runs.engine.errors import RunInterrupted, StoreUnavailable, error_summary
from stepwise.runs.engine.redaction import redact_for_run
from stepwise.runs.engine.store import Claim, LogEntry, RecordedStep
from stepwise.runs.engine.waits import WaitpointState, WaitSpec
from stepwise.runs.events import event_append, events_append_fenced, publish_run_event_now, stored_events_publish
from stepwise.runs.lifecycle import run_settle, run_span_export_on_commit
from stepwise.runs.models import Attempt, NewEvent, Run, Step
from stepwise.runs.selectors import run_stream_chunks
from stepwise.runs.statements import (
    ClaimArgs,
    ClaimedRow,
    ClaimRefused,
    NewRow,
    Outcome,
    is_postgresql,
    new_row_type,
    run_claim,
    run_outcome,
    status_event,
)
from stepwise.runs.states import TransitionRefused, finished_fields, run_transition
from stepwise.runs.statuses import FINAL_STATUSES, AttemptStatus, RunStatus, run_span_result
from stepwise.runs.timers import TIMERS_CHANNEL, timer_is_soon, timer_notify
from stepwise.runs.tracing.storage import spans_store
from stepwise.tasks.models import Queue, TaskVersion

logger = logging.getLogger(__name__)
_NewStep = new_row_type(Step)


def _parsed(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _lease_expiry():
    return timezone.now() + timedelta(seconds=settings.STEPWISE_LEASE_SECONDS)


def queue_room_at(run: Run) -> datetime | None:
    """Return when a run's queue may start it (now), or None if it may not; locks the queue row to serialise claims.

    The time is read once the slots are counted: an attempt's start is never earlier than the
    moment its slot was counted free. Under a rate limit, a run that may start moves the queue's next
    start one interval on; one that may not yet wakes the scheduler for that time.
    """
    queue = (Queue.objects.select_for_update(no_key=True)
             .filter(environment_id=run.environment_id, name=run.queue).first())
    if queue is None or (not queue.limited and not queue.paused):
        return timezone.now()
    if queue.paused:
        return None
    key = run.concurrency_key or None
    executing = Run.objects.executing_in(run.queue, environment=run.environment_id)
    if queue.total_limit is not None and executing.count() >= queue.total_limit:
        return None
    if queue.concurrency_limit is not None and (
        (executing.filter(concurrency_key=key) if key is not None else executing).count() >= queue.concurrency_limit
    ):
        return None
    # A full-enough queue starts its best-priority runs first: hand the slot to a better one.
    better = (
        Run.objects.queued_in(run.queue, key, environment=run.environment_id)
        .filter(priority__gt=run.priority)
        .values_list("id", "attempt_count")
        .first()
    )
    if better is not None:
        dispatch_run_on_commit(better[0], resume=better[1] > 0)
        return None
    now = timezone.now()  # after the counts: the slot was free by then
    if queue.rate_limit is not None:
        if queue.rate_next_at is not None and queue.rate_next_at > now:
            timer_notify(queue.rate_next_at)
            return None
        Queue.objects.filter(pk=queue.pk).update(rate_next_at=now + timedelta(seconds=queue.rate_interval))
    return now


class SpanSource(Protocol):
    """Hands over a run's ended spans; a step's record may be told to wait for a fuller batch."""

    def __call__(self, run_id: str, *, everything: bool = True) -> list[dict[str, Any]]: ...


def _database_errors_interrupt[StoreClass: type](cls: StoreClass) -> StoreClass:
    """Turn a lost database connection inside any store method into StoreUnavailable.

    A restart or outage of the database must never count as the task's own failure (which
    could fail the run for good); the attempt stops and the lease decides what happens next.
    """

    def wrap(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                if settings.STEPWISE_STORE_FAULT_RATE:
                    return _with_injected_faults(method, args, kwargs)
                return method(*args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                raise StoreUnavailable(f"the database is unavailable: {exc}".strip()) from exc

        return guarded

    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_"):
            setattr(cls, name, wrap(member))
    return cls


def _with_injected_faults(method: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> Any:
    """Fail a share of calls as a lost connection would: before the call, or after it committed (its answer lost).

    Only with STEPWISE_STORE_FAULT_RATE, which the settings refuse unless DEBUG is on (manage.py chaos).
    """
    draw = random.random()
    if draw < settings.STEPWISE_STORE_FAULT_RATE / 2:
        logger.warning("injected store fault before %s", method.__name__)
        raise OperationalError(f"injected store fault: {method.__name__} did not reach the database")
    result = method(*args, **kwargs)
    if draw < settings.STEPWISE_STORE_FAULT_RATE:
        logger.warning("injected store fault after %s", method.__name__)
        raise OperationalError(f"injected store fault: the answer to {method.__name__} was lost")
    return result


class ClaimAhead:
    """The next run of a group hint, claimed by the statement that ends the attempt before it.

    A worker going through the runs of a group hint (stepwise.runs.worker) gives the store
    ``take``, which removes the group's next run, so that nothing hands it back meanwhile.
    Ending an attempt on the one-statement path then claims that run in the same statement and
    commit: a run of a group costs one statement to claim and end instead of two. The worker
    ``pop``s what was taken, with the Claim, the claim's refusal, or None when the statement
    failed (the run is still to be claimed the usual way). One run at a time: until it is
    popped, ``take`` takes no other.
    """

    def __init__(self, take: Callable[[], str | None]) -> None:
        self._take = take
        self._held: tuple[str, Claim | ClaimRefused | None] | None = None

    def take(self) -> str | None:
        """Remove the group's next run and hold it (not claimed yet); None if there is none or one is held."""
        if self._held is not None:
            return None
        run_id = self._take()
        if run_id is not None:
            self._held = (run_id, None)
        return run_id

    def hold(self, run_id: str, claim: Claim | ClaimRefused) -> None:
        """Note how the claim of the held run went."""
        self._held = (run_id, claim)

    def pop(self) -> tuple[str, Claim | ClaimRefused | None] | None:
        """Return the held run and its claim (None: not claimed), and hold nothing any more."""
        held, self._held = self._held, None
        return held


@_database_errors_interrupt
class OrmRunStore:
    """Every write is conditional on the claim's lease token (a fencing token).

    On PostgreSQL the hot path (claim, step, outcome) is one statement each (``stepwise.runs.statements``);
    runs of limited or paused queues, children a parent waits for, and other databases take the
    ORM path, with the same effects. ``span_source`` hands over the run's ended spans, which
    are written with the next record, under the same fence.
    """

    def __init__(
        self, *, span_source: SpanSource | None = None, versions: Sequence[str] | None = None,
        ahead: ClaimAhead | None = None,
    ) -> None:
        self._span_source = span_source
        self._ahead = ahead
        self._noted: dict[str, list[RecordedStep]] = {}
        # Each run's changed metadata not stored yet: (metadata, cursor), and the once-per-run
        # hooks its attempt ran (stored or not). The lock keeps these writes in order: a flush
        # from the heartbeat thread and a step's record never cross.
        self._metadata: dict[str, tuple[dict[str, Any], tuple[int, int] | None]] = {}
        self._hooks: dict[str, list[str]] = {}
        self._hooks_unstored: set[str] = set()
        self._fields_lock = threading.Lock()
        # The content hashes of the worker's code: a run pinned to another version is not claimed.
        self._versions = versions

    def _spans(self, run_id: str, *, everything: bool = True) -> list[dict[str, Any]]:
        return self._span_source(run_id, everything=everything) if self._span_source is not None else []

    def claim(self, run_id: str, worker_id: str) -> Claim | None:
        if is_postgresql():
            claim = self._claim_one_statement(run_id, worker_id)
            if not isinstance(claim, ClaimRefused):
                return claim
            if not claim.queued:  # running, waiting or ended: the hint is stale, and that is all
                return None
        return self._claim_locked(run_id, worker_id)

    def _claim_one_statement(self, run_id: str, worker_id: str) -> Claim | ClaimRefused:
        args = self._claim_args(run_id, worker_id, timezone.now())
        # One statement commits on its own: no BEGIN and COMMIT round trips around it.
        return self._claimed(args, run_claim(args))

    def _claim_args(self, run_id: str, worker_id: str, now: datetime) -> ClaimArgs:
        """Return a one-statement claim's arguments: a new lease token and its expiry, this worker's versions."""
        return ClaimArgs(run_id, worker_id, uuid.uuid4().hex, now, _lease_expiry(), self._versions)

    def _claimed(self, args: ClaimArgs, row: ClaimedRow | ClaimRefused) -> Claim | ClaimRefused:
        """Make the Claim of what a claim statement returned (and publish its status event), or pass its refusal on."""
        if isinstance(row, ClaimRefused):
            return row
        run_id, worker_id = args.run_id, args.worker_id
        stored_events_publish(run_id, row.seq, [NewEvent(
            "run.status",
            {"from": RunStatus.QUEUED.value, "to": RunStatus.EXECUTING.value,
             "attempt": row.attempt_number, "worker": worker_id},
            args.now,
        )])
        steps = tuple(
            RecordedStep(s["position"], s["key"], s["name"], s["status"], s["output"], s["error"], s["kind"],
                         datetime.fromisoformat(s["started_at"]), datetime.fromisoformat(s["finished_at"]))
            for s in row.steps
        )
        resolved = {
            w["key"]: WaitpointState(w["id"], w["status"], w["output"], _parsed(w["created_at"]),
                                     _parsed(w["resolved_at"]))
            for w in row.resolved_waits
        }
        return Claim(
            run_id=run_id, task_id=row.task_id, payload=row.payload, attempt_number=row.attempt_number,
            lease_token=args.token, worker_id=worker_id, version_hash=row.version_hash, environment=row.environment,
            max_duration=row.max_duration, executed_seconds=row.executed_seconds, tags=row.tags,
            metadata=row.metadata, steps=steps, failed_attempts=row.failed_attempts, trace_id=row.trace_id,
            span_id=row.span_id, queue=row.queue, queue_limited=False, parent_waitpoint_id=row.parent_waitpoint_id,
            resolved_waits=resolved, metadata_cursor=tuple(row.metadata_cursor) if row.metadata_cursor else None,
            retry=row.retry, hooks_done=tuple(row.hooks_done), idempotency_key=row.idempotency_key,
            idempotency_key_scope=row.idempotency_key_scope,
        )

    def _claim_locked(self, run_id: str, worker_id: str) -> Claim | None:
        with transaction.atomic():
            run = (
                # of=self: locking the joined version row too would make concurrent claims skip each other.
                Run.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
                .select_related("version")
                .filter(id=run_id, status=RunStatus.QUEUED)
                .first()
            )
            if run is None:
                return None
            pinned = run.pinned_hash
            if pinned is not None and self._versions is not None and pinned not in self._versions:
                # Pinned to code this worker lacks: pass the hint on to the workers that hold it.
                logger.info("run %s is pinned to version %s, which this worker lacks: hint passed on", run_id,
                            pinned[:10])
                dispatch_run_on_commit(run.id, resume=run.attempt_count > 0, version=pinned, priority=run.priority)
                return None
            now = queue_room_at(run)
            if now is None:
                return None
            token = uuid.uuid4().hex
            number = run.attempt_count + 1
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
                version_wait_since=None,
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
            resolved = waits.waits_resolved_unrecorded(run_id)
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
            queue=run.queue,
            queue_limited=True,
            parent_waitpoint_id=run.parent_waitpoint_id,
            resolved_waits=resolved,
            metadata_cursor=tuple(run.metadata_cursor) if run.metadata_cursor else None,
            retry=run.retry,
            hooks_done=tuple(run.hooks_done),
            idempotency_key=run.idempotency_key,
            idempotency_key_scope=run.idempotency_key_scope,
        )

    def step_begin(self, claim: Claim, *, key: str, name: str, position: int) -> None:
        # Live only: a page opened later reads the step's record. The record itself is fenced.
        publish_run_event_now(
            run_id=claim.run_id,
            type="step.started",
            data={"key": key, "name": name, "position": position, "attempt": claim.attempt_number},
        )

    def step_record(self, claim: Claim, step: RecordedStep) -> None:
        with self._run_fields_write(claim) as (metadata_events, run_fields):
            events, rows = self._step_writes(claim, [*self._noted.pop(claim.run_id, []), step])
            spans = self._spans(claim.run_id, everything=False)
            try:
                events_append_fenced(run_id=claim.run_id, lease_token=claim.lease_token,
                                     events=[*metadata_events, *events], rows=rows, spans=spans,
                                     run_fields=run_fields)
            except IntegrityError as exc:
                raise RunInterrupted(f"step {step.key} of run {claim.run_id} was recorded by another attempt") from exc

    def metadata_note(self, claim: Claim, *, metadata: dict[str, Any], cursor: tuple[int, int] | None) -> None:
        self._metadata[claim.run_id] = (metadata, cursor)

    def hook_note(self, claim: Claim, name: str) -> None:
        self._hooks.setdefault(claim.run_id, []).append(name)
        self._hooks_unstored.add(claim.run_id)

    def run_fields_store(self, claim: Claim) -> None:
        self._noted_store(claim)

    @contextmanager
    def _run_fields_write(self, claim: Claim) -> Iterator[tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]]:
        """Yield the run's noted metadata and hooks as the events and run fields of the write made inside.

        With nothing noted this costs nothing. Otherwise the write happens under the lock, and
        if it fails what it took is noted again (unless newer metadata was noted meanwhile).
        """
        run_id = claim.run_id
        if run_id not in self._metadata and run_id not in self._hooks_unstored:
            yield [], {}
            return
        with self._fields_lock:
            noted = self._metadata.pop(run_id, None)
            hooks = run_id in self._hooks_unstored
            self._hooks_unstored.discard(run_id)
            events, fields = [], {}
            if noted is not None:
                metadata, cursor = noted
                events.append(("metadata.updated", {"metadata": metadata, "attempt": claim.attempt_number}))
                fields.update(metadata=metadata, metadata_cursor=list(cursor) if cursor else None)
            if hooks:
                fields["hooks_done"] = [*claim.hooks_done, *self._hooks[run_id]]
            try:
                yield events, fields
            except BaseException:
                if noted is not None:
                    self._metadata.setdefault(run_id, noted)
                if hooks:
                    self._hooks_unstored.add(run_id)
                raise

    def step_note(self, claim: Claim, step: RecordedStep) -> None:
        self._noted.setdefault(claim.run_id, []).append(step)

    def _noted_writes(self, claim: Claim) -> tuple[list[tuple[str, dict[str, Any]]], list[NewRow]]:
        return self._step_writes(claim, self._noted.pop(claim.run_id, []))

    def _noted_store(self, claim: Claim) -> None:
        """Store the steps and metadata noted since the attempt's last write, in a statement of their own."""
        with self._run_fields_write(claim) as (metadata_events, run_fields):
            events, rows = self._noted_writes(claim)
            if events or run_fields:
                events_append_fenced(run_id=claim.run_id, lease_token=claim.lease_token,
                                     events=[*metadata_events, *events], rows=rows, run_fields=run_fields)

    def _step_writes(
        self, claim: Claim, steps: list[RecordedStep]
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[NewRow]]:
        """Return the events and the Step rows that record finished steps."""
        events, rows = [], []
        for step in steps:
            duration_ms = (step.finished_at - step.started_at).total_seconds() * 1000
            error = {"error": error_summary(step.error)} if step.error else {}
            kind = "step.completed" if step.status == "COMPLETED" else "step.failed"
            events.append((kind, {
                "key": step.key,
                "kind": step.kind,
                "position": step.position,
                "attempt": claim.attempt_number,
                "duration_ms": round(duration_ms, 3),
                **error,
                **({"span_ids": [step.span_id]} if step.span_id else {}),  # its span, stored in its row
            }))
            rows.append(_NewStep(
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
                span_id=step.span_id,
                parent_span_id=step.parent_span_id,
            ))
        return events, rows

    def run_status(self, claim: Claim) -> str | None:
        return Run.objects.filter(id=claim.run_id).values_list("status", flat=True).first()

    def lease_renew(self, claim: Claim) -> bool:
        return bool(
            Run.objects.filter(
                id=claim.run_id, lease_token=claim.lease_token, status=RunStatus.EXECUTING
            ).update(lease_expires_at=_lease_expiry())
        )

    def version_mismatch_note(self, claim: Claim, *, worker_hash: str) -> None:
        with transaction.atomic():
            # The run executes on this worker's code (version_policy "latest"): its attempt says which.
            version, _ = TaskVersion.objects.get_or_create(
                task_id=claim.task_id, content_hash=worker_hash, deploy_label=settings.STEPWISE_DEPLOY_LABEL
            )
            Attempt.objects.filter(run_id=claim.run_id, number=claim.attempt_number).update(version=version)
            event_append(
                run_id=claim.run_id,
                type="version.mismatch",
                data={"pinned": claim.version_hash, "worker": worker_hash, "attempt": claim.attempt_number},
            )

    def _end(self, claim: Claim, outcome: Outcome, *, elapsed: float) -> None:
        spans = self._spans(claim.run_id)
        retry_at = outcome.run_fields.get("next_attempt_at")
        if is_postgresql() and not claim.queue_limited and not claim.parent_waitpoint_id:
            if timer_is_soon(retry_at):
                outcome = replace(outcome, notify=(TIMERS_CHANNEL, retry_at.isoformat()))
            with self._run_fields_write(claim) as (metadata_events, run_fields):
                events, rows = self._noted_writes(claim)
                outcome = replace(outcome, run_fields={**run_fields, **outcome.run_fields})
                self._end_one_statement(claim, outcome, elapsed=elapsed, spans=spans,
                                        steps=([*metadata_events, *events], rows))
            return
        try:
            with transaction.atomic():
                timer_notify(retry_at)
                self._noted_store(claim)
                if spans:
                    spans_store(spans)
                run_settle(
                    run_id=claim.run_id,
                    to=outcome.to,
                    expected_from=[RunStatus.EXECUTING],
                    expected_token=claim.lease_token,
                    queue=claim.queue,
                    attempt={"number": claim.attempt_number, "status": outcome.attempt_status,
                             "error": outcome.attempt_error, "retry_delay": outcome.retry_delay,
                             "span_id": outcome.attempt_span_id},
                    event_data=outcome.event_data,
                    by_worker=True,
                    executed_seconds=F("executed_seconds") + elapsed,
                    **outcome.run_fields,
                )
        except TransitionRefused as exc:
            raise RunInterrupted(str(exc)) from exc

    def _end_one_statement(
        self,
        claim: Claim,
        outcome: Outcome,
        *,
        elapsed: float,
        spans: list[dict],
        steps: tuple[list[tuple[str, dict[str, Any]]], list[NewRow]],
    ) -> None:
        now = timezone.now()
        final = RunStatus(outcome.to) in FINAL_STATUSES
        if final:
            outcome = replace(outcome, run_fields={**finished_fields(now), **outcome.run_fields},
                              span_result=run_span_result(outcome.to))
        events = [*(NewEvent(kind, redact_for_run(claim.run_id, data), now) for kind, data in steps[0]),
                  status_event(outcome, spans, now)]
        # The group hint's next run, if the attempt has one: the same statement claims it.
        next_run = self._ahead.take() if self._ahead is not None else None
        args = None if next_run is None else self._claim_args(next_run, claim.worker_id, now)
        last, row = run_outcome(run_id=claim.run_id, lease_token=claim.lease_token,
                                attempt_number=claim.attempt_number, outcome=outcome, elapsed=elapsed, now=now,
                                events=events, spans=spans, rows=steps[1], claim=args)
        if args is not None:
            self._ahead.hold(args.run_id, self._claimed(args, row))
        if last is None:
            raise RunInterrupted(f"run {claim.run_id} is no longer held by attempt {claim.attempt_number}")
        stored_events_publish(claim.run_id, last, events)
        if final:
            run_span_export_on_commit(claim.run_id)

    def run_complete(self, claim: Claim, *, output: Any, elapsed: float, span_id: str = "") -> None:
        self._end(claim, Outcome(to=RunStatus.COMPLETED, attempt_status=AttemptStatus.COMPLETED,
                                 run_fields={"output": output}, event_data={"attempt": claim.attempt_number},
                                 attempt_span_id=span_id),
                  elapsed=elapsed)

    def run_fail(self, claim: Claim, *, error: dict[str, Any], retry_delay: float | None, elapsed: float) -> None:
        summary = error_summary(error)
        if retry_delay is None:
            self._end(claim, Outcome(to=RunStatus.FAILED, attempt_status=AttemptStatus.FAILED, attempt_error=error,
                                     run_fields={"error": error},
                                     event_data={"attempt": claim.attempt_number, "error": summary}),
                      elapsed=elapsed)
            return
        self._end(
            claim,
            Outcome(
                to=RunStatus.RETRYING,
                attempt_status=AttemptStatus.FAILED,
                attempt_error=error,
                retry_delay=retry_delay,
                event_data={"attempt": claim.attempt_number, "error": summary, "retry_delay": round(retry_delay, 3)},
                run_fields={"next_attempt_at": timezone.now() + timedelta(seconds=retry_delay),
                            "lease_token": None, "lease_expires_at": None},
            ),
            elapsed=elapsed,
        )

    def run_time_out(self, claim: Claim, *, elapsed: float) -> bool:
        error = {
            "type": "TimedOut",
            "message": f"the run exceeded its max_duration of {claim.max_duration:g}s",
            "traceback": "",
        }
        try:
            self._end(claim, Outcome(to=RunStatus.TIMED_OUT, attempt_status=AttemptStatus.TIMED_OUT,
                                     attempt_error=error, run_fields={"error": error},
                                     event_data={"attempt": claim.attempt_number}),
                      elapsed=elapsed)
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
        self._noted_store(claim)  # a wait resolved before this one: its step is stored before the run waits again
        return waits.run_suspend(claim, waitpoint_id=waitpoint_id, elapsed=elapsed, spans=self._spans(claim.run_id))

    def stream_write(
        self, claim: Claim, *, stream: str, key: str, first_index: int, chunks: list[Any], completed: bool = False,
        step: RecordedStep | None = None,
    ) -> None:
        # Fenced like every write of the attempt; the noted metadata rides along (a progress bar
        # moves with the chunks), and a finished top-level stream's step row with its last chunk.
        common = {"stream": stream, "key": key, "attempt": claim.attempt_number}
        events = [("stream.chunk", {**common, "index": index, "chunk": chunk})
                  for index, chunk in enumerate(chunks, start=first_index)]
        if completed:
            events.append(("stream.completed", {**common, "chunks": first_index + len(chunks)}))
        with self._run_fields_write(claim) as (metadata_events, run_fields):
            steps = [*self._noted.pop(claim.run_id, []), step] if step is not None else []
            step_events, rows = self._step_writes(claim, steps)
            try:
                events_append_fenced(run_id=claim.run_id, lease_token=claim.lease_token,
                                     events=[*metadata_events, *events, *step_events], rows=rows,
                                     run_fields=run_fields)
            except IntegrityError as exc:
                raise RunInterrupted(f"stream {key} of run {claim.run_id} was recorded by another attempt") from exc

    def stream_read(self, claim: Claim, *, key: str, attempt: int) -> list[Any]:
        return run_stream_chunks(run_id=claim.run_id, key=key, attempt=attempt)

    def log_append(self, claim: Claim, entry: LogEntry) -> None:
        # Fenced like every write of the attempt: a worker that lost its lease (paused past
        # it, cut off) can no longer add lines to a run another worker now holds.
        events_append_fenced(
            run_id=claim.run_id,
            lease_token=claim.lease_token,
            events=[("log", {
                "level": entry.level,
                "message": entry.message,
                "logger": entry.logger,
                "attributes": entry.attributes,
                "span_id": entry.span_id,
                "attempt": claim.attempt_number,
                "at": entry.at.isoformat(),
            })],
        )
