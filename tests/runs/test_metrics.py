"""GET /metrics: Prometheus metrics computed from the database, behind a token or a staff session."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from stepwise.runs import metrics
from stepwise.runs.models import Run, Step
from stepwise.runs.states import run_transition
from stepwise.runs.statuses import RunStatus
from stepwise.runs.sweeper import recover_lost_leases
from stepwise.runs.triggers import TriggerOptions, run_trigger
from tests.waiting import wait_finished, wait_for

TOKEN = "metrics-token-0123456789"


@pytest.fixture(autouse=True)
def fresh_collector(monkeypatch):
    """A collector of its own for each test, counting events as soon as they are stored."""
    monkeypatch.setattr(metrics, "SETTLE_SECONDS", 0.0)
    collector = metrics.StepwiseCollector()
    monkeypatch.setattr(metrics, "collector", collector)
    registry = metrics.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    monkeypatch.setattr("stepwise.console.views.metrics.registry", registry)


def scrape(client) -> dict[tuple, float]:
    with override_settings(STEPWISE_METRICS_TOKEN=TOKEN):
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.content.decode()) for s in family.samples}


def value(samples: dict[tuple, float], name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def test_metrics_need_the_bearer_token_or_a_staff_session(client, django_user_model, db):
    assert client.get("/metrics").status_code == 401
    with override_settings(STEPWISE_METRICS_TOKEN=TOKEN):
        refused = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
        assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
        assert b"STEPWISE_METRICS_TOKEN" in refused.content
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
    with override_settings(STEPWISE_METRICS_TOKEN=""):  # no token set: no bearer is accepted, even an empty one
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    client.force_login(django_user_model.objects.create_user(username="viewer", password="x" * 12))
    assert client.get("/metrics").status_code == 401
    client.force_login(django_user_model.objects.create_user(username="ops", password="x" * 12, is_staff=True))
    response = client.get("/metrics")
    assert response.status_code == 200 and b"stepwise_queue_depth" in response.content


def test_runs_are_counted_by_task_queue_and_status_with_their_durations(client, live):
    scrape(client)  # counters start at the first scrape
    flaky, _ = run_trigger(task_id="test-third-step-flaky", payload={})
    aborted, _ = run_trigger(task_id="test-abort", payload={})
    flaky, aborted = wait_finished(flaky.id), wait_finished(aborted.id)
    assert (flaky.status, aborted.status) == (RunStatus.COMPLETED, RunStatus.FAILED)
    samples = scrape(client)

    task, queue = "test-third-step-flaky", flaky.queue
    assert value(samples, "stepwise_runs_triggered_total", task=task, queue=queue) == 1
    assert value(samples, "stepwise_runs_triggered_total", task="test-abort", queue=aborted.queue) == 1
    assert value(samples, "stepwise_runs_finished_total", task=task, queue=queue, status="COMPLETED") == 1
    assert value(samples, "stepwise_runs_finished_total", task="test-abort", queue=aborted.queue,
                 status="FAILED") == 1
    assert value(samples, "stepwise_attempts_failed_total", task=task, queue=queue) == 2  # the third step, twice
    steps = Step.objects.filter(run_id=flaky.id, status="COMPLETED").count()
    assert value(samples, "stepwise_step_duration_seconds_count", task=task, status="completed") == steps == 3
    assert value(samples, "stepwise_run_duration_seconds_count", task=task, status="COMPLETED") == 1
    run_seconds = (flaky.finished_at - flaky.created_at).total_seconds()
    assert value(samples, "stepwise_run_duration_seconds_sum", task=task, status="COMPLETED") == pytest.approx(
        run_seconds, abs=0.05)
    assert value(samples, "stepwise_claim_latency_seconds_count", queue=queue) == 3  # one claim per attempt
    # The two worker processes of the session. Each announces itself every heartbeat (0.4 s here), and
    # the table was emptied when this test began: a run that ends sooner than that finds one of them.
    wait_for(lambda: value(scrape(client), "stepwise_workers") >= 2, timeout=5, message="both workers counted")

    again = scrape(client)  # nothing new happened: nothing is counted twice
    assert value(again, "stepwise_runs_triggered_total", task=task, queue=queue) == 1
    assert value(again, "stepwise_claim_latency_seconds_count", queue=queue) == 3


def test_queue_depth_executing_runs_scheduler_lag_and_lost_leases(client, transactional_db, processes,
                                                                   django_assert_max_num_queries):
    # `processes` with none started: no worker claims these runs, no scheduler fires their timers.
    scrape(client)
    queued = [run_trigger(task_id="test-noop", payload={})[0] for _ in range(3)]
    late, _ = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(delay=3600))
    Run.objects.filter(id=late.id).update(delay_until=timezone.now() - timedelta(seconds=30))  # the scheduler is down
    lost = queued[0]
    run_transition(run_id=lost.id, to=RunStatus.EXECUTING, expected_from=[RunStatus.QUEUED], lease_token="t1",
                   lease_expires_at=timezone.now() - timedelta(seconds=1), worker_id="gone:1:x", attempt_count=1)
    recover_lost_leases(timezone.now())

    with django_assert_max_num_queries(16):
        samples = scrape(client)
    queue = lost.queue
    assert value(samples, "stepwise_queue_depth", queue=queue) == 2
    assert value(samples, "stepwise_runs", status="RETRYING", queue=queue) == 1
    assert value(samples, "stepwise_runs", status="DELAYED", queue=queue) == 1
    assert value(samples, "stepwise_runs_executing", queue=queue) == 0
    assert value(samples, "stepwise_lost_leases_total", task="test-noop", queue=queue) == 1
    assert 30 <= value(samples, "stepwise_scheduler_lag_seconds") < 60
    assert value(samples, "stepwise_schedulers") == 0
    assert value(samples, "stepwise_broker_messages") is not None
