"""W3C trace context: a run triggered with a traceparent (or from inside a span) joins that trace."""
from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from stepwise.runs.engine.errors import StepwiseError


class InvalidTraceparent(StepwiseError):
    """A traceparent that is not a valid W3C trace context header."""


@dataclass(frozen=True)
class TraceParent:
    """The trace a new run joins, and the caller's span its run span hangs under."""

    trace_id: str
    span_id: str


def traceparent_parse(header: str) -> TraceParent:
    """Return the trace and parent span of a W3C ``traceparent`` header, or raise InvalidTraceparent."""
    context = TraceContextTextMapPropagator().extract({"traceparent": header.strip()})
    span_context = trace.get_current_span(context).get_span_context()
    if not span_context.is_valid:
        raise InvalidTraceparent(
            f"traceparent {header!r} is not a W3C trace context (expected 00-<32 hex>-<16 hex>-<2 hex>)"
        )
    return TraceParent(f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}")


def traceparent_current() -> TraceParent | None:
    """Return the span current in this thread (a step triggering a child run, a traced request), or None."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    return TraceParent(f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}")


def traceparent_format(*, trace_id: str, span_id: str) -> str:
    """Return the W3C ``traceparent`` header naming a span (sampled)."""
    return f"00-{trace_id}-{span_id}-01"
