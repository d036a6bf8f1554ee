"""Console v2 on the server: the compact timeline, queued segments, the run's context and waits, sending
an event, the waitpoints page and the runs list's counts, presets and environment switcher."""
from __future__ import annotations

import gzip
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from stepwise.runs.models import Attempt, Event, Run, Waitpoint
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.services import environments_ensure
from tests.console.conftest import csrf_post
from tests.factories import run_build, waitpoint_build
from tests.roles import grant

pytestmark = pytest.mark.django_db

AS_JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture(autouse=True)
def environments(db):
    environments_ensure()


def timeline(client: Client, run: Run) -> list[dict]:
    return client.get(f"/runs/{run.id}/timeline.json").json()["spans"]


def test_a_2000_step_timeline_is_small_and_names_each_step_by_its_key(signed_in):
    run = run_build(steps=2000)

    plain = signed_in.get(f"/runs/{run.id}/timeline.json")
    packed = signed_in.get(f"/runs/{run.id}/timeline.json", HTTP_ACCEPT_ENCODING="gzip")

    steps = [s for s in plain.json()["spans"] if s["kind"] == "step"]
    assert [s["attributes"]["key"] for s in steps[:3]] == ["fragile", "step-2", "step-3"]
    # Nothing a step lacks travels: no empty logs, no null error.
    assert not any("logs" in s or "error" in s for s in steps)
    assert len(plain.content) / 2000 < 240  # bytes per step (was ~265 with the empty fields)
    assert packed["Content-Encoding"] == "gzip"
    assert len(packed.content) < 60_000
    assert json.loads(gzip.decompress(packed.content))["spans"] == plain.json()["spans"]


def test_the_first_screen_of_a_long_run_comes_alone_and_says_the_rest_follows(signed_in):
    long, short = run_build(steps=500), run_build(steps=5)

    quick = signed_in.get(f"/runs/{long.id}/timeline.json?first=200").json()
    whole = signed_in.get(f"/runs/{short.id}/timeline.json?first=200").json()

    assert quick["partial"] is True
    assert [s["attributes"]["position"] for s in quick["spans"] if s["kind"] == "step"] == list(range(1, 201))
    assert whole["partial"] is False and sum(s["kind"] == "step" for s in whole["spans"]) == 5
    assert signed_in.get(f"/runs/{long.id}/timeline.json").json()["partial"] is False


def test_the_time_a_run_sat_in_its_queue_is_its_own_segment_before_the_attempt(signed_in):
    run = run_build(steps=1)
    attempt = Attempt.objects.get(run=run, number=1)
    Run.objects.filter(id=run.id).update(created_at=attempt.started_at - timedelta(seconds=8))

    spans = timeline(signed_in, run)

    queued = next(s for s in spans if s["kind"] == "queued")
    assert queued["name"] == "Queued" and queued["status"] == "COMPLETED"
    assert queued["end"] - queued["start"] == pytest.approx(8000, abs=1)
    assert [s["kind"] for s in spans].index("queued") < [s["kind"] for s in spans].index("attempt")


def test_a_run_still_queued_has_an_open_queued_segment(signed_in):
    run = run_trigger(task_id="test-noop", payload={})[0]
    assert Run.objects.get(id=run.id).status == "QUEUED"

    spans = timeline(signed_in, run)

    assert [(s["kind"], s["status"], s["end"]) for s in spans[1:]] == [("queued", "QUEUED", None)]


def test_a_step_cut_short_by_a_cancel_is_drawn_canceled_not_failed(signed_in):
    run = run_build(steps=0, failed_attempts=1)
    Attempt.objects.filter(run=run, number=1).update(status="CANCELED", error=None)

    cut = next(s for s in timeline(signed_in, run) if s["kind"] == "step" and s["parent"] == "attempt-1")

    assert cut["status"] == "CANCELED" and "error" not in cut


def test_the_run_page_has_tabs_context_logs_and_a_folded_checkpoint_panel(signed_in):
    parent = run_trigger(task_id="test-noop", payload={})[0]
    run = run_trigger(task_id="test-noop", payload={},
                      options=TriggerOptions(tags=["schedule:42"], idempotency_key="order-7"))[0]
    Run.objects.filter(id=run.id).update(parent_run=parent, root_run=parent, worker_id="worker-host-1")

    page = signed_in.get(f"/runs/{run.id}/").content.decode()

    tabs = [line for line in page.splitlines() if 'role="tab"' in line]
    assert [t.split('">', 1)[1].split("<", 1)[0].strip() for t in tabs] == ["Output", "Payload", "Metadata", "Context",
                                                                            "Logs"]
    context = page[page.index('id="run-context"'):]
    assert "worker-host-1" in context and "order-7" in context and "global scope" in context
    assert f'href="/runs/{parent.id}/"' in context  # parent and root
    assert "#schedule-42" in context
    assert '<details class="card card-fold" id="checkpoint">' in page  # folded until opened


def test_cancel_on_the_run_page_asks_before_it_acts(signed_in):
    run = run_trigger(task_id="test-noop", payload={})[0]

    page = signed_in.get(f"/runs/{run.id}/").content.decode()

    confirm = page[page.index('id="cancel-confirm"'):]
    assert confirm.index("<summary") < confirm.index('id="cancel-form"')  # the form sits behind the summary
    assert "Keep it running" in confirm


