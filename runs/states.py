"""The run state machine: the allowed transitions, as data, and the one function that moves a run.

What a final status sets off (a parent's waitpoint, the run span's end, the queue's next run)
happens where runs finish (``stepwise.runs.lifecycle``), not here.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.events import event_append
from stepwise.runs.models import Run
from stepwise.runs.statuses import FINAL_STATUSES, RunStatus

TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    RunStatus.DELAYED: frozenset({RunStatus.QUEUED, RunStatus.EXPIRED, RunStatus.CANCELED}),
    # QUEUED -> FAILED: a pinned run that no worker of its version took within the grace period.
    RunStatus.QUEUED: frozenset({RunStatus.EXECUTING, RunStatus.EXPIRED, RunStatus.CANCELED, RunStatus.FAILED}),
    RunStatus.EXECUTING: frozenset(
        {
            RunStatus.COMPLETED,
            RunStatus.FAILED,
            RunStatus.CANCELED,
            RunStatus.TIMED_OUT,
            RunStatus.CRASHED,
            RunStatus.RETRYING,
            RunStatus.WAITING,
        }
    ),
    RunStatus.RETRYING: frozenset({RunStatus.QUEUED, RunStatus.CANCELED}),
    RunStatus.WAITING: frozenset({RunStatus.QUEUED, RunStatus.CANCELED}),
}
for _final in FINAL_STATUSES:
    TRANSITIONS[_final] = frozenset()


class TransitionNotAllowed(StepwiseError):
    """The state machine has no edge between these statuses."""


class TransitionRefused(StepwiseError):
    """The run was not in an expected status (or its lease changed), so nothing was written."""

    def __init__(self, run_id: str, to: str, current: str | None) -> None:
        self.run_id = run_id
        self.to = to
        self.current = current
        super().__init__(f"run {run_id} cannot move to {to}: it is {current or 'missing'}")


def finished_fields(at: datetime) -> dict[str, Any]:
    """Return what reaching a final status writes on the run row: its end, and no lease any more."""
    return {"finished_at": at, "lease_token": None, "lease_expires_at": None}


def check_edges(expected_from: Iterable[str], to: str) -> list[RunStatus]:
    """Return the expected statuses after checking each has an edge to ``to``."""
    sources = [RunStatus(s) for s in expected_from]
    for source in sources:
        if RunStatus(to) not in TRANSITIONS[source]:
            raise TransitionNotAllowed(f"{source} -> {to} is not a run transition")
    return sources


def run_transition(
    *,
    run_id: str,
    to: str,
    expected_from: Iterable[str],
    expected_token: str | None = None,
    event_data: dict[str, Any] | None = None,
    **fields: Any,
):
    """Move a run to ``to`` if it is in ``expected_from`` (and holds ``expected_token``); raise if not.

    The UPDATE and its RunEvent are written in one transaction; the event is
    broadcast after commit.
    """
    sources = check_edges(expected_from, to)
    now = timezone.now()
    with transaction.atomic():
        current = (
            # FOR NO KEY UPDATE: foreign-key checks of rows that reference the run (spans, events) need not wait.
            Run.objects.select_for_update(no_key=True)
            .filter(id=run_id)
            .values_list("status", "lease_token")
            .first()
        )
        if current is None:
            raise TransitionRefused(run_id, to, None)
        status, token = current
        if status not in sources or (expected_token is not None and token != expected_token):
            raise TransitionRefused(run_id, to, status)
        if RunStatus(to) in FINAL_STATUSES:
            fields = {**finished_fields(now), **fields}
        changed = (
            Run.objects.filter(id=run_id, status=status).update(status=to, updated_at=now, **fields)
        )
        if changed != 1:
            raise TransitionRefused(run_id, to, status)
        event_append(
            run_id=run_id,
            type="run.status",
            data={"from": status, "to": to, **(event_data or {})},
        )
    return status
