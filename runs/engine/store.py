"""The storage interface the engine needs, and the value objects that cross it."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from stepwise.runs.engine.waits import WaitpointState, WaitSpec


@dataclass(frozen=True)
class RecordedStep:
    """A step result as stored: replayed by every later attempt."""

    position: int
    key: str
    name: str
    status: str  # "COMPLETED" or "FAILED"
    output: Any = None
    error: dict[str, Any] | None = None
    kind: str = "step"
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The step's span, stored with the step instead of on its own (hex ids; empty: it has a Span row).
    span_id: str = ""
    parent_span_id: str = ""


@dataclass(frozen=True)
class Claim:
    """A run a worker now holds: the fencing token guards every write it makes."""

    run_id: str
    task_id: str
    payload: Any
    attempt_number: int
    lease_token: str
    worker_id: str
    version_hash: str
    environment: str
    max_duration: float | None
    executed_seconds: float
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    steps: tuple[RecordedStep, ...] = ()
    failed_attempts: int = 0
    trace_id: str = ""  # the run's trace, and its root span, which every attempt's spans join
    span_id: str = ""
    queue: str = ""
    queue_limited: bool = True  # a limited or paused queue: ending the attempt hands the slot over
    parent_waitpoint_id: str | None = None  # a parent waits for this run: its end resolves that waitpoint
    # Waitpoints that resolved while the run waited, by key, whose wait no step records yet.
    resolved_waits: dict[str, WaitpointState] = field(default_factory=dict)
    # The place in the code of the last metadata change the stored metadata holds (see RunMetadata).
    metadata_cursor: tuple[int, int] | None = None
    retry: dict[str, Any] | None = None  # the trigger's retry policy, overriding the task's
    hooks_done: tuple[str, ...] = ()  # once-per-run hooks already run and stored
    idempotency_key: str | None = None  # as the trigger gave it, with its scope
    idempotency_key_scope: str | None = None


@dataclass(frozen=True)
class RunInfo:
    """What ``ctx.run`` tells a task about its run.

    Example::

        if ctx.run.idempotency_key_scope == "run":
            ctx.logger.info("deduplicated per parent", key=ctx.run.idempotency_key)
    """

    id: str
    idempotency_key: str | None  # as the trigger gave it; None when it gave none
    idempotency_key_scope: str | None  # "global", "run" or "attempt"; None without a key


@dataclass(frozen=True)
class LogEntry:
    """One log line written inside a run."""

    level: str
    message: str
    logger: str
    attributes: dict[str, Any]
    span_id: str
    at: datetime


class RunStore(Protocol):
    """Everything the engine reads and writes, each write conditional on the claim's token."""

    def claim(self, run_id: str, worker_id: str) -> Claim | None:
        """Take a QUEUED run if its queue has room; None if someone else has it or it must wait."""

    def step_begin(self, claim: Claim, *, key: str, name: str, position: int) -> None:
        """Check the run is still ours and executing, and note the step started; else raise RunInterrupted."""

    def step_record(self, claim: Claim, step: RecordedStep) -> None:
        """Store a finished step; raise RunInterrupted if the claim is no longer valid."""

    def step_note(self, claim: Claim, step: RecordedStep) -> None:
        """Store a step whose result is durable already (a resolved wait) with the attempt's next write.

        Until then a new attempt reads the same result where it is kept (the waitpoint).
        """

    def metadata_note(self, claim: Claim, *, metadata: dict[str, Any], cursor: tuple[int, int] | None) -> None:
        """Keep the run's changed metadata to store with the attempt's next write (or flush)."""

    def hook_note(self, claim: Claim, name: str) -> None:
        """Note that a once-per-run hook ran: stored with the attempt's next write (or ``run_fields_store``)."""

    def run_fields_store(self, claim: Claim) -> None:
        """Store the noted metadata, hooks and waits now; raise RunInterrupted if the claim is no longer valid."""

    def run_status(self, claim: Claim) -> str | None:
        """Return the run's status now (read when an attempt was interrupted)."""

    def lease_renew(self, claim: Claim) -> bool:
        """Extend the lease; False if the run is no longer ours or no longer executing."""

    def version_mismatch_note(self, claim: Claim, *, worker_hash: str) -> None:
        """Record that the worker's code differs from the version the run is pinned to."""

    def run_complete(self, claim: Claim, *, output: Any, elapsed: float, span_id: str = "") -> None:
        """Finish the run with its output; ``span_id``: the attempt's span, which its row is to hold."""

    def run_fail(
        self, claim: Claim, *, error: dict[str, Any], retry_delay: float | None, elapsed: float
    ) -> None:
        """End this attempt with an error; retry after ``retry_delay`` seconds, or fail the run if None."""

    def run_time_out(self, claim: Claim, *, elapsed: float) -> bool:
        """Move the run to TIMED_OUT; False if it was no longer ours."""

    def waitpoint_get(
        self, claim: Claim, *, key: str | None = None, waitpoint_id: str | None = None
    ) -> WaitpointState | None:
        """Return the run's waitpoint with this key (or id), or None."""

    def waitpoint_create(self, claim: Claim, *, key: str, position: int, spec: WaitSpec) -> WaitpointState:
        """Create a waitpoint (and its child runs); it may come back resolved already."""

    def run_suspend(self, claim: Claim, *, waitpoint_id: str, elapsed: float) -> bool:
        """Move the run to WAITING on a pending waitpoint; False if it was resolved meanwhile."""

    def stream_write(
        self, claim: Claim, *, stream: str, key: str, first_index: int, chunks: list[Any], completed: bool = False,
        step: RecordedStep | None = None,
    ) -> None:
        """Store chunks of a run's stream as "stream.chunk" events (and its end, and its step); fenced.

        Raises RunInterrupted if the claim is no longer valid; nothing is stored then.
        """

    def stream_read(self, claim: Claim, *, key: str, attempt: int) -> list[Any]:
        """Return the chunks an attempt stored for a stream, in order (a recorded stream's replay)."""

    def log_append(self, claim: Claim, entry: LogEntry) -> None:
        """Store a log line of the run as a "log" event; raise RunInterrupted if the claim is no longer valid."""
