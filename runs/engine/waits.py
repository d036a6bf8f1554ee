"""Waits inside a run: what a run waits for, and what it gets back when it resumes."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from stepwise.runs.engine.errors import InvalidEventName

EVENT_NAME_MAX_LENGTH = 255
# Letters, digits and the separators of names like "invoice.paid", "orders/shipped" or "user:signup".
EVENT_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:/@+-]*$"


def event_name_check(name: Any) -> str:
    """Return ``name`` if it is a valid event name, else raise InvalidEventName saying why."""
    if not isinstance(name, str) or not 0 < len(name) <= EVENT_NAME_MAX_LENGTH:
        raise InvalidEventName(
            f"an event name must be a non-empty string of at most {EVENT_NAME_MAX_LENGTH} characters"
        )
    if not re.fullmatch(EVENT_NAME_PATTERN, name):
        raise InvalidEventName(
            f"event name {name!r} is invalid: use letters, digits and _ . : / @ + -, "
            "starting with a letter, a digit or _"
        )
    return name


class RunSuspended(BaseException):
    """Unwinds the task function when it reaches a pending waitpoint; the worker is freed.

    A BaseException, so that a task's own ``except Exception`` does not swallow it.
    """

    def __init__(self, waitpoint_id: str) -> None:
        self.waitpoint_id = waitpoint_id
        super().__init__(f"suspended on waitpoint {waitpoint_id}")


@dataclass(frozen=True)
class ChildSpec:
    """A child run to trigger together with its waitpoint."""

    task_id: str
    payload: Any
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WaitSpec:
    """What to wait for; ``resume_at`` is the date of a timer or the timeout of anything else."""

    kind: str  # DURATION | DATE | EVENT | TOKEN | CHILDREN
    resume_at: datetime | None = None
    event_name: str = ""
    event_filter: dict[str, Any] = field(default_factory=dict)
    lookback_seconds: float | None = None
    description: str = ""
    children: tuple[ChildSpec, ...] = ()
    waitpoint_id: str | None = None  # wait on a token created earlier with create_token


@dataclass(frozen=True)
class WaitpointState:
    """A waitpoint as the engine sees it."""

    id: str
    status: str  # PENDING | COMPLETED | TIMED_OUT | CANCELED
    output: Any = None
    created_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class WaitResult:
    """What a wait returns: ``ok`` is False when it timed out.

    Example::

        approval = wait.for_event("approval", timeout="7d", filter={"documentId": doc_id})
        if approval.ok and approval.output["approved"]:
            publish(doc_id)
    """

    ok: bool
    status: str
    output: Any = None
    waitpoint_id: str = ""

    @property
    def timed_out(self) -> bool:
        return self.status == "TIMED_OUT"

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "status": self.status, "output": self.output, "waitpoint_id": self.waitpoint_id}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WaitResult:
        return cls(ok=data["ok"], status=data["status"], output=data.get("output"), waitpoint_id=data["waitpoint_id"])

    @classmethod
    def from_state(cls, state: WaitpointState) -> WaitResult:
        return cls(ok=state.status == "COMPLETED", status=state.status, output=state.output, waitpoint_id=state.id)
