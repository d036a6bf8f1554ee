"""Writes of spans: batches from the span processor, and the root span rows of older runs."""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction

from stepwise.runs.engine.errors import RunInterrupted
from stepwise.runs.events import event_append, events_append_fenced
from stepwise.runs.models import Run, Span, SpanKind
from stepwise.runs.statements import span_ended_data, span_fields
from stepwise.runs.statuses import run_span_result

logger = logging.getLogger(__name__)


def spans_store(rows: list[dict[str, Any]]) -> int:
    """Store ended spans, and append one "spans.ended" event per run listing them; return how many were stored.

    Spans an attempt opened carry its lease token and are stored under it, like its steps: those
    of an attempt that no longer holds its run (paused past its lease, taken over) are dropped.
    One event per batch, not per span: a step would otherwise cost a third event (and publish).
    """
    by_run: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault((row["run_id"], row.get("lease_token")), []).append(row)
    existing = set(Run.objects.filter(id__in={run_id for run_id, _ in by_run}).values_list("id", flat=True))
    stored = 0
    with transaction.atomic():
        # In id order, as the firing of due waits locks runs.
        for (run_id, lease_token), run_rows in sorted(by_run.items(), key=lambda item: (item[0][0], item[0][1] or "")):
            if run_id not in existing:
                continue
            spans = [span_fields(row) for row in run_rows]
            data = {"spans": [span_ended_data(r) for r in spans]}
            if lease_token is None:
                Span.objects.bulk_create([Span(**row) for row in spans], ignore_conflicts=True)
                event_append(run_id=run_id, type="spans.ended", data=data)
            else:
                try:
                    events_append_fenced(run_id=run_id, lease_token=lease_token, events=[("spans.ended", data)],
                                         spans=spans)
                except RunInterrupted:
                    logger.info("dropped %d spans of run %s: their attempt no longer holds it", len(spans), run_id)
                    continue
            stored += len(spans)
    return stored


def run_span_end(*, run_id: str, status: str, at: datetime) -> bool:
    """End the root span row of a run triggered before 0016 as the run reaches a final status; tell whether it was open.

    A newer run's root span is its run row (stepwise.runs.selectors.run_span_of): it ends with the run.
    """
    span_status, message = run_span_result(status)
    return bool(
        Span.objects.filter(run_id=run_id, kind=SpanKind.RUN, ended_at__isnull=True).update(
            ended_at=at, status=span_status, status_message=message
        )
    )
