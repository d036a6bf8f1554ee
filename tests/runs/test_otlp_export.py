"""Spans exported over OTLP/HTTP by a real worker to a collector listening in the test."""
from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from runs.states import run_transition
from runs.statuses import RunStatus
from runs.triggers import TriggerOptions, run_trigger
from runs.worker import execute_run
from tests.engine_tasks import CANARY
from tests.processes import test_queue_name as session_queue_name
from tests.waiting import wait_finished, wait_for


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver keeping every request body it gets."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _Receive)

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
