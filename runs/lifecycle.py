"""Where runs leave EXECUTING or finish: the one place that runs what that sets off.

A final status resolves the parent's waitpoint (once every sibling has ended) and ends the
run's root span; a run that leaves EXECUTING frees a slot of its queue, so the queue's next
runs are hinted after commit.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from stepwise.runs.attempts import attempt_end
from stepwise.runs.dispatch import queue_dispatch_on_commit
from stepwise.runs.states import run_transition
from stepwise.runs.statuses import FINAL_STATUSES, RunStatus
from stepwise.runs.tracing import setup as tracing_setup
from stepwise.runs.tracing.storage import run_span_end
from stepwise.runs.waits import waitpoints_on_run_finished

# Called with (run id, final status) inside the transaction that ends a run with no worker's outcome
# (canceled, expired, crashed, its lease lost for good): what a worker's hooks would have said.
_ended_without_worker: list[Callable[[str, str], None]] = []


def run_ended_without_worker_listen(listener: Callable[[str, str], None]) -> None:
    """Call ``listener(run_id, status)`` whenever a run reaches a final status that no worker's outcome wrote."""
    _ended_without_worker.append(listener)


def run_finished(*, run_id: str, status: str, at: datetime) -> None:
    """Run the effects of a run reaching a final status, inside the transaction that moved it."""
    waitpoints_on_run_finished(run_id)
    run_span_end(run_id=run_id, status=status, at=at)  # a run triggered before 0016 has a root span row
    run_span_export_on_commit(run_id)


def run_span_export_on_commit(run_id: str) -> None:
    """Export a finished run's root span over OTLP after commit, when an exporter is set up."""
    if tracing_setup.export_processor is not None:
        transaction.on_commit(lambda: tracing_setup.run_span_export(run_id), robust=True)


def run_settle(
    *,
    run_id: str,
    to: str,
    expected_from: Any,
    queue: str | None = None,
    attempt: dict[str, Any] | None = None,
    expected_token: str | None = None,
    event_data: dict[str, Any] | None = None,
    by_worker: bool = False,
    **fields: Any,
) -> str:
    """Move a run to ``to`` (compare-and-set), end its attempt, and run what the move sets off.

    ``attempt`` holds the arguments of ``attempt_end`` (its status, error...); ``queue`` is
    hinted after commit when the run held one of its slots; ``by_worker`` says a worker's outcome
    ends it (its hooks ran), so the listeners of runs ended without one are not called. Returns
    the status it left.
    """
    now = timezone.now()
    if RunStatus(to) in FINAL_STATUSES:
        fields.setdefault("finished_at", now)
    with transaction.atomic():
        previous = run_transition(
            run_id=run_id, to=to, expected_from=expected_from, expected_token=expected_token,
            event_data=event_data, **fields,
        )
        if attempt is not None:
            attempt_end(run_id=run_id, at=now, **attempt)
        if RunStatus(to) in FINAL_STATUSES:
            run_finished(run_id=run_id, status=to, at=fields["finished_at"])
            if not by_worker:
                for listener in _ended_without_worker:
                    listener(run_id, to)
        if queue and previous == RunStatus.EXECUTING:
            queue_dispatch_on_commit(queue, run_id=run_id)
    return previous
