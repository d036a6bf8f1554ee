"""Attempt and step spans recorded without the OpenTelemetry SDK are stored as the SDK's would be."""
from __future__ import annotations

import json

import pytest
from opentelemetry.sdk.trace import SpanLimits as SdkSpanLimits
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

from stepwise.runs.engine import spans as engine_spans
from stepwise.runs.engine.spans import DirectSpan, SpanLimits, engine_spans_direct
from stepwise.runs.models import Attempt, Span, Step
from stepwise.runs.selectors import run_spans
from stepwise.runs.tracing.setup import database_processor
from stepwise.runs.triggers import run_trigger
from stepwise.runs.worker import run_attempt


def _shape(run_id: str) -> list[tuple]:
    """Every span of a run as the console shows it, without its ids and times."""
    spans = run_spans(run_id=run_id)
    by_id = {s.span_id: s for s in spans}
    for span in spans:  # each inside its parent
        if span.parent_span_id in by_id:
            parent = by_id[span.parent_span_id]
            assert parent.started_at <= span.started_at <= span.ended_at <= parent.ended_at, span.name

    def event(e: dict) -> tuple:
        attributes = {k: v for k, v in e["attributes"].items() if k != "exception.stacktrace"}
        return e["name"], json.dumps(attributes, sort_keys=True), "exception.stacktrace" in e["attributes"]

    def attributes(s) -> str:  # the run's own id aside, which the root span carries
        return json.dumps({k: v for k, v in s.attributes.items() if k != "stepwise.run_id"}, sort_keys=True)

    return sorted(
        (s.kind, s.name, by_id[s.parent_span_id].name if s.parent_span_id in by_id else "", s.status,
         s.status_message, attributes(s), [event(e) for e in s.events])
        for s in spans
    )


def _both_ways(task_id: str) -> tuple[list[list[tuple]], list[str]]:
    """Run the task once with the engine's spans recorded directly, once through the SDK: their shapes and run ids."""
    before = engine_spans._direct_sink
    shapes, runs = [], []
    try:
        for sink in (database_processor, None):
            engine_spans_direct(sink)
            run, _ = run_trigger(task_id=task_id, payload={})
            assert run_attempt(run.id).result == "completed"
            shapes.append(_shape(run.id))
            runs.append(run.id)
    finally:
        engine_spans_direct(before)
    return shapes, runs


@pytest.mark.django_db(transaction=True)
def test_a_runs_spans_are_the_same_with_step_spans_recorded_directly_or_through_the_sdk(processes):
    (direct, sdk), runs = _both_ways("test-span-shapes")
    assert direct == sdk
    # Recorded directly, the plain step's span is kept in the step's row, the others in rows of their own.
    direct_run, sdk_run = runs
    assert Step.objects.get(run_id=direct_run, key="plain").span_id
    assert set(Span.objects.filter(run_id=direct_run, kind="step").values_list("name", flat=True)) == {
        "step fetch", "step explode"}
    assert not Step.objects.filter(run_id=sdk_run).exclude(span_id="").exists()
    # The attempt's span is in exactly one place: its attempt's row when recorded directly and plain.
    assert Attempt.objects.get(run_id=sdk_run).span_id == ""
    held = Attempt.objects.get(run_id=direct_run).span_id
    assert bool(held) != Span.objects.filter(run_id=direct_run, kind="attempt").exists()

    steps = {name: rest for kind, name, *rest in direct if kind == "step"}
    assert set(steps) == {"step fetch", "step explode", "step plain"}
    assert steps["step plain"] == ["attempt 1", "OK", "", json.dumps(
        {"stepwise.attempt": 1, "stepwise.step.key": "plain", "stepwise.step.name": "plain",
         "stepwise.step.position": 3, "stepwise.step.replayed": False}, sort_keys=True), []]
    parent, status, message, attributes, events = steps["step fetch"]
    assert parent == "attempt 1" and status == "OK" and message == ""
    assert json.loads(attributes)["items"] == [1, 2]
    assert json.loads(attributes)["filters"] == {"status": "open", "ids": [1, 2]}
    assert [name for name, *_ in events] == ["parsed"]
    users = {name: rest[0] for kind, name, *rest in direct if kind == "user"}
    assert users == {"http GET /items": "step fetch", "cache lookup": "step plain"}
    parent, status, message, attributes, events = steps["step explode"]
    assert (status, message) == ("ERROR", "ValueError: no such item")
    [(name, exception, has_stacktrace)] = events
    assert name == "exception" and has_stacktrace
    assert json.loads(exception)["exception.type"] == "ValueError"


