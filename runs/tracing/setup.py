"""Set up tracing once per process: the tracer provider, the database span processor, OTLP export."""
from __future__ import annotations

import os
import threading

from opentelemetry import trace

from runs.tracing.processor import DatabaseSpanProcessor, RedactingSpanProcessor
from runs.tracing.storage import spans_store

database_processor = DatabaseSpanProcessor(write=spans_store)
# Set when OTEL_EXPORTER_OTLP_ENDPOINT is: spans are exported there too.
export_processor: RedactingSpanProcessor | None = None
_setup_lock = threading.Lock()
_done = False


def tracing_setup() -> None:
    """Install the tracer provider with the span processors, and capture log lines of runs."""
    global _done, export_processor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from runs.engine.logs import run_logging_install

    with _setup_lock:
        if _done:
            return
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
            provider = TracerProvider(resource=Resource.create({"service.name": "stepwise"}))
            trace.set_tracer_provider(provider)
        provider.add_span_processor(database_processor)
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            export_processor = RedactingSpanProcessor(BatchSpanProcessor(OTLPSpanExporter()))
            provider.add_span_processor(export_processor)
        run_logging_install()
        _done = True


def run_span_export(run_id: str) -> None:
    """Export a finished run's root span over OTLP (its attempts' spans were exported as they ended)."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

    from runs.models import Span, SpanKind

    processor = export_processor
    span = Span.objects.filter(run_id=run_id, kind=SpanKind.RUN, ended_at__isnull=False).first()
    if processor is None or span is None:
        return
    sampled = TraceFlags(TraceFlags.SAMPLED)
    trace_id = int(span.trace_id, 16)
    parent = SpanContext(trace_id, int(span.parent_span_id, 16), True, sampled) if span.parent_span_id else None
    attributes = {k: tuple(v) if isinstance(v, list) else v for k, v in span.attributes.items()}
    processor.on_end(
        ReadableSpan(
            name=span.name,
            context=SpanContext(trace_id, int(span.span_id, 16), False, sampled),
            parent=parent,
            resource=trace.get_tracer_provider().resource,
            attributes=attributes,
            status=Status(StatusCode[span.status], span.status_message or None),
            start_time=int(span.started_at.timestamp() * 1e9),
            end_time=int(span.ended_at.timestamp() * 1e9),
        )
    )
