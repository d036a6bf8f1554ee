"""Spans an attempt hands to the store are stored with the write that takes them, in batches."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import DatabaseError
from django.utils import timezone
from opentelemetry.sdk.trace import TracerProvider

from stepwise.runs.engine.spans import RUN_ID
from stepwise.runs.engine.store import RecordedStep
from stepwise.runs.engine.waits import WaitSpec
from stepwise.runs.models import RunEvent, Span
from stepwise.runs.store import OrmRunStore
from stepwise.runs.tracing.processor import DatabaseSpanProcessor
from stepwise.runs.tracing.storage import spans_store
from stepwise.runs.triggers import run_trigger
from stepwise.runs.waits import waitpoint_complete

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
    store = OrmRunStore(span_source=lambda run_id, everything=True: [handed.pop() for _ in list(handed)])
    claim = store.claim(run.id, "worker-under-test")
    token = store.waitpoint_create(claim, key="approval", position=1, spec=WaitSpec(kind="TOKEN"))
    waitpoint_complete(waitpoint_id=token.id, output={"ok": True})  # resolved before the run suspends
    handed.append(_span_row(run.id, claim.trace_id, "work before the wait"))

    assert store.run_suspend(claim, waitpoint_id=token.id, elapsed=0.1) is False

    assert not handed, "the store took the span"
    assert Span.objects.filter(run_id=run.id, name="work before the wait").exists()


def _quick_steps_with_spans(processor: DatabaseSpanProcessor, steps: int) -> tuple[str, list[int]]:
    """Run ``steps`` quick steps, each ending one span, then complete; return the run and spans per step event."""
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    run, _ = run_trigger(task_id="test-noop", payload={})
    store = OrmRunStore(span_source=processor.take)
    claim = store.claim(run.id, "worker-under-test")
    try:
        for position in range(1, steps + 1):
            with tracer.start_as_current_span(f"work {position}", attributes={RUN_ID: run.id}):
                pass
            now = timezone.now()
            store.step_record(claim, RecordedStep(position, f"s{position}", "s", "COMPLETED", position, None, "step",
                                                  now, now))
        store.run_complete(claim, output=None, elapsed=0.1)
    finally:
        provider.shutdown()
    events = RunEvent.objects.filter(run_id=run.id, type="step.completed").order_by("seq")
    return run.id, [len(e.data.get("span_ids", [])) for e in events]


def test_quick_steps_write_their_spans_in_batches_and_the_outcome_takes_the_rest():
    run_id, carried = _quick_steps_with_spans(DatabaseSpanProcessor(write=spans_store, batch=4, batch_age=3600,
                                                                    hold=3600), steps=10)

    assert carried == [0, 0, 0, 4, 0, 0, 0, 4, 0, 0]
    assert Span.objects.filter(run_id=run_id, kind="user").count() == 10
    [outcome] = RunEvent.objects.filter(run_id=run_id, type="run.status", data__to="COMPLETED")
    assert len(outcome.data["span_ids"]) == 2


def test_a_step_takes_spans_that_waited_long_enough_without_a_full_batch():
    _, carried = _quick_steps_with_spans(DatabaseSpanProcessor(write=spans_store, batch=1000, batch_age=0,
                                                               hold=3600), steps=3)
    assert carried == [1, 1, 1]


def test_a_run_takes_only_its_own_spans_in_order_and_a_failed_write_keeps_the_rest():
    written, failures = [], [DatabaseError("the database went away")]

    def write(rows):
        if failures:
            raise failures.pop()
        written.extend(row["name"] for row in rows)
        return len(rows)

    processor = DatabaseSpanProcessor(write=write, batch=5, batch_age=3600, hold=0, interval=3600)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    try:
        for i in range(4):
            for run_id in ("run_a", "run_b"):
                with tracer.start_as_current_span(f"{run_id} {i}", attributes={RUN_ID: run_id}):
                    pass

        assert [row["name"] for row in processor.take("run_a")] == ["run_a 0", "run_a 1", "run_a 2", "run_a 3"]
        assert processor.take("run_a") == []
        assert processor.take("run_b", everything=False) == [], "four spans are not a batch of five yet"

        assert processor.write_pending() is False
        assert written == []
        assert processor.write_pending() is True
        assert written == ["run_b 0", "run_b 1", "run_b 2", "run_b 3"]
        assert processor.take("run_b") == []
    finally:
        provider.shutdown()