def test_a_run_waiting_for_an_event_offers_to_send_it(signed_in):
    wp = waitpoint_build(kind="EVENT", event_name="order.paid", event_filter={"orderId": "7"})

    page = signed_in.get(f"/runs/{wp.run_id}/").content.decode()

    waiting = page[page.index('id="waiting-for"'):]
    assert 'action="/events/send/"' in waiting and 'value="order.paid"' in waiting
    assert "{&quot;orderId&quot;: &quot;7&quot;}" in waiting  # the payload box starts with what the filter needs


def test_sending_an_event_from_the_console_resumes_the_wait_it_matches(signed_in):
    wp = waitpoint_build(kind="EVENT", event_name="order.paid", event_filter={"orderId": "7"})

    answer = csrf_post(signed_in, "/events/send/",
                       {"name": "order.paid", "environment": "dev", "payload": '{"orderId": "7"}'}, **AS_JSON)

    assert answer.status_code == 200, answer.content
    assert answer.json()["message"] == "Sent event order.paid: 1 wait resumes."
    assert Waitpoint.objects.get(id=wp.id).status == "COMPLETED"


def test_a_bad_event_payload_is_refused_and_nothing_is_sent(signed_in):
    waitpoint_build(kind="EVENT", event_name="order.paid")

    for payload, problem in (('{"orderId": ', "event payload"), ("", None)):
        answer = csrf_post(signed_in, "/events/send/",
                           {"name": "bad name!", "environment": "dev", "payload": payload}, **AS_JSON)
        assert answer.status_code == 400
        assert problem is None or problem in answer.json()["message"]
    assert Event.objects.count() == 0


def test_a_viewer_may_not_send_events_and_sees_no_send_form():
    wp = waitpoint_build(kind="EVENT", event_name="order.paid")
    viewer = User.objects.create_user("vera", password="pw-long-enough-123")
    grant(viewer, "dev", "viewer")
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer)

    assert 'action="/events/send/"' not in client.get(f"/runs/{wp.run_id}/").content.decode()
    answer = csrf_post(client, "/events/send/", {"name": "order.paid", "environment": "dev", "payload": "{}"},
                       **AS_JSON)
    assert answer.status_code == 403
    assert Event.objects.count() == 0


def test_the_waitpoints_page_lists_approvals_event_waits_and_timers(signed_in, django_assert_num_queries):
    token = waitpoint_build(kind="TOKEN")
    event = waitpoint_build(kind="EVENT", event_name="order.paid")
    timer = waitpoint_build(kind="DURATION")
    Waitpoint.objects.filter(id=timer.id).update(resume_at=timezone.now() + timedelta(hours=2))

    # session, user, the pending waitpoints with their runs
    with django_assert_num_queries(3):
        page = signed_in.get("/waitpoints/").content.decode()

    approvals = page[page.index('id="pending-approvals"'):page.index('id="event-waits"')]
    events = page[page.index('id="event-waits"'):page.index('id="timer-waits"')]
    timers = page[page.index('id="timer-waits"'):]
    assert token.id in approvals and event.id in events and timer.id in timers
    assert 'action="/events/send/"' in events and "Approve" in approvals


def test_runs_list_counts_each_status_and_shows_attempts(signed_in):
    run_build(status="COMPLETED", failed_attempts=2)
    run_build(status="FAILED")
    run_build(status="FAILED")

    page = signed_in.get("/").content.decode()

    assert '<span class="dot status-failed"></span>Failed <b>2</b>' in page
    assert '<span class="dot status-completed"></span>Completed <b>1</b>' in page
    assert '<td class="num mono col-attempts">3</td>' in page


def test_runs_list_time_presets_keep_only_recent_runs(signed_in, monkeypatch):
    run = run_build()
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr("stepwise.console.views.runs.timezone.now", lambda: later)  # the run is two hours old now

    within_hour = signed_in.get("/?period=1h").content.decode()
    within_day = signed_in.get("/?period=24h").content.decode()

    assert run.id not in within_hour and run.id in within_day
    assert 'aria-current="true">24h</a>' in within_day


def test_runs_list_environment_switcher_shows_one_environment(signed_in):
    dev = run_trigger(task_id="test-noop", payload={})[0]
    prod = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(environment="prod"))[0]

    page = signed_in.get("/?env=prod").content.decode()
    updates = signed_in.get("/runs/updates.json?env=prod&newest=run_0").json()

    assert prod.id in page and dev.id not in page
    assert [row["id"] for row in updates["rows"]] == [prod.id]
    assert 'env=prod" aria-current="page">prod</a>' in page


def test_runs_list_environment_switcher_ignores_an_environment_the_user_may_not_read():
    prod = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(environment="prod"))[0]
    viewer = User.objects.create_user("vera", password="pw-long-enough-123")
    grant(viewer, "dev", "viewer")
    client = Client()
    client.force_login(viewer)

    page = client.get("/?env=prod").content.decode()

    assert prod.id not in page
    assert ">prod</a>" not in page  # only the environments the user may read are offered
