"""Set up tracing once per process: the tracer provider, the database span processor, OTLP export."""
from __future__ import annotations

import os
import threading

from django.core.exceptions import ImproperlyConfigured
from opentelemetry import trace

from stepwise.runs.engine.spans import SpanLimits, engine_spans_direct
from stepwise.runs.tracing.processor import DatabaseSpanProcessor, RedactingSpanProcessor, SampledSpanProcessor
from stepwise.runs.tracing.storage import spans_store

database_processor = DatabaseSpanProcessor(write=spans_store)
# Set when an exporter is configured (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_TRACES_EXPORTER): spans go there too.
export_processor: RedactingSpanProcessor | None = None
_setup_lock = threading.Lock()
_done = False


def tracing_setup() -> None:
    """Install the tracer provider with the span processors, and capture log lines of runs."""
    global _done, export_processor
    from opentelemetry.sdk.trace import SpanLimits as SdkSpanLimits
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from stepwise.runs.engine.logs import run_logging_install

    with _setup_lock:
        if _done:
            return
        provider = trace.get_tracer_provider()
        ours = not isinstance(provider, TracerProvider)
        if ours:
            # Every span is recorded: the console shows them all. OTEL_TRACES_SAMPLER decides what is exported.
            provider = TracerProvider(resource=tracing_resource(), sampler=ALWAYS_ON)
            trace.set_tracer_provider(provider)
        provider.add_span_processor(database_processor)
        exporter = span_exporter()
        # Spans that only go to the database: steps skip the SDK (a project's own provider, or an
        # exporter, gets every span through it).
        limits = SdkSpanLimits()  # from OTEL_SPAN_*_LIMIT, as the SDK's own spans
        engine_spans_direct(
            database_processor if ours and exporter is None else None,
            SpanLimits(limits.max_span_attributes, limits.max_events, limits.max_event_attributes,
                       limits.max_span_attribute_length, limits.max_attribute_length),
        )
        if exporter is not None:
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            export_processor = RedactingSpanProcessor(
                SampledSpanProcessor(BatchSpanProcessor(exporter), export_sampler())
            )
            provider.add_span_processor(export_processor)
        run_logging_install()
        _done = True


def tracing_resource():
    """Return the resource of our spans: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES; service "stepwise" by default."""
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource

    # Attributes given to Resource.create win over the environment's: add the default only when it names none.
    resource = Resource.create()
    if SERVICE_NAME not in OTELResourceDetector().detect().attributes:
        resource = resource.merge(Resource({SERVICE_NAME: "stepwise"}))
    return resource


def _env(name: str) -> str:
    """Return OTEL_EXPORTER_OTLP_TRACES_<name>, else OTEL_EXPORTER_OTLP_<name> (the standard's precedence)."""
    return os.environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or os.environ.get(f"OTEL_EXPORTER_OTLP_{name}", "")


def span_exporter():
    """Return the exporter OTEL_TRACES_EXPORTER names (otlp once an OTLP endpoint is set), or None.

    OTLPSpanExporter reads the rest of the standard variables itself: endpoint, headers,
    timeout, compression and certificate.
    """
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if not names:
        names = ["otlp"] if _env("ENDPOINT") else []
    unknown = set(names) - {"otlp", "console", "none"}
    if unknown:
        raise ImproperlyConfigured(f"OTEL_TRACES_EXPORTER: unsupported {sorted(unknown)}; use otlp, console or none")
    if "none" in names or not names:
        return None
    if "console" in names and "otlp" not in names:
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    protocol = _env("PROTOCOL") or "http/protobuf"
    if protocol != "http/protobuf":
        raise ImproperlyConfigured(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: Stepwise exports OTLP over HTTP "
            "(http/protobuf, usually port 4318)"
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


SAMPLERS = ("always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off",
            "parentbased_traceidratio")


def export_sampler():
    """Return the sampler OTEL_TRACES_SAMPLER (and _ARG) name, deciding per trace id which traces are exported."""
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, TraceIdRatioBased

    name = os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if name not in SAMPLERS:
        raise ImproperlyConfigured(f"OTEL_TRACES_SAMPLER={name!r} is not one of {', '.join(SAMPLERS)}")
    root = name.removeprefix("parentbased_")
    if root == "always_on":
        return ALWAYS_ON
    if root == "always_off":
        return ALWAYS_OFF
    argument = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "1.0")
    try:
        rate = float(argument)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise ImproperlyConfigured(f"OTEL_TRACES_SAMPLER_ARG={argument!r} must be a ratio between 0 and 1")
    return TraceIdRatioBased(rate)


def run_span_export(run_id: str) -> None:
    """Export a finished run's root span over OTLP (its attempts' spans were exported as they ended)."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags

    from stepwise.runs.models import Run, Span, SpanKind
    from stepwise.runs.selectors import RUN_SPAN_FIELDS, run_span_of

    processor = export_processor
    if processor is None:
        return
    span = Span.objects.filter(run_id=run_id, kind=SpanKind.RUN).first()  # a run triggered before 0016
    if span is None:
        run = Run.objects.only(*RUN_SPAN_FIELDS).filter(id=run_id).first()
        span = run_span_of(run) if run is not None else None
    if span is None or span.ended_at is None:
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
