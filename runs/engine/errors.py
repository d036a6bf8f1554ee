"""Errors of the engine and the SDK, each with a message a user can act on."""
from __future__ import annotations

import os
import traceback
from typing import Any

# A stored error names at most this many causes; its traceback carries the whole chain.
MAX_CAUSES = 5


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


class InvalidJson(StepwiseError, ValueError):
    """JSON text that cannot be stored: malformed, NaN or Infinity, a NUL character, too deep or too large a number."""


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


def _type_name(exc: BaseException) -> str:
    cls = type(exc)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not hide the failure it describes
        return f"<{type(exc).__name__}: str() failed>"


def _raised_at(exc: BaseException) -> str | None:
    """Return ``file:line in function`` of the frame that raised ``exc`` (None if it never was)."""
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    path = code.co_filename
    here = os.getcwd() + os.sep
    return f"{path.removeprefix(here)}:{tb.tb_lineno} in {code.co_name}"


def _cause_of(exc: BaseException) -> BaseException | None:
    """Return what ``exc`` was raised from, or was raised while handling, as its traceback tells it."""
    if exc.__cause__ is not None:
        return exc.__cause__
    return None if exc.__suppress_context__ else exc.__context__


def _causes(exc: BaseException) -> tuple[list[dict[str, Any]], int]:
    """Return the first causes of ``exc`` (nearest first) and how many more there are."""
    causes: list[dict[str, Any]] = []
    left_off = 0
    seen = {id(exc)}
    cause = _cause_of(exc)
    # A cycle (an exception set as the context of its own cause) ends the chain where it closes.
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if len(causes) < MAX_CAUSES:
            causes.append({"type": _type_name(cause), "message": _message(cause), "where": _raised_at(cause)})
        else:
            left_off += 1
        cause = _cause_of(cause)
    return causes, left_off


def error_describe(exc: BaseException) -> dict[str, Any]:
    """Return the stored form of an exception: type, message, where raised, causes and traceback."""
    causes, left_off = _causes(exc)
    return {
        "type": _type_name(exc),
        "message": _message(exc),
        "where": _raised_at(exc),
        "causes": causes,
        **({"causes_left_off": left_off} if left_off else {}),
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
    }


def error_summary(error: dict[str, Any]) -> dict[str, Any]:
    """Return what an event says of a stored error: its type, message and causes, without the traceback."""
    return {k: error[k] for k in ("type", "message", "causes", "causes_left_off") if error.get(k)}


def error_text(error: dict[str, Any]) -> str:
    """Return a stored error as one line: the error, then each cause after ``<- caused by``."""
    parts = [f"{error.get('type')}: {error.get('message')}"]
    parts += [f"{cause.get('type')}: {cause.get('message')}" for cause in error.get("causes") or []]
    text = "  <- caused by ".join(parts)
    if error.get("causes_left_off"):
        text += f"  <- ... {error['causes_left_off']} more"
    return text
