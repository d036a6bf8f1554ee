"""End an attempt: the one write every way out of EXECUTING shares."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from stepwise.runs.models import Attempt
from stepwise.runs.statuses import AttemptStatus


def attempt_end(
    *,
    run_id: str,
    status: str,
    number: int | None = None,
    error: dict[str, Any] | None = None,
    retry_delay: float | None = None,
    at: datetime | None = None,
    span_id: str = "",
) -> int:
    """End the run's executing attempt (attempt ``number``, or whichever executes); return how many ended.

    ``span_id``: the attempt's span, when its row holds it (stepwise.runs.engine.spans.attempt_span_end).
    """
    attempts = Attempt.objects.filter(run_id=run_id, status=AttemptStatus.EXECUTING)
    if number is not None:
        attempts = attempts.filter(number=number)
    return attempts.update(status=status, error=error, retry_delay=retry_delay, finished_at=at or timezone.now(),
                           span_id=span_id)