@pytest.mark.django_db(transaction=True)
def test_a_plain_attempt_recorded_directly_is_held_by_its_row_and_reads_as_the_sdks_span(processes):
    (direct, sdk), runs = _both_ways("test-noop")
    assert direct == sdk
    assert [(kind, name) for kind, name, *_ in direct] == [("attempt", "attempt 1"), ("run", "run test-noop")]
    attempt = next(rest for kind, name, *rest in direct if kind == "attempt")
    assert attempt[:2] == ["run test-noop", "OK"]
    assert json.loads(attempt[3])["stepwise.attempt.result"] == "completed"
    direct_run, sdk_run = runs
    # Recorded directly, nothing but the engine's attributes on it: its attempt's row holds it.
    assert Attempt.objects.get(run_id=direct_run).span_id
    assert not Span.objects.filter(run_id=direct_run, kind="attempt").exists()
    assert Attempt.objects.get(run_id=sdk_run).span_id == ""
    assert Span.objects.filter(run_id=sdk_run, kind="attempt").count() == 1


class _Kept:
    """The sink's side of a span processor: what it was handed."""

    def __init__(self):
        self.ended = []

    def on_end(self, span):
        self.ended.append(span)


def _use(span) -> None:
    span.set_attribute("tags", ["a", "b"])
    span.set_attribute("handler", object())
    span.set_attributes({f"a{i}": i for i in range(12)})  # past the limit: the oldest go
    for i in range(7):
        span.add_event("log", {"n": i, "payload": {"k": [1, 2]}, "long": "x" * 40})
    span.record_exception(KeyError("sku"), escaped=True)
    span.update_name("step renamed")
    span.set_status(Status(StatusCode.OK))
    span.set_status(Status(StatusCode.ERROR, "too late"))  # OK is final
    span.end()
    span.set_attribute("after", 1)
    span.add_event("after")


def test_a_step_span_keeps_what_an_sdk_span_keeps_under_the_same_limits():
    sdk_limits = SdkSpanLimits(max_span_attributes=10, max_events=5, max_event_attributes=2, max_attribute_length=8)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=sdk_limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sdk_span = provider.get_tracer("test").start_span("step s", attributes={"stepwise.step.key": "s"})
    _use(sdk_span)
    [sdk] = exporter.get_finished_spans()

    kept = _Kept()
    parent = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    limits = SpanLimits(attributes=10, events=5, event_attributes=2, span_attribute_length=None, attribute_length=8)
    span = DirectSpan("step s", parent=parent, attributes={"stepwise.step.key": "s"}, sink=kept, limits=limits)
    _use(span)

    assert kept.ended == [span]
    assert span.get_span_context().trace_id == 0xABC and span.get_span_context().span_id not in (0, 0xDEF)
    assert span.name == sdk.name == "step renamed"
    assert dict(span.attributes) == dict(sdk.attributes)
    assert [(e.name, dict(e.attributes)) for e in span.events] == [(e.name, dict(e.attributes)) for e in sdk.events]
    assert len(span.events) == 5 and span.events[-1].name == "exception"
    assert (span.status.status_code, span.status.description) == (sdk.status.status_code, sdk.status.description)
    assert span.end_time >= span.start_time


@pytest.mark.django_db(transaction=True)
def test_an_async_tasks_plain_steps_keep_their_spans_in_their_rows_under_their_attempt(processes):
    run, _ = run_trigger(task_id="test-async", payload={"x": 2})
    assert run_attempt(run.id).result == "retrying"  # its first attempt raises after both steps

    steps = list(Step.objects.filter(run_id=run.id).order_by("position"))
    assert [s.key for s in steps] == ["async_double", "async_double#2"] and all(s.span_id for s in steps)
    spans = run_spans(run_id=run.id)
    [attempt] = [s for s in spans if s.kind == "attempt"]
    kept = [s for s in spans if s.kind == "step"]
    assert [(s.name, s.parent_span_id, s.status) for s in kept] == [
        ("step async_double", attempt.span_id, "OK"), ("step async_double#2", attempt.span_id, "OK")]
    assert {s.trace_id for s in spans} == {run.trace_id}


@pytest.mark.django_db(transaction=True)
def test_a_run_triggered_with_a_root_span_row_keeps_it_and_its_outcome_ends_it(processes):
    """Runs triggered before the root span moved into the run row still have a span row: it is not shown twice."""
    run, _ = run_trigger(task_id="test-noop", payload={})
    assert not Span.objects.filter(run_id=run.id).exists()
    [synthesized] = run_spans(run_id=run.id)
    Span.objects.create(  # as the previous release's trigger stored it
        run_id=run.id, trace_id=run.trace_id, span_id=run.span_id, name=f"run {run.task_id}", kind="run",
        attributes=synthesized.attributes, started_at=run.created_at,
    )
    assert run_attempt(run.id).result == "completed"
    run.refresh_from_db()
    [root] = [s for s in run_spans(run_id=run.id) if s.kind == "run"]
    assert root.pk is not None
    assert (root.span_id, root.ended_at, root.status) == (run.span_id, run.finished_at, "OK")
