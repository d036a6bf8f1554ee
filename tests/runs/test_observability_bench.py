"""The observability figures ``manage.py bench`` reports: tracing overhead and websocket event latency."""
from __future__ import annotations

import pytest

from stepwise.runs.benchmarks.observability import measure_event_latency, measure_tracing_overhead
from stepwise.runs.models import Run
from stepwise.runs.selectors import run_spans


@pytest.fixture(autouse=True)
def _attempts_run_here_only(processes):
    """Stop the session's workers and scheduler: the measurements execute their attempts in this process."""


def test_tracing_overhead_compares_traced_and_untraced_runs_of_the_same_steps(transactional_db):
    figures = measure_tracing_overhead(steps=20, rounds=2)

    assert figures["untraced_ms_per_step"] > 0 and figures["traced_ms_per_step"] > 0
    assert figures["ratio"] == round(figures["traced_ms_per_step"] / figures["untraced_ms_per_step"], 3)
    # An untraced step's time splits into the attempt's statements and the Python around them.
    assert figures["statement_ms_per_step"] > 0 and figures["python_ms_per_step"] > 0
    assert figures["statement_ms_per_step"] + figures["python_ms_per_step"] == pytest.approx(
        figures["untraced_ms_per_step"], abs=1e-3
    )
    runs = list(Run.objects.filter(task_id="bench-observability-steps"))
    assert len(runs) == 1 + 2 * 2 and {r.status for r in runs} == {"COMPLETED"}  # a warm-up, then two pairs
    step_spans = sorted(s.run_id for r in runs for s in run_spans(run_id=r.id) if s.kind == "step")
    # Only the traced runs (the warm-up is one) have step spans.
    assert len(step_spans) == 3 * 20 and len(set(step_spans)) == 3


def test_event_latency_is_measured_on_every_live_event_of_a_run(transactional_db):
    figures = measure_event_latency(steps=10)

    run = Run.objects.get(task_id="bench-observability-steps")
    # Every event but run.created and DELAYED -> QUEUED, which came before the client connected.
    assert figures["events"] == run.events.count() - 2
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"] < 5000
