"""Every status, kind and scope enum of runs, attempts, steps, waitpoints and spans; imports nothing of ours.

The bottom of the stack: models, the state machine, the engine's store and the console may
all import it.
"""
from __future__ import annotations

from django.db import models


class RunStatus(models.TextChoices):
    # Waiting for its delay or date before it may be queued.
    DELAYED = "DELAYED", "Delayed"
    # Ready to run; a worker will claim it when the queue has room.
    QUEUED = "QUEUED", "Queued"
    # Claimed by a worker holding a lease.
    EXECUTING = "EXECUTING", "Executing"
    # An attempt failed; the next one is due at next_attempt_at.
    RETRYING = "RETRYING", "Retrying"
    # Paused on a waitpoint; holds no worker.
    WAITING = "WAITING", "Waiting"
    # Finished with an output.
    COMPLETED = "COMPLETED", "Completed"
    # Finished with an error after its last attempt, or a permanent error.
    FAILED = "FAILED", "Failed"
    # Stopped by a user or a parent.
    CANCELED = "CANCELED", "Canceled"
    # Ran longer than its max_duration.
    TIMED_OUT = "TIMED_OUT", "Timed out"
    # Its workers kept dying; the reason is recorded.
    CRASHED = "CRASHED", "Crashed"
    # Its TTL passed before it started.
    EXPIRED = "EXPIRED", "Expired"

    @property
    def is_finished(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.FAILED,
        RunStatus.CANCELED,
        RunStatus.TIMED_OUT,
        RunStatus.CRASHED,
        RunStatus.EXPIRED,
    }
)
ACTIVE_STATUSES = frozenset(set(RunStatus) - FINAL_STATUSES)


class IdempotencyKeyScope(models.TextChoices):
    # The key as given is unique per task and environment.
    GLOBAL = "global", "Global"
    # The key is unique within the parent run: each parent that triggers it gets its own child.
    RUN = "run", "Run"
    # The key is unique within the parent run's attempt: a retry of the parent triggers anew.
    ATTEMPT = "attempt", "Attempt"


class VersionPolicy(models.TextChoices):
    """Where a run may execute, given the version of its task's code it was triggered on."""

    # Only on a worker holding that version; the run waits for one, and fails after the grace period.
    PIN = "pin", "Pin"
    # On whichever worker takes it, with that worker's code; the version that ran is recorded.
    LATEST = "latest", "Latest"


class AttemptStatus(models.TextChoices):
    # A worker is running it.
    EXECUTING = "EXECUTING", "Executing"
    # The task returned.
    COMPLETED = "COMPLETED", "Completed"
    # The task raised.
    FAILED = "FAILED", "Failed"
    # The worker died or lost its lease.
    CRASHED = "CRASHED", "Crashed"
    # The run was canceled while this attempt ran.
    CANCELED = "CANCELED", "Canceled"
    # The run exceeded max_duration during this attempt.
    TIMED_OUT = "TIMED_OUT", "Timed out"
    # The run reached a pending waitpoint and released its worker.
    SUSPENDED = "SUSPENDED", "Suspended"


class StepStatus(models.TextChoices):
    # The step returned; its output is replayed by later attempts.
    COMPLETED = "COMPLETED", "Completed"
    # The step raised a permanent error; replays re-raise it.
    FAILED = "FAILED", "Failed"


class WaitpointKind(models.TextChoices):
    # Resume after a number of seconds.
    DURATION = "DURATION", "Duration"
    # Resume at a date.
    DATE = "DATE", "Date"
    # Resume when a matching event is sent.
    EVENT = "EVENT", "Event"
    # Resume when a person or a system completes the token.
    TOKEN = "TOKEN", "Token"
    # Resume when child runs finish.
    CHILDREN = "CHILDREN", "Child runs"


class WaitpointStatus(models.TextChoices):
    # Not resolved yet.
    PENDING = "PENDING", "Pending"
    # Resolved with an output.
    COMPLETED = "COMPLETED", "Completed"
    # Its timeout passed first.
    TIMED_OUT = "TIMED_OUT", "Timed out"
    # Its run was canceled before it resolved.
    CANCELED = "CANCELED", "Canceled"


class SpanKind(models.TextChoices):
    # The whole run, from trigger to its final status.
    RUN = "run", "Run"
    # One attempt of the run on a worker.
    ATTEMPT = "attempt", "Attempt"
    # One durable step, executed or replayed.
    STEP = "step", "Step"
    # A wait on a waitpoint.
    WAIT = "wait", "Wait"
    # A span the task's own code opened with the OpenTelemetry API.
    USER = "user", "User"


class SpanStatus(models.TextChoices):
    # Nothing was said about success.
    UNSET = "UNSET", "Unset"
    # The work succeeded.
    OK = "OK", "OK"
    # The work failed.
    ERROR = "ERROR", "Error"


def run_span_result(status: str) -> tuple[SpanStatus, str]:
    """Return the status and message a run's root span ends with when the run reaches ``status``."""
    if status == RunStatus.COMPLETED:
        return SpanStatus.OK, ""
    return SpanStatus.ERROR, str(status)
