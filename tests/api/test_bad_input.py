"""Bad input to the API answers 4xx naming the problem and stores nothing: huge and infinite numbers, NUL,
deep nesting, huge integers, a cron that never fires, oversized schedule payloads."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepwise.runs.models import Run, RunEvent
from stepwise.tasks.models import Schedule

DEEP = "[" * 10_000 + "]" * 10_000
HUGE_INT = "9" * 5_000
# JSON texts of values that once made server errors, placed raw into request bodies.
NASTY = [
    "1e20", "-1e20", "1e400", "Infinity", "-Infinity", "NaN", '"99999999999999d"', '"1e20"', '"Infinity"',
    HUGE_INT, "-" + HUGE_INT, "18446744073709551616", DEEP, "[" * 300 + "]" * 300, '"a\\u0000b"', '"\\u0000"',
    '{"k\\u0000": 1}', '["\\u0000"]', '"' + "x" * 300 + '"', "null", "[]", "{}", '""', "-1", "0",
]


def stored() -> tuple[int, int, int]:
    return Run.objects.count(), Schedule.objects.count(), RunEvent.objects.count()


def send(api, method: str, url: str, body: str):
    return getattr(api.client, method)(url, body, content_type="application/json",
                                       headers={"Authorization": f"Bearer {api.secret}"})


@pytest.mark.parametrize("field", ["delay", "ttl", "idempotency_key_ttl"])
@pytest.mark.parametrize("value, problem", [
    ("1e20", "at most 100 years"), ('"99999999999999d"', "at most 100 years"),
    ("Infinity", "not a JSON number"), ("1e400", "too large"), ('"NaN"', "not a duration"),
])
def test_a_duration_too_large_or_infinite_is_refused_by_name(api, field, value, problem):
    key = ', "idempotency_key": "k"' if field == "idempotency_key_ttl" else ""
    response = send(api, "post", "/api/tasks/test-noop/trigger", f'{{"payload": {{}}, "{field}": {value}{key}}}')
    assert response.status_code == 400, response.content
    assert problem in response.json()["detail"]
    assert stored() == (0, 0, 0)


@pytest.mark.parametrize("body, problem", [
    (f'{{"payload": {DEEP}}}', "nested deeper"), ('{"payload": ' + "[" * 300 + "]" * 300 + "}", "nested deeper"),
    (f'{{"payload": {{"n": {HUGE_INT}}}}}', "number too large"), ('{"payload": {"s": "\\u0000"}}', "NUL"),
    ('{"payload": {}, "retry": {"max_timeout": 1e300}}', "100 years"),
])
def test_deep_nesting_huge_integers_and_nul_in_a_body_are_refused_by_name(api, body, problem):
    response = send(api, "post", "/api/tasks/test-noop/trigger", body)
    assert response.status_code == 400 and problem in response.json()["detail"]
    assert stored() == (0, 0, 0)


def test_a_cron_that_never_fires_is_refused(api):
    body = {"task_id": "test-noop", "cron": "0 0 31 2 *", "dedup_key": "never"}
    response = api.post("/api/schedules", body)
    assert response.status_code == 400 and "never fires" in response.json()["detail"]
    assert not Schedule.objects.exists()


def test_a_schedule_payload_over_the_size_limit_is_refused_before_it_fails_every_tick(api, settings):
    settings.STEPWISE_MAX_PAYLOAD_BYTES = 64 * 1024
    body = {"task_id": "test-noop", "cron": "* * * * *", "dedup_key": "big", "payload": {"blob": "x" * 700_000}}
    response = api.post("/api/schedules", body)
    assert response.status_code == 400 and "over the limit" in response.json()["detail"]
    assert not Schedule.objects.exists()


ENDPOINTS = [
    ("post", "/api/tasks/test-noop/trigger", ["payload", "delay", "ttl", "idempotency_key_ttl", "max_duration",
                                               "priority", "tags", "metadata", "idempotency_key", "queue",
                                               "concurrency_key", "delay_until", "retry"]),
    ("post", "/api/tasks/test-noop/batch", ["items"]),
    ("post", "/api/schedules", ["cron", "timezone", "dedup_key", "payload", "task_id"]),
    ("post", "/api/events", ["name", "payload"]),
]
BASE = {
    "/api/tasks/test-noop/trigger": {"payload": {}},
    "/api/tasks/test-noop/batch": {"items": [{"payload": {}}]},
    "/api/schedules": {"task_id": "test-noop", "cron": "0 * * * *", "dedup_key": "fuzz", "payload": {}},
    "/api/events": {"name": "fuzz.event", "payload": {}},
}

raw_json = st.one_of(
    st.sampled_from(NASTY),
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats().map(lambda f: json.dumps(f)),  # inf and nan become Infinity and NaN
    st.text(max_size=20).map(json.dumps),  # NUL and every other character, escaped
    st.lists(st.sampled_from(NASTY), max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(endpoint=st.sampled_from(ENDPOINTS), data=st.data())
def test_no_shape_of_number_nesting_or_text_makes_a_server_error(api, endpoint, data):
    method, url, fields = endpoint
    field = data.draw(st.sampled_from(fields))
    value = data.draw(raw_json)
    inside = data.draw(st.sampled_from(["as is", "in an object", "in an item"]))
    if inside == "in an object":
        value = f'{{"k": {value}}}'
    base = dict(BASE[url])
    base.pop(field, None)
    text = json.dumps(base)[:-1] + (", " if base else "") + f'"{field}": {value}}}'
    if url.endswith("/batch") and inside == "in an item":
        text = f'{{"items": [{{"payload": {{}}, "delay": {value}}}]}}'
    before = stored()
    response = send(api, method, url, text)
    assert response.status_code < 500, (url, text[:200], response.content[:300])
    if response.status_code >= 400:
        assert stored() == before, (url, text[:200])
        assert response.json()["detail"], text[:200]
