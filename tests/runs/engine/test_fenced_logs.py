"""A log line is written under the attempt's lease, like its steps: a worker that lost the run adds none."""
from __future__ import annotations

import logging

import pytest
from django.utils import timezone

from stepwise.runs.engine.context import RunContext, current_context
from stepwise.runs.engine.errors import RunInterrupted
from stepwise.runs.engine.logs import RunLogHandler
from stepwise.runs.engine.store import LogEntry
from stepwise.runs.models import Run, RunEvent
from stepwise.runs.store import OrmRunStore
from stepwise.runs.triggers import run_trigger

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _attempts_run_here_only(processes):
    """Stop the session's workers and scheduler: this process alone holds the run."""


def _logged(run_id: str) -> list[str]:
    return [e.data["message"] for e in RunEvent.objects.filter(run_id=run_id, type="log").order_by("seq")]


def test_log_lines_after_a_takeover_are_refused_and_never_stored():
    run, _ = run_trigger(task_id="test-noop", payload={})
    store = OrmRunStore()
    claim = store.claim(run.id, "worker-paused-later")
    entry = LogEntry(level="INFO", message="while it held the run", logger="shop", attributes={}, span_id="",
                     at=timezone.now())
    store.log_append(claim, entry)

    # Another worker took the run over (its lease expired while this one was paused).
    Run.objects.filter(id=run.id).update(lease_token="the-new-attempts-token")

    with pytest.raises(RunInterrupted):
        store.log_append(claim, entry)
    # Through the logging handler the refused line is dropped quietly: logging never fails a run.
    handler, token = RunLogHandler(), current_context.set(RunContext(store=store, claim=claim))
    try:
        handler.emit(logging.LogRecord("shop", logging.INFO, __file__, 1, "after the takeover", None, None))
    finally:
        current_context.reset(token)

    assert _logged(run.id) == ["while it held the run"]
