"""Debounce collapses triggers with a key into one run; throttle lets one run per key per period through."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from stepwise.runs.models import Run, RunEvent, TriggerGate
from stepwise.runs.statuses import RunStatus
from stepwise.runs.sweeper import fire_due_timers
from stepwise.runs.triggers import InvalidTrigger, Throttled, TriggerOptions, run_trigger
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure
from tests.api.conftest import ApiClient

pytestmark = pytest.mark.django_db(transaction=True)


def _debounced(n: int, **debounce) -> tuple[Run, bool]:
    return run_trigger(task_id="test-noop", payload={"n": n},
                       options=TriggerOptions(tags=[f"t{n}"], debounce={"key": "user-1", "delay": "5s", **debounce}))


def test_triggers_within_the_delay_collapse_into_one_run_that_keeps_the_first_payload(processes):
    first, created = _debounced(1)
    second, again = _debounced(2)
    third, _ = _debounced(3)

    assert created and not again and first.id == second.id == third.id
    run = Run.objects.get(id=first.id)
    assert run.status == RunStatus.DELAYED and run.payload == {"n": 1} and run.tags == ["t1"]
    assert run.delay_until > timezone.now() + timedelta(seconds=4), "each trigger pushed the start back"
    assert RunEvent.objects.filter(run_id=run.id, type="run.debounced").count() == 2


def test_trailing_mode_takes_the_latest_payload(processes):
    first, _ = _debounced(1, mode="trailing")
    _debounced(2, mode="trailing")

    run = Run.objects.get(id=first.id)
    assert run.payload == {"n": 2} and run.tags == ["t2"]


def test_max_delay_bounds_the_wait_however_often_triggers_come(processes):
    first, _ = _debounced(1, delay="60s", max_delay="61s")
    # As if triggers had kept coming for a minute: max_delay counts from the first one.
    TriggerGate.objects.filter(kind="debounce").update(first_at=timezone.now() - timedelta(seconds=60))

    _debounced(2, delay="60s", max_delay="61s")

    start = Run.objects.get(id=first.id).delay_until
    assert start < timezone.now() + timedelta(seconds=2), "capped at first trigger + max_delay"


def test_once_the_run_is_queued_the_next_trigger_starts_a_new_one(processes):
    first, _ = _debounced(1)
    Run.objects.filter(id=first.id).update(delay_until=timezone.now() - timedelta(seconds=1))
    assert fire_due_timers(timezone.now()) == 1

    second, created = _debounced(2)

    assert created and second.id != first.id and second.payload == {"n": 2}
    assert Run.objects.get(id=first.id).payload == {"n": 1}, "a queued run's payload is never changed"


def test_concurrent_triggers_with_one_key_make_one_run(processes):
    def trigger(n: int) -> str:
        try:
            return _debounced(n)[0].id
        finally:
            connections.close_all()

    with ThreadPoolExecutor(8) as pool:
        ids = set(pool.map(trigger, range(16)))

    assert len(ids) == 1 and Run.objects.filter(task_id="test-noop").count() == 1


def test_throttle_lets_one_run_per_period_through_and_refuses_the_rest_with_the_wait(processes):
    throttle = {"key": "report", "period": "1h"}
    first, _ = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(throttle=throttle))

    with pytest.raises(Throttled, match=r"lets one run with throttle key 'report' through every 3600s; "
                                        r"the next may start in 3\d{3}\.\ds") as refused:
        run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(throttle=throttle))

    assert refused.value.retry_after > 3500
    assert Run.objects.count() == 1
    other, _ = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(throttle={**throttle, "key": "b"}))
    assert other.id != first.id


def test_the_api_answers_a_throttled_trigger_with_429_and_retry_after(processes):
    environments_ensure()
    api = ApiClient(api_key_create(environment="dev", name="gates").secret)
    body = {"payload": {}, "throttle": {"key": "k", "period": 30}}

    assert api.post("/api/tasks/test-noop/trigger", body).status_code == 201
    refused = api.post("/api/tasks/test-noop/trigger", body)

    assert refused.status_code == 429 and refused.json()["error"] == "Throttled"
    assert 25 <= int(refused["Retry-After"]) <= 30


@pytest.mark.parametrize(("options", "message"), [
    ({"debounce": {"delay": "5s"}}, "debounce: key must be a non-empty string"),
    ({"debounce": {"key": "k", "delay": 0}}, "debounce: delay must be a positive duration"),
    ({"debounce": {"key": "k", "delay": "5s", "max_delay": "1s"}}, "max_delay must be at least the delay"),
    ({"debounce": {"key": "k", "delay": "5s", "mode": "middle"}}, "mode must be 'leading' or 'trailing'"),
    ({"debounce": {"key": "k", "delay": "5s", "wait": 1}}, r"unknown field\(s\) wait"),
    ({"debounce": {"key": "k", "delay": "5s"}, "idempotency_key": "x"}, "without idempotency_key, delay"),
    ({"throttle": {"key": "k"}}, "throttle: period must be a positive duration"),
    ({"throttle": "k"}, "throttle must be an object with a key, not str"),
])
def test_wrong_gate_options_are_refused_and_store_nothing(processes, options, message):
    with pytest.raises(InvalidTrigger, match=message):
        run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(**options))
    assert not Run.objects.exists()
