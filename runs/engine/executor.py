"""Execute one attempt of a run: claim, call the task from the top, record the outcome."""
from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from opentelemetry import context as otel_context
from opentelemetry import trace

from runs.engine.checkpoints import checkpoint_encode
from runs.engine.context import RunContext, current_context
from runs.engine.errors import (
    RunInterrupted,
    TaskNotRegistered,
    error_describe,
    is_permanent,
)
from runs.engine.redaction import sensitive_forget
from runs.engine.retry import RetryPolicy
from runs.engine.spans import attempt_span_end, attempt_span_start
from runs.engine.store import Claim, RunStore
from runs.engine.waits import RunSuspended

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Executable:
    """What the engine needs of a registered task."""

    task_id: str
    fn: Callable[..., Any]
    retry: RetryPolicy
    version_hash: str


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended, for logs and tests."""

    run_id: str
    attempt: int
    result: str  # completed | retrying | failed | interrupted | suspended
    queue_limited: bool = True  # the run held a slot of a limited (or paused) queue, now free


class Heartbeat:
    """Renews the lease while a task runs, and enforces max_duration."""

    def __init__(
        self,
        *,
        store: RunStore,
        claim: Claim,
        ctx: RunContext,
        interval: float,
        on_thread_exit: Callable[[], None] | None = None,
    ) -> None:
        self._store = store
        self._claim = claim
        self._ctx = ctx
        self._interval = interval
        self._stop = threading.Event()
        self._on_thread_exit = on_thread_exit
        self.started = time.monotonic()
        self.timed_out = False
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{claim.run_id}", daemon=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def _loop(self) -> None:
        try:
            max_duration = self._claim.max_duration
            while not self._stop.wait(self._next_wait(max_duration)):
                if max_duration is not None and self._claim.executed_seconds + self.elapsed() >= max_duration:
                    if self._store.run_time_out(self._claim, elapsed=self.elapsed()):
                        self.timed_out = True
                    self._ctx.interrupted = f"the run exceeded its max_duration of {max_duration:g}s"
                    return
                try:
                    if not self._store.lease_renew(self._claim):
                        self._ctx.interrupted = "the run was canceled or its lease was taken over"
                        return
                except Exception:  # the database may be restarting; the lease has slack
                    logger.warning("lease renewal for %s failed; will try again", self._claim.run_id)
        finally:
            if self._on_thread_exit:
                self._on_thread_exit()

    def _next_wait(self, max_duration: float | None) -> float:
        if max_duration is None:
            return self._interval
        left = max_duration - self._claim.executed_seconds - self.elapsed()
        return max(0.0, min(self._interval, left))


def _invoke(fn: Callable[..., Any], payload: Any, ctx: RunContext) -> Any:
    if inspect.iscoroutinefunction(fn):
        # async_to_sync keeps thread-sensitive ORM calls on this worker thread.
        return async_to_sync(fn)(payload, ctx)
    return fn(payload, ctx)


def attempt_execute(
    *,
    store: RunStore,
    run_id: str,
    worker_id: str,
    lookup: Callable[[str], Executable | None],
    heartbeat_interval: float,
    max_output_bytes: int | None = None,
    on_thread_exit: Callable[[], None] | None = None,
    env_loader: Callable[[str], dict[str, str]] | None = None,
) -> AttemptOutcome | None:
    """Claim ``run_id`` and run one attempt of it; None if the run could not be claimed.

    The attempt's span ends before its outcome is written, so the store records it with the
    outcome: whoever sees the run finished also sees its spans.
    """
    claim = store.claim(run_id, worker_id)
    if claim is None:
        return None
    executable = lookup(claim.task_id)
    ctx = RunContext(store=store, claim=claim, max_output_bytes=max_output_bytes, env_loader=env_loader)
    if executable is None:
        error = error_describe(TaskNotRegistered(f"no task '{claim.task_id}' is registered on worker {worker_id}"))
        store.run_fail(claim, error=error, retry_delay=None, elapsed=0.0)
        return AttemptOutcome(run_id, claim.attempt_number, "failed", claim.queue_limited)
    if executable.version_hash != claim.version_hash:
        store.version_mismatch_note(claim, worker_hash=executable.version_hash)

    token = current_context.set(ctx)
    span = attempt_span_start(claim)
    span_token = otel_context.attach(trace.set_span_in_context(span))

    def settle(result: str, error: dict[str, Any] | None = None, retry_delay: float | None = None) -> None:
        attempt_span_end(span, result=result, error=error, retry_delay=retry_delay)

    heartbeat = Heartbeat(
        store=store, claim=claim, ctx=ctx, interval=heartbeat_interval, on_thread_exit=on_thread_exit
    )
    ctx.elapsed = heartbeat.elapsed
    try:
        with heartbeat:
            try:
                output = _invoke(executable.fn, claim.payload, ctx)
                ctx.check_all_replayed()
                output = checkpoint_encode(output, where="the task's return value", max_bytes=max_output_bytes)
                ctx.check_interrupted()
            except RunInterrupted:
                return AttemptOutcome(run_id, claim.attempt_number, "interrupted", claim.queue_limited)
            except RunSuspended:
                return AttemptOutcome(run_id, claim.attempt_number, "suspended", claim.queue_limited)
            except Exception as exc:
                if heartbeat.timed_out or ctx.interrupted:
                    return AttemptOutcome(run_id, claim.attempt_number, "interrupted", claim.queue_limited)
                # Resumes after waits are attempts too; only failures count against the retry policy.
                failures = claim.failed_attempts + 1
                retry_delay = None if is_permanent(exc) else executable.retry.delay_after(failures)
                result = "failed" if retry_delay is None else "retrying"
                error = ctx.describe_error(exc)
                settle(result, error, retry_delay)
                store.run_fail(claim, error=error, retry_delay=retry_delay, elapsed=heartbeat.elapsed())
                return AttemptOutcome(run_id, claim.attempt_number, result, claim.queue_limited)
            settle("completed")
            store.run_complete(claim, output=output, elapsed=heartbeat.elapsed())
            return AttemptOutcome(run_id, claim.attempt_number, "completed", claim.queue_limited)
    except RunInterrupted:
        return AttemptOutcome(run_id, claim.attempt_number, "interrupted", claim.queue_limited)
    finally:
        settle("interrupted")  # a no-op when the span already ended
        otel_context.detach(span_token)
        current_context.reset(token)
        sensitive_forget(run_id)
