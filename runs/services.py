"""Writes on existing runs: cancel (with its waitpoints and child runs) and replay."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.db import transaction

from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.lifecycle import run_settle
from stepwise.runs.models import Run, Waitpoint
from stepwise.runs.states import TransitionRefused
from stepwise.runs.statuses import ACTIVE_STATUSES, AttemptStatus, RunStatus, WaitpointStatus
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.runs.waits import waitpoints_cancel_for_run


class RunNotFound(StepwiseError):
    """No run has this id."""


class RunAlreadyFinished(StepwiseError):
    """The run reached a final status; it cannot change any more."""


def run_cancel(*, run_id: str, reason: str = "canceled by user") -> Run:
    """Cancel a run that has not finished, its pending waitpoints and its unfinished child runs.

    An executing attempt notices at its next heartbeat or step and stops.
    """
    with transaction.atomic():
        run = Run.objects.filter(id=run_id).only("queue").first()
        if run is None:
            raise RunNotFound(f"no run with id '{run_id}'")
        # Lock waitpoints before the run row: the order every waitpoint resolution takes.
        list(Waitpoint.objects.select_for_update(no_key=True).filter(run_id=run_id, status=WaitpointStatus.PENDING))
        try:
            run_settle(
                run_id=run_id,
                to=RunStatus.CANCELED,
                expected_from=ACTIVE_STATUSES,
                queue=run.queue,
                attempt={"status": AttemptStatus.CANCELED},
                event_data={"reason": reason},
                error={"type": "Canceled", "message": reason, "traceback": ""},
            )
        except TransitionRefused as exc:
            raise RunAlreadyFinished(f"run {run_id} is already {exc.current}; it cannot be canceled") from None
        waitpoints_cancel_for_run(run_id)
        for child_id in Run.objects.filter(parent_run_id=run_id).active().values_list("id", flat=True):
            run_cancel(run_id=child_id, reason=f"parent run {run_id} was canceled")
    return Run.objects.get(id=run_id)


def run_replay(*, run_id: str, payload: Any = ..., environment: str | None = None) -> Run:
    """Start a new run of the same task, linked to the original, with its payload or a new one."""
    original = Run.objects.filter(id=run_id).first()
    if original is None:
        raise RunNotFound(f"no run with id '{run_id}'")
    options = TriggerOptions(
        tags=list(original.tags),
        metadata=dict(original.metadata),
        queue=original.queue,
        concurrency_key=original.concurrency_key or None,
        priority=original.priority,
        environment=environment or original.environment_id,
        replayed_from_id=original.id,
    )
    new_payload = original.payload if payload is ... else payload
    run, _ = run_trigger(task_id=original.task_id, payload=new_payload, options=replace(options))
    return run


