"""Spans, logs, trace propagation, secrets masking and checkpoint state of runs on real workers."""
from __future__ import annotations

import json

import pytest

from stepwise.runs.ids import new_span_id, new_trace_id
from stepwise.runs.models import Attempt, Run, RunEvent, Span, Step
from stepwise.runs.selectors import run_checkpoint_state, run_spans
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import InvalidTrigger, TriggerOptions, run_trigger
from tests.engine_tasks import CANARY, third_step_flaky
from tests.processes import LOG_DIR
from tests.waiting import wait_finished


def trigger(task_id: str, payload=None, **options) -> str:
    run, _ = run_trigger(task_id=task_id, payload=payload or {}, options=TriggerOptions(**options))
    return run.id


def _by_id(spans: list[Span]) -> dict[str, Span]:
    return {s.span_id: s for s in spans}


def test_spans_of_a_run_with_retries_form_one_tree(live):
    run = wait_finished(trigger("test-traced"))
    assert run.status == RunStatus.COMPLETED and run.attempt_count == 2

    spans = run_spans(run_id=run.id)
    by_id = _by_id(spans)
    assert {s.trace_id for s in spans} == {run.trace_id}
    [root] = [s for s in spans if s.kind == "run"]
    assert root.span_id == run.span_id and root.parent_span_id == ""
    assert root.status == "OK" and root.ended_at == run.finished_at

    attempts = sorted((s for s in spans if s.kind == "attempt"), key=lambda s: s.attributes["stepwise.attempt"])
    assert [a.name for a in attempts] == ["attempt 1", "attempt 2"]
    assert all(a.parent_span_id == root.span_id for a in attempts)
    assert attempts[0].status == "ERROR" and attempts[1].status == "OK"
    assert attempts[0].attributes["stepwise.retry_delay"] == pytest.approx(0.1)
    assert "stepwise.retry_delay" not in attempts[1].attributes

    steps = [s for s in spans if s.kind == "step"]
    assert sorted((by_id[s.parent_span_id].name, s.name, s.attributes["stepwise.step.replayed"], s.status)
                  for s in steps) == [
        ("attempt 1", "step fetch", False, "OK"),
        ("attempt 1", "step save", False, "ERROR"),
        ("attempt 2", "step fetch", True, "OK"),
        ("attempt 2", "step save", False, "OK"),
    ]
    user = sorted(
        (by_id[by_id[s.parent_span_id].parent_span_id].name, by_id[s.parent_span_id].name, s.name)
        for s in spans
        if s.kind == "user"
    )
    assert user == [
        ("attempt 1", "step fetch", "http GET /items"),
        ("attempt 1", "step save", "db insert"),
        ("attempt 2", "step save", "db insert"),
    ]
    for span in spans:
        if span.parent_span_id:
            parent = by_id[span.parent_span_id]
            assert parent.started_at <= span.started_at <= span.ended_at <= parent.ended_at, span.name


def test_log_lines_are_span_events_and_run_events(live):
    run = wait_finished(trigger("test-traced"))

    logs = [e.data for e in RunEvent.objects.filter(run=run, type="log").order_by("seq")]
    assert [(log["level"], log["message"], log["attempt"]) for log in logs] == [
        ("INFO", "fetched items", 1),
        ("WARNING", "saving 3 items", 1),
        ("WARNING", "saving 3 items", 2),
        ("INFO", "done", 2),
    ]
    assert logs[0]["attributes"] == {"count": 3} and logs[3]["attributes"] == {"total": 6}
    assert logs[1]["logger"] == "shop.orders"

    by_id = _by_id(run_spans(run_id=run.id))
    http_span = by_id[logs[0]["span_id"]]
    assert http_span.name == "http GET /items"
    assert [e["attributes"]["log.message"] for e in http_span.events] == ["fetched items"]
    assert http_span.events[0]["attributes"]["log.attr.count"] == 3
    assert by_id[logs[1]["span_id"]].name == "step save"
    assert by_id[logs[3]["span_id"]].name == "attempt 2"


