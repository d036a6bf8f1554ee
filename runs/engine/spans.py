"""The engine's spans (attempt, step, wait) opened with the OpenTelemetry API.

The process decides where spans go by installing a tracer provider (``stepwise.runs.tracing``);
without one, these spans are free no-ops.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from stepwise.runs.engine.store import Claim

RUN_ID = "stepwise.run_id"
KIND = "stepwise.kind"
_disabled = trace.NoOpTracer()
# A proxy until the process installs a provider; it then delegates to the real tracer.
_tracer = trace.get_tracer("stepwise")
_tracing_enabled = True


def engine_tracer() -> trace.Tracer:
    """Return the tracer the engine opens its spans with."""
    return _tracer if _tracing_enabled else _disabled


def tracing_enabled_set(enabled: bool) -> None:
    """Turn the engine's own spans on or off in this process (the benchmark compares both)."""
    global _tracing_enabled
    _tracing_enabled = enabled


def run_span_context(claim: Claim) -> Context | None:
    """Return a context whose current span is the run's root span, so attempts join the run's trace."""
    if not claim.trace_id or not claim.span_id:
        return None
    # Always sampled: the console shows every run's spans even if the caller did not sample.
    parent = SpanContext(
        int(claim.trace_id, 16), int(claim.span_id, 16), is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


def attempt_span_start(claim: Claim) -> trace.Span:
    """Start the span of one attempt as a child of the run's span."""
    return engine_tracer().start_span(
        f"attempt {claim.attempt_number}",
        context=run_span_context(claim),
        attributes={
            RUN_ID: claim.run_id,
            KIND: "attempt",
            "stepwise.task_id": claim.task_id,
            "stepwise.attempt": claim.attempt_number,
            "stepwise.worker_id": claim.worker_id,
            "stepwise.version": claim.version_hash[:12],
        },
    )


def attempt_span_end(
    span: trace.Span, *, result: str, error: dict[str, Any] | None = None, retry_delay: float | None = None
) -> None:
    """End an attempt's span with its result, error and the delay before the next attempt."""
    if not span.is_recording():
        return
    span.set_attribute("stepwise.attempt.result", result)
    if retry_delay is not None:
        span.set_attribute("stepwise.retry_delay", round(retry_delay, 3))
    if error is not None:
        span.add_event(
            "exception",
            {"exception.type": error.get("type", ""), "exception.message": error.get("message", "")},
        )
        span.set_status(Status(StatusCode.ERROR, f"{error.get('type')}: {error.get('message')}"))
    elif result == "completed":
        span.set_status(Status(StatusCode.OK))
    span.end()


@contextmanager
def step_span(claim: Claim, *, key: str, name: str, position: int, replayed: bool) -> Iterator[trace.Span]:
    """Open the current span of one step; spans the step's code opens nest under it."""
    attributes = {
        RUN_ID: claim.run_id,
        KIND: "step",
        "stepwise.step.key": key,
        "stepwise.step.name": name,
        "stepwise.step.position": position,
        "stepwise.step.replayed": replayed,
        "stepwise.attempt": claim.attempt_number,
    }
    with engine_tracer().start_as_current_span(f"step {key}", attributes=attributes) as span:
        yield span
        span.set_status(Status(StatusCode.OK))


@contextmanager
def engine_span(
    claim: Claim, *, kind: str, name: str, attributes: dict[str, Any] | None = None
) -> Iterator[trace.Span]:
    """Open a span of another engine kind (a wait, for example) under the current span."""
    attributes = {RUN_ID: claim.run_id, KIND: kind, "stepwise.attempt": claim.attempt_number, **(attributes or {})}
    with engine_tracer().start_as_current_span(name, attributes=attributes) as span:
        yield span


def wait_span_record(claim: Claim, *, key: str, waitpoint_id: str, status: str, started, ended) -> None:
    """Record a resolved wait as a span under the run's span, from its waitpoint's creation to its resolution."""
    if started is None or ended is None:
        return
    span = engine_tracer().start_span(
        f"wait {key}",
        context=run_span_context(claim),
        start_time=int(started.timestamp() * 1e9),
        attributes={
            RUN_ID: claim.run_id,
            KIND: "wait",
            "stepwise.attempt": claim.attempt_number,
            "stepwise.wait.key": key,
            "stepwise.waitpoint": waitpoint_id,
            "stepwise.wait.status": status,
        },
    )
    if status == "COMPLETED":
        span.set_status(Status(StatusCode.OK))
    else:
        span.set_status(Status(StatusCode.ERROR, status))
    span.end(end_time=int(ended.timestamp() * 1e9))
