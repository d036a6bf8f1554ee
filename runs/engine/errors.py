"""Errors of the engine and the SDK, each with a message a user can act on."""
from __future__ import annotations

import traceback
from typing import Any


class StepwiseError(Exception):
    """Base class of every error Stepwise raises on purpose."""


class PermanentError(StepwiseError):
    """An error that retrying cannot fix: the run fails at once."""


class AbortRun(PermanentError):
    """Raise inside a task to fail the run now, without further attempts.

    Example::

        if not order["items"]:
            raise AbortRun("order has no items")
    """


class CheckpointSerializationError(PermanentError):
    """A value crossing a checkpoint is not JSON-serialisable."""


class PayloadTooLarge(PermanentError):
    """A payload or output is over the configured size limit."""


class InvalidMetadata(PermanentError, ValueError):
    """A metadata change is wrong: a bad key, a value that is not JSON, or metadata over its size limit."""


class InvalidEventName(PermanentError):
    """An event name is empty, too long, or holds characters event names may not use."""


class NonDeterminismError(PermanentError):
    """The task called steps in a different order than the run recorded."""


class StepFailedError(PermanentError):
    """Replays the permanent error a step recorded in an earlier attempt."""

    def __init__(self, key: str, error: dict[str, Any]) -> None:
        self.key = key
        self.error = error
        super().__init__(f"step '{key}' failed: {error.get('type')}: {error.get('message')}")


class TaskNotRegistered(PermanentError):
    """The worker has no task with the run's task id."""


class RunInterrupted(StepwiseError):
    """This attempt may not go on: the run was canceled, timed out, or its lease taken over."""


class StoreUnavailable(RunInterrupted):
    """The run's store (the database) could not be reached: the attempt stops where it is.

    Nothing is recorded as the task's failure; the run's lease expires and the scheduler gives
    it a new attempt, which replays the steps recorded before the outage.
    """


def is_permanent(exc: BaseException) -> bool:
    """Tell whether an exception should fail the run without a retry."""
    if isinstance(exc, PermanentError):
        return True
    if type(exc).__name__ == "ValidationError" and type(exc).__module__.startswith("pydantic"):
        return True
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    # A 4xx answer means the request itself is wrong; 408 and 429 are worth another try.
    return isinstance(status, int) and 400 <= status < 500 and status not in (408, 429)


def error_describe(exc: BaseException) -> dict[str, Any]:
    """Return the stored form of an exception: type, message and traceback."""
    cls = type(exc)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return {
        "type": name,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(cls, exc, exc.__traceback__)),
    }