def test_ended_spans_stream_with_the_runs_events_up_to_the_final_status(live):
    run = wait_finished(trigger("test-traced"))

    # Spans ride on the step record or outcome stored with them ("spans.ended" for those stored on their own).
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    ended = [span_id for e in events for span_id in e.data.get("span_ids", [])]
    ended += [d["span_id"] for e in events if e.type == "spans.ended" for d in e.data["spans"]]
    assert sorted(ended) == sorted(s.span_id for s in run_spans(run_id=run.id) if s.kind != "run")
    assert events[-1].type == "run.status" and events[-1].data["to"] == RunStatus.COMPLETED


def test_run_triggered_with_a_traceparent_joins_the_callers_trace(live):
    trace_id, caller_span = new_trace_id(), new_span_id()
    run = wait_finished(trigger("test-noop", traceparent=f"00-{trace_id}-{caller_span}-01"))

    spans = run_spans(run_id=run.id)
    assert run.trace_id == trace_id and {s.trace_id for s in spans} == {trace_id}
    [root] = [s for s in spans if s.kind == "run"]
    assert root.parent_span_id == caller_span
    [attempt] = [s for s in spans if s.kind == "attempt"]
    assert attempt.parent_span_id == root.span_id


def test_unsampled_traceparent_still_records_the_runs_spans(live):
    trace_id = new_trace_id()
    run = wait_finished(trigger("test-noop", traceparent=f"00-{trace_id}-{new_span_id()}-00"))
    assert [s.trace_id for s in run_spans(run_id=run.id) if s.kind == "attempt"] == [trace_id]


@pytest.mark.django_db
def test_invalid_traceparent_is_refused():
    with pytest.raises(InvalidTrigger, match="traceparent 'nope' is not a W3C trace context"):
        trigger("test-noop", traceparent="nope")
    assert not Run.objects.exists()


def test_canary_secret_never_reaches_spans_logs_events_or_errors(live):
    run = wait_finished(trigger("test-canary"))
    assert run.status == RunStatus.FAILED and run.attempt_count == 2

    stored = json.dumps(
        [
            list(Span.objects.filter(run=run).values()),
            list(RunEvent.objects.filter(run=run).values()),
            list(Attempt.objects.filter(run=run).values("error")),
            list(Step.objects.filter(run=run).values()),
            run.error,
        ],
        default=str,
    )
    assert CANARY not in stored
    assert "plain-key-value" not in stored and "hunter2-value" not in stored
    assert "••••" in run.error["message"] and "••••" in run.error["traceback"]
    logs = [e.data for e in RunEvent.objects.filter(run=run, type="log")]
    assert "using ••••" in [log["message"] for log in logs]
    assert "upstream refused key ••••" in [log["message"] for log in logs]
    worker_logs = "".join(p.read_text(errors="replace") for p in LOG_DIR.glob("session-worker-*.log"))
    assert "upstream refused key ••••" in worker_logs
    assert CANARY not in worker_logs


def test_checkpoint_state_returns_step_outputs_up_to_a_position(live):
    run = wait_finished(third_step_flaky.trigger({}).id)

    assert run_checkpoint_state(run_id=run.id) == {
        "first": "first-done",
        "second": "second-done",
        "third": "third-done",
    }
    assert list(run_checkpoint_state(run_id=run.id, as_of_position=2).items()) == [
        ("first", "first-done"),
        ("second", "second-done"),
    ]
    assert run_checkpoint_state(run_id=run.id, as_of_position=0) == {}


def test_run_triggered_inside_a_step_joins_the_parents_trace_under_that_step(live):
    parent = wait_finished(trigger("test-parent-of-traced-child"))
    child = wait_finished(parent.output["child"])

    assert child.trace_id == parent.trace_id
    [step] = [s for s in run_spans(run_id=parent.id) if s.kind == "step" and s.name == "step start child"]
    [root] = [s for s in run_spans(run_id=child.id) if s.kind == "run"]
    assert root.parent_span_id == step.span_id


def test_log_lines_of_an_async_task_are_recorded(live):
    run = wait_finished(trigger("test-async-logs"))

    assert run.status == RunStatus.COMPLETED
    [log] = RunEvent.objects.filter(run=run, type="log")
    assert (log.data["message"], log.data["attributes"]) == ("async hello", {"x": 1})
    assert Span.objects.get(span_id=log.data["span_id"]).kind == "attempt"
