"""Execute one attempt of a run: claim, call the task from the top, record the outcome."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from stepwise.runs.engine.checkpoints import checkpoint_encode
from stepwise.runs.engine.context import RunContext, current_context
from stepwise.runs.engine.deadlines import Deadlines
from stepwise.runs.engine.errors import (
    RunInterrupted,
    TaskNotRegistered,
    error_describe,
    is_permanent,
)
from stepwise.runs.engine.hooks import ErrorDecision, HookRunner, Hooks, RunResult, user_call
from stepwise.runs.engine.per_process import PerProcess
from stepwise.runs.engine.redaction import pii_hook_set, sensitive_forget
from stepwise.runs.engine.retry import RetryPolicy
from stepwise.runs.engine.spans import attempt_span_end, attempt_span_start
from stepwise.runs.engine.store import Claim, RunStore
from stepwise.runs.engine.waits import RunSuspended

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Executable:
    """What the engine needs of a registered task."""

    task_id: str
    fn: Callable[..., Any]
    retry: RetryPolicy
    version_hash: str
    hooks: Hooks = Hooks()
    # The PII hook applied to the run's logs, spans, events and errors before they are stored.
    redact: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class AttemptOutcome:
    """How an attempt ended, for logs and tests."""

    run_id: str
    attempt: int
    result: str  # completed | retrying | failed | interrupted | suspended
    queue_limited: bool = True  # the run held a slot of a limited (or paused) queue, now free


class Heartbeat:
    """Renews one attempt's lease while its task runs, and enforces max_duration.

    The attempts of a process share one heartbeat thread (``_beats``): starting an attempt
    starts no thread. ``on_thread_exit`` is called in that thread after each round of writes
    (it releases the thread's database connection, which would otherwise pin a session).
    """

    def __init__(
        self,
        *,
        store: RunStore,
        claim: Claim,
        ctx: RunContext,
        interval: float,
        on_thread_exit: Callable[[], None] | None = None,
        hard_stop: Callable[[], None] | None = None,
        grace: float = 2.0,
        metadata_flush_seconds: float = 1.0,
    ) -> None:
        self._store = store
        self._claim = claim
        self._ctx = ctx
        self._interval = interval
        self._hard_stop = hard_stop
        self._grace = grace
        self.on_thread_exit = on_thread_exit
        self.started = time.monotonic()
        self.timed_out = False
        self.stopped = False
        self.stopping = False  # interrupted: the task's code has ``grace`` seconds to return
        self._metadata_flush_seconds = metadata_flush_seconds
        self._flush_due = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __enter__(self) -> Heartbeat:
        self.started = time.monotonic()
        _beats().add(self, (self, False), self.next_beat())
        return self

    def metadata_changed(self) -> None:
        """The run's metadata changed: store it within ``metadata_flush_seconds`` unless a write takes it first."""
        if not self._flush_due and not self.stopped:
            self._flush_due = True
            _beats().add(self, (self, True), time.monotonic() + self._metadata_flush_seconds)

    def flush(self) -> None:
        """Store the metadata noted since the attempt's last write (a long step's progress)."""
        self._flush_due = False
        try:
            self._store.run_fields_store(self._claim)
        except RunInterrupted:
            self._ctx.interrupted = "the run was canceled or its lease was taken over"
        except Exception:  # the database may be restarting: the attempt's next write carries it
            logger.warning("storing the metadata of %s failed; its next write carries it", self._claim.run_id)

    def __exit__(self, *exc: object) -> None:
        self.stopped = True
        _beats().discard(self)

    def next_beat(self) -> float:
        """Return when (monotonic seconds) this heartbeat next renews the lease or times the run out."""
        if self.stopping:
            return time.monotonic() + self._grace
        wait = self._interval
        if self._claim.max_duration is not None:
            left = self._claim.max_duration - self._claim.executed_seconds - self.elapsed()
            wait = max(0.0, min(wait, left))
        return time.monotonic() + wait

    def beat(self) -> bool:
        """Renew the lease, or time the run out; return whether to beat again.

        An interrupted attempt (timed out, canceled, taken over) stops at its next step. If its
        code has not returned ``grace`` seconds later (a sleep, a socket read, C code), the
        ``hard_stop`` the worker gave is called: a process that runs one attempt at a time exits,
        and its pool starts a fresh one, so the slot is free again.
        """
        if self.stopping:
            self._hard_stop()
            return False
        max_duration = self._claim.max_duration
        if max_duration is not None and self._claim.executed_seconds + self.elapsed() >= max_duration:
            if self._store.run_time_out(self._claim, elapsed=self.elapsed()):
                self.timed_out = True
            self._ctx.interrupted = f"the run exceeded its max_duration of {max_duration:g}s"
            return self._interrupted()
        try:
            if not self._store.lease_renew(self._claim):
                self._ctx.interrupted = "the run was canceled or its lease was taken over"
                return self._interrupted()
        except Exception:  # the database may be restarting; the lease has slack
            logger.warning("lease renewal for %s failed; will try again", self._claim.run_id)
        return True

    def _interrupted(self) -> bool:
        self.stopping = self._hard_stop is not None
        return self.stopping


def _beats_act(due: list[tuple[Heartbeat, bool]]) -> None:
    """Beat (or flush the metadata of) each heartbeat due, then release the thread's database connection."""
    for heartbeat, flush in due:
        if heartbeat.stopped:
            continue
        if flush:
            heartbeat.flush()
        elif heartbeat.beat() and not heartbeat.stopped:
            _beats().add(heartbeat, (heartbeat, False), heartbeat.next_beat())
    for release in {id(h.on_thread_exit): h.on_thread_exit for h, _ in due if h.on_thread_exit}.values():
        release()


# The heartbeat thread of this process, started on first use: an attempt that starts wakes no
# thread, since its first beat comes after the one awaited.
_beats: PerProcess[Deadlines[tuple[Heartbeat, bool]]] = PerProcess(lambda: Deadlines("stepwise-heartbeats", _beats_act))


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
    hard_stop: Callable[[], None] | None = None,
    max_metadata_bytes: int = 64 * 1024,
    metadata_flush_seconds: float = 1.0,
    claimed: Claim | None = None,
) -> AttemptOutcome | None:
    """Claim ``run_id`` and run one attempt of it; None if the run could not be claimed.

    ``claimed``: the run's claim, made already (by the statement that ended the attempt before).
    The attempt's span ends before its outcome is written, so the store records it with the
    outcome: whoever sees the run finished also sees its spans.
    """
    claim = claimed if claimed is not None else store.claim(run_id, worker_id)
    if claim is None:
        return None

    def ended(result: str) -> AttemptOutcome:
        return AttemptOutcome(run_id, claim.attempt_number, result, claim.queue_limited)

    executable = lookup(claim.task_id)
    ctx = RunContext(store=store, claim=claim, max_output_bytes=max_output_bytes,
                     max_metadata_bytes=max_metadata_bytes, env_loader=env_loader)
    if executable is None:
        error = error_describe(TaskNotRegistered(f"no task '{claim.task_id}' is registered on worker {worker_id}"))
        store.run_fail(claim, error=error, retry_delay=None, elapsed=0.0)
        return ended("failed")
    if executable.version_hash != claim.version_hash:
        store.version_mismatch_note(claim, worker_hash=executable.version_hash)

    pii_hook_set(run_id, executable.redact)
    token = current_context.set(ctx)
    span = attempt_span_start(claim)
    span_token = otel_context.attach(trace.set_span_in_context(span))

    # The attempt's row may hold its span, if the row names the version the span does.
    same_version = executable.version_hash == claim.version_hash

    def settle(result: str, error: dict[str, Any] | None = None, retry_delay: float | None = None) -> str:
        return attempt_span_end(span, result=result, error=error, retry_delay=retry_delay,
                                claim=claim if same_version else None)

    # The attempt's span ends before the run is suspended, so the suspension stores it under the
    # attempt's lease, which the suspension gives up.
    ctx.before_suspend = lambda: settle("suspended")

    heartbeat = Heartbeat(
        store=store, claim=claim, ctx=ctx, interval=heartbeat_interval, on_thread_exit=on_thread_exit,
        hard_stop=hard_stop, metadata_flush_seconds=metadata_flush_seconds,
    )
    ctx.elapsed = heartbeat.elapsed
    ctx.on_metadata = heartbeat.metadata_changed
    hooks = HookRunner(executable.hooks, ctx=ctx, store=store)
    policy = RetryPolicy.from_dict(claim.retry) if claim.retry else executable.retry

    def interrupted() -> AttemptOutcome:
        # The outcome is stored already (by the heartbeat, a cancel): the end hooks run at most once.
        if executable.hooks.has_end_hooks():
            status = "TIMED_OUT" if heartbeat.timed_out else store.run_status(claim)
            if status in ("TIMED_OUT", "CANCELED"):
                error = {"type": "TimedOut", "message": ctx.interrupted or "", "traceback": ""}
                hooks.ended(RunResult(status, error=error if status == "TIMED_OUT" else None), record=False)
        return ended("interrupted")

    try:
        with heartbeat:
            try:
                with hooks.around_attempt():
                    hooks.start()
                    output = user_call(executable.fn, claim.payload, ctx)
                ctx.check_all_replayed()
                output = checkpoint_encode(output, where="the task's return value", max_bytes=max_output_bytes)
                ctx.check_interrupted()
            except RunInterrupted:
                return interrupted()
            except RunSuspended:
                return ended("suspended")
            except Exception as exc:
                if heartbeat.timed_out or ctx.interrupted:
                    return interrupted()
                # Resumes after waits are attempts too; only failures count against the retry policy.
                failures = claim.failed_attempts + 1
                policy_delay = policy.delay_after(failures)
                try:
                    decision = hooks.decide(exc, permanent=is_permanent(exc), policy_delay=policy_delay,
                                            attempts_left=failures < policy.max_attempts)
                except Exception as wrong:  # catch_error itself failed: the run fails with that error
                    wrong.__cause__ = wrong.__cause__ or exc
                    decision, exc = ErrorDecision.fail(), wrong
                if decision.action == "succeed":
                    output = checkpoint_encode(decision.output, where="the output catch_error gave",
                                               max_bytes=max_output_bytes)
                else:
                    retry_delay = decision.delay if decision.action == "retry" else None
                    result = "failed" if retry_delay is None else "retrying"
                    error = ctx.describe_error(exc)
                    if retry_delay is None:
                        hooks.ended(RunResult("FAILED", error=error))
                    settle(result, error, retry_delay)
                    store.run_fail(claim, error=error, retry_delay=retry_delay, elapsed=heartbeat.elapsed())
                    return ended(result)
            hooks.ended(RunResult("COMPLETED", output=output))
            span_id = settle("completed")
            store.run_complete(claim, output=output, elapsed=heartbeat.elapsed(), span_id=span_id)
            return ended("completed")
    except RunInterrupted:
        return ended("interrupted")
    finally:
        settle("interrupted")  # a no-op when the span already ended
        otel_context.detach(span_token)
        current_context.reset(token)
        sensitive_forget(run_id)
