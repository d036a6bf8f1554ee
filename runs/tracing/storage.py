"""Writes of spans: batches from the span processor, and the run's root span."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from runs.events import event_append
from runs.models import Run, Span, SpanKind
from runs.statements import span_ended_data
from runs.statuses import run_span_result


def spans_store(rows: list[dict[str, Any]]) -> int:
    """Store ended spans, and append one "spans.ended" event per run listing them; return how many were stored.

    One event per batch, not per span: a step would otherwise cost a third event (and publish).
    """
    by_run: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run_id"], []).append(row)
    existing = set(Run.objects.filter(id__in=by_run).values_list("id", flat=True))
    stored = 0
    with transaction.atomic():
        for run_id in sorted(existing):  # in id order, as the firing of due waits locks runs
            run_rows = by_run[run_id]
            Span.objects.bulk_create([Span(**row) for row in run_rows], ignore_conflicts=True)
            stored += len(run_rows)
            event_append(run_id=run_id, type="spans.ended", data={"spans": [span_ended_data(r) for r in run_rows]})
    return stored


def run_span_build(*, run: Run, parent_span_id: str = "") -> Span:
    """Return the open root span of a new run, unsaved: the trigger stores it with the run."""
    return Span(
        run=run,
        trace_id=run.trace_id,
        span_id=run.span_id,
        parent_span_id=parent_span_id,
        name=f"run {run.task_id}",
        kind=SpanKind.RUN,
        attributes={
            "stepwise.run_id": run.id,
            "stepwise.task_id": run.task_id,
            "stepwise.queue": run.queue,
            "stepwise.tags": list(run.tags),
        },
        started_at=run.created_at,
    )


def run_span_end(*, run_id: str, status: str, at: datetime) -> bool:
    """End a run's root span when the run reaches a final status; tell whether it was open."""
    span_status, message = run_span_result(status)
    return bool(
        Span.objects.filter(run_id=run_id, kind=SpanKind.RUN, ended_at__isnull=True).update(
            ended_at=at, status=span_status, status_message=message
        )
    )
