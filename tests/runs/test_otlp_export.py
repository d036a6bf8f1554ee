"""Spans exported over OTLP/HTTP by a real worker to a collector listening in the test."""
from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from stepwise.runs.selectors import run_spans
from stepwise.runs.states import run_transition
from stepwise.runs.statuses import RunStatus
from stepwise.runs.tracing.setup import export_sampler, span_exporter, tracing_resource
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.runs.worker import execute_run
from tests.engine_tasks import CANARY
from tests.processes import test_queue_name as session_queue_name
from tests.waiting import wait_finished, wait_for


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver keeping every request body it gets."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        super().__init__(("127.0.0.1", 0), _Receive)

    def resources(self) -> list[dict[str, str]]:
        """Return the resource attributes of every batch received."""
        found = []
        for body in list(self.bodies):
            for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
                found.append({a.key: a.value.string_value for a in resource_spans.resource.attributes})
        return found

    def spans(self) -> list:
        found = []
        for body in list(self.bodies):
            request = ExportTraceServiceRequest.FromString(body)
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    found.extend(scope_spans.spans)
        return found


class _Receive(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.headers.append({k.lower(): v for k, v in self.headers.items()})
        self.server.bodies.append(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_worker_exports_the_runs_whole_trace_over_otlp_without_secrets(transactional_db, processes, collector):
    queue = f"{session_queue_name()}-otlp"
    processes.worker(
        queue=queue,
        concurrency=1,
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    # Delayed, then queued without the usual dispatch: only the exporting worker's queue hears of it.
    run, _ = run_trigger(task_id="test-otlp", payload={}, options=TriggerOptions(delay=3600))
    # dispatched_at: a hint is on its way, so the scheduler does not send one to the other workers.
    run_transition(run_id=run.id, to=RunStatus.QUEUED, expected_from=[RunStatus.DELAYED], delay_until=None,
                   dispatched_at=timezone.now())
    execute_run.apply_async(args=[run.id], queue=queue)
    run = wait_finished(run.id)
    assert run.status == RunStatus.COMPLETED

    def exported() -> dict[str, object] | None:
        spans = {s.name: s for s in collector.spans() if s.trace_id.hex() == run.trace_id}
        return spans if {"run test-otlp", "attempt 1", "step call", "call partner"} <= set(spans) else None

    spans = wait_for(exported, timeout=20, message="the run's spans at the collector")
    assert spans["run test-otlp"].span_id.hex() == run.span_id and not spans["run test-otlp"].parent_span_id
    assert spans["attempt 1"].parent_span_id.hex() == run.span_id
    assert spans["step call"].parent_span_id == spans["attempt 1"].span_id
    assert spans["call partner"].parent_span_id == spans["step call"].span_id
    assert all(CANARY.encode() not in body for body in collector.bodies)
    assert "••••".encode() in b"".join(collector.bodies)


def _run_on(queue: str) -> str:
    """Trigger test-otlp so that only the worker listening on ``queue`` runs it; return the run id."""
    run, _ = run_trigger(task_id="test-otlp", payload={}, options=TriggerOptions(delay=3600))
    run_transition(run_id=run.id, to=RunStatus.QUEUED, expected_from=[RunStatus.DELAYED], delay_until=None,
                   dispatched_at=timezone.now())
    execute_run.apply_async(args=[run.id], queue=queue)
    return run.id


def test_standard_otel_variables_name_the_service_its_resource_and_the_export_headers(
        transactional_db, processes, collector):
    queue = f"{session_queue_name()}-otel-env"
    processes.worker(
        queue=queue, concurrency=1, OTEL_BSP_SCHEDULE_DELAY="100",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}/v1/traces",
        OTEL_SERVICE_NAME="shop-workers",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=staging,team=payments",
        OTEL_EXPORTER_OTLP_HEADERS="x-honeycomb-team=key-123",
    )
    run = wait_finished(_run_on(queue))
    assert run.status == RunStatus.COMPLETED
    wait_for(lambda: collector.bodies, timeout=20, message="spans at the collector")
    resource = collector.resources()[0]
    assert resource["service.name"] == "shop-workers"
    assert resource["deployment.environment"] == "staging" and resource["team"] == "payments"
    assert all(headers.get("x-honeycomb-team") == "key-123" for headers in collector.headers)


def test_a_sampler_thins_out_the_export_while_the_console_keeps_every_span(transactional_db, processes, collector):
    queue = f"{session_queue_name()}-otel-sampler"
    processes.worker(
        queue=queue, concurrency=1, OTEL_BSP_SCHEDULE_DELAY="100", OTEL_TRACES_SAMPLER="traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0", OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}",
    )
    dropped = wait_finished(_run_on(queue))
    assert dropped.status == RunStatus.COMPLETED
    kinds = {span.kind for span in run_spans(run_id=dropped.id)}
    assert {"run", "attempt", "step", "user"} <= kinds
    time.sleep(1)  # several export intervals (100 ms) pass: a sampled span would have been sent by now
    assert collector.spans() == []


def test_default_service_name_and_clear_errors_for_unsupported_settings(monkeypatch):
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    assert tracing_resource().attributes["service.name"] == "stepwise"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=billing")
    assert tracing_resource().attributes["service.name"] == "billing"
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "sometimes")
    with pytest.raises(ImproperlyConfigured, match="OTEL_TRACES_SAMPLER='sometimes' is not one of always_on"):
        export_sampler()
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
    monkeypatch.setenv("OTEL_TRACES_SAMPLER_ARG", "2")
    with pytest.raises(ImproperlyConfigured, match="must be a ratio between 0 and 1"):
        export_sampler()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ImproperlyConfigured, match="'grpc' is not supported: Stepwise exports OTLP over HTTP"):
        span_exporter()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert span_exporter() is None
