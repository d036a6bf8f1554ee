"""Bad input to the console answers 4xx naming the problem and stores nothing."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stepwise.runs.models import Run
from stepwise.runs.triggers import run_trigger
from stepwise.tasks.models import Schedule
from stepwise.tasks.services import environments_ensure
from tests.console.conftest import csrf_post

pytestmark = pytest.mark.django_db

DEEP = "[" * 10_000 + "]" * 10_000
HUGE_INT = "9" * 5_000
# JSON texts (and near-JSON) of the shapes that once made server errors.
NASTY_JSON = [
    DEEP, '{"a": ' + "[" * 300 + "]" * 300 + "}", HUGE_INT, f'{{"n": {HUGE_INT}}}', "Infinity", "-Infinity",
    "NaN", '{"n": 1e400}', '{"n": 1e20}', '{"s": "a\\u0000b"}', '"\\u0000"', '{"s": "\x00"}', "\x00",
    '{"k\\u0000": 1}', '{"delay": "99999999999999d"}',
]


def stored() -> tuple[int, int]:
    return Run.objects.count(), Schedule.objects.count()


@pytest.mark.parametrize("url", ["/runs/run_a%00b/", "/runs/?task=a%00b", "/runs/?tag=%00", "/queues/x%00/limit/"])
def test_a_nul_character_in_a_path_or_query_string_is_refused_by_name(signed_in, url):
    response = signed_in.post(url) if url.startswith("/queues/") else signed_in.get(url)
    assert response.status_code == 400
    assert "NUL" in response.content.decode()


def test_a_nul_character_in_a_form_is_refused_and_nothing_is_stored(signed_in):
    environments_ensure()
    response = csrf_post(signed_in, "/schedules/?env=dev", {
        "task_id": "test-noop", "cron": "0 * * * *", "timezone": "UTC", "dedup_key": "a\x00b", "payload": "{}",
    })
    assert response.status_code == 400 and "NUL" in response.content.decode()
    assert stored() == (0, 0)


@pytest.mark.parametrize("payload, problem", [
    (DEEP, "nested deeper"), ('{"a": ' + "[" * 300 + "]" * 300 + "}", "nested deeper"),
    (HUGE_INT, "number too large"), ("Infinity", "not a JSON number"), ('{"n": 1e400}', "too large"),
    ('{"s": "a\\u0000b"}', "NUL"),
])
def test_the_test_form_refuses_unstorable_json_by_name(signed_in, payload, problem):
    response = csrf_post(signed_in, "/tasks/test-noop/test/", {"payload": payload}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400 and problem in response.json()["message"]
    assert stored() == (0, 0)


def test_the_replay_and_decision_forms_refuse_deep_json_by_name(signed_in):
    run = run_trigger(task_id="test-noop", payload={})[0]
    replay = csrf_post(signed_in, f"/runs/{run.id}/replay/", {"payload": DEEP}, HTTP_ACCEPT="application/json")
    decide = csrf_post(signed_in, "/waitpoints/wp_nope/decide/", {"decision": "approve", "data": HUGE_INT},
                       HTTP_ACCEPT="application/json")
    assert replay.status_code == 400 and "nested deeper" in replay.json()["message"]
    assert decide.status_code == 400 and "number too large" in decide.json()["message"]
    assert Run.objects.count() == 1


def test_a_cron_that_never_fires_is_refused_by_the_schedules_form(signed_in):
    environments_ensure()
    response = csrf_post(signed_in, "/schedules/?env=dev", {
        "task_id": "test-noop", "cron": "0 0 31 2 *", "timezone": "UTC", "dedup_key": "never", "payload": "{}",
    })
    assert response.status_code == 400 and "never fires" in response.content.decode()
    assert not Schedule.objects.exists()


nasty_text = st.one_of(
    st.sampled_from(NASTY_JSON),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=30),  # NUL and every other character
    st.integers(min_value=10**18).map(str),
    st.floats().map(repr),
)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(form=st.sampled_from(["test", "replay", "decide", "schedule", "schedule-update", "queue-limit", "runs"]),
       field=st.sampled_from(["payload", "data", "cron", "timezone", "dedup_key", "concurrency_limit", "task",
                              "created_after", "before", "run_id"]),
       value=nasty_text)
def test_no_console_form_or_query_makes_a_server_error(signed_in, form, field, value):
    environments_ensure()
    run = Run.objects.first() or run_trigger(task_id="test-noop", payload={})[0]
    before = stored()
    schedule = {"task_id": "test-noop", "cron": "0 * * * *", "timezone": "UTC", "dedup_key": "k", "payload": "{}"}
    json = {"HTTP_ACCEPT": "application/json"}
    if form == "test":
        response = csrf_post(signed_in, "/tasks/test-noop/test/", {field: value, "payload": value}, **json)
    elif form == "replay":
        response = csrf_post(signed_in, f"/runs/{run.id}/replay/", {"payload": value}, **json)
    elif form == "decide":
        response = csrf_post(signed_in, "/waitpoints/wp_nope/decide/", {"decision": "approve", "data": value}, **json)
    elif form == "schedule":
        response = csrf_post(signed_in, "/schedules/?env=dev", {**schedule, field: value})
    elif form == "schedule-update":
        response = csrf_post(signed_in, "/schedules/1/?env=dev", {field: value}, **json)
    elif form == "queue-limit":
        response = csrf_post(signed_in, "/queues/task/test-noop/limit/", {"concurrency_limit": value}, **json)
    else:
        response = signed_in.get("/runs/", {field: value})
    assert response.status_code < 500, (form, field, value[:80])
    if response.status_code >= 400:
        assert stored() == before, (form, field, value[:80])
