"""The bench's figure for server-sent events: latency from a worker's write to an SSE client."""
from __future__ import annotations

from stepwise.runs.benchmarks.observability import measure_sse_latency
from stepwise.runs.models import Run
from stepwise.tasks.models import ApiKey
from stepwise.tasks.services import environments_ensure


def test_sse_latency_is_measured_on_every_live_event_of_a_run(processes, transactional_db):
    environments_ensure()  # the attempt runs in this process: no worker or scheduler is started
    figures = measure_sse_latency(steps=10)

    run = Run.objects.get(task_id="bench-observability-steps")
    assert run.status == "COMPLETED"
    # Every event but run.created and DELAYED -> QUEUED, which came before the client connected.
    assert figures["events"] == run.events.count() - 2
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    assert not ApiKey.objects.filter(name="stepwise-bench-sse").exists()  # its read key is gone
