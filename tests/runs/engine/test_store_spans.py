"""Spans an attempt hands to the store are stored with the write that takes them."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runs.engine.waits import WaitSpec
from runs.models import Span
from runs.store import OrmRunStore
from runs.triggers import run_trigger
from runs.waits import waitpoint_complete

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _attempts_run_here_only(processes):
    """Stop the session's workers and scheduler: this process alone claims the run."""


def _span_row(run_id: str, trace_id: str, name: str) -> dict:
    now = timezone.now()
    return {
        "run_id": run_id, "trace_id": trace_id, "span_id": "00000000000000a1", "parent_span_id": "",
        "name": name, "kind": "user", "status": "OK", "status_message": "", "attributes": {}, "events": [],
        "started_at": now - timedelta(milliseconds=5), "ended_at": now,
    }


def test_spans_handed_over_when_the_wait_resolved_meanwhile_are_kept():
    run, _ = run_trigger(task_id="test-wait-token", payload={})
    handed: list[dict] = []
    store = OrmRunStore(span_source=lambda run_id: [handed.pop() for _ in list(handed)])
    claim = store.claim(run.id, "worker-under-test")
    token = store.waitpoint_create(claim, key="approval", position=1, spec=WaitSpec(kind="TOKEN"))
    waitpoint_complete(waitpoint_id=token.id, output={"ok": True})  # resolved before the run suspends
    handed.append(_span_row(run.id, claim.trace_id, "work before the wait"))

    assert store.run_suspend(claim, waitpoint_id=token.id, elapsed=0.1) is False

    assert not handed, "the store took the span"
    assert Span.objects.filter(run_id=run.id, name="work before the wait").exists()
