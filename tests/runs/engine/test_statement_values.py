"""The one-statement path stores exactly what Django's ORM would, whatever the values' types."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection

from stepwise.runs.models import Step
from stepwise.runs.statements import Write
from stepwise.runs.statuses import RunStatus, StepStatus
from stepwise.runs.triggers import run_trigger

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement path is PostgreSQL's"),
]

ROW_FIELDS = ("kind", "status", "output", "error", "attempt_number", "started_at", "finished_at", "name")


def _step(run_id: str, position: int, **values) -> Step:
    started = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    fields = {
        "run_id": run_id, "position": position, "key": f"k{position}", "name": "charge", "kind": "step",
        "status": StepStatus.COMPLETED, "output": None, "error": None, "attempt_number": 1,
        "started_at": started, "finished_at": started + timedelta(milliseconds=3), **values,
    }
    return Step(**fields)


def _stored(run_id: str, position: int) -> dict:
    return Step.objects.filter(run_id=run_id, position=position).values(*ROW_FIELDS).get()


@pytest.mark.parametrize(
    "values",
    [
        {"output": {"total": 42, "items": [1, "two", None, {"x": 1.5}], "ok": True}},
        {"output": "a string is JSON too", "status": "COMPLETED"},
        {"output": 0, "error": {"type": "ValueError", "message": "no"}, "status": StepStatus.FAILED},
        {"output": [], "attempt_number": 3, "kind": "trigger"},
        {"output": False, "name": "émoji ✓"},
        # Values Django converts: a tuple in JSON, an enum member, a date in another time zone.
        {"output": (1, "two"), "status": RunStatus.COMPLETED},
        {"started_at": datetime(2026, 12, 4, 12, 0, tzinfo=timezone(timedelta(hours=2)))},
    ],
)
def test_a_row_written_in_one_statement_reads_back_as_the_orm_stores_it(values):
    run, _ = run_trigger(task_id="test-noop", payload={})
    _step(run.id, 1, **values).save()
    write = Write()
    write.add("source", "SELECT 1")
    write.row("step", _step(run.id, 2, **values), "source")
    write.execute("SELECT 1")
    assert _stored(run.id, 2) == _stored(run.id, 1)
