"""The run page and the JSON it reads: timeline spans, events after a seq, steps and checkpoint state."""
from __future__ import annotations

import re

import pytest
from django.db import transaction
from django.utils import timezone

from stepwise.runs.engine.errors import error_describe
from stepwise.runs.events import event_append
from stepwise.runs.models import Attempt, Run
from stepwise.runs.sweeper import pinned_runs_sweep
from stepwise.runs.triggers import run_trigger
from tests.factories import ELSEWHERE, chained_error_build, run_build, run_pinned_elsewhere

pytestmark = pytest.mark.django_db


def test_run_page_shows_the_run_with_its_payload_and_actions(signed_in):
    run = run_trigger(task_id="test-noop", payload={"orderId": "A-17"})[0]

    page = signed_in.get(f"/runs/{run.id}/").content.decode()

    assert run.id in page and "test-noop" in page
    assert "&quot;orderId&quot;: &quot;A-17&quot;" in page or '"orderId": "A-17"' in page
    assert f'action="/runs/{run.id}/cancel/"' in page
    assert f'action="/runs/{run.id}/replay/"' in page


def test_run_page_of_an_unknown_run_is_not_found(signed_in):
    assert signed_in.get("/runs/run_nope/").status_code == 404


def test_run_page_and_timeline_take_fixed_queries_however_many_steps(signed_in, django_assert_num_queries):
    small = run_build(steps=2, failed_attempts=1)
    large = run_build(steps=300, failed_attempts=2)
    for run in (small, large):
        # session, user, the run with its task, version and links, its pending waits, its streams' chunks
        with django_assert_num_queries(5):
            assert signed_in.get(f"/runs/{run.id}/").status_code == 200
        # session, user, run, attempts, steps, started-step events, spans, waitpoints
        with django_assert_num_queries(8):
            assert signed_in.get(f"/runs/{run.id}/timeline.json").status_code == 200


def test_timeline_shows_failed_attempts_retry_delays_and_steps_under_their_attempt(signed_in):
    run = run_build(steps=3, failed_attempts=1, retry_delay=2.5)

    spans = signed_in.get(f"/runs/{run.id}/timeline.json").json()["spans"]

    assert spans[1]["kind"] == "queued"  # from its trigger to its first attempt
    spans = [spans[0], *spans[2:]]
    assert [(s["kind"], s["status"]) for s in spans] == [
        ("run", "COMPLETED"),
        ("attempt", "FAILED"),
        ("step", "INTERRUPTED"),
        ("retry", "RETRYING"),
        ("attempt", "COMPLETED"),
        ("step", "COMPLETED"),
        ("step", "COMPLETED"),
        ("step", "COMPLETED"),
    ]
    failed, interrupted, retry, second = spans[1:5]
    assert failed["error"]["message"] == "attempt 1 broke"
    assert interrupted["parent"] == "attempt-1" and interrupted["error"]["type"] == "Flaky"
    assert retry["end"] - retry["start"] == pytest.approx(2500, abs=1)
    assert retry["start"] == failed["end"]
    assert second["start"] >= retry["end"] - 1
    assert {s["parent"] for s in spans[5:]} == {"attempt-2"}
    assert all(s["end"] >= s["start"] for s in spans)


def test_a_version_mismatch_is_a_log_marker_on_the_run_bar(signed_in):
    run = run_build(steps=1)
    with transaction.atomic():
        data = {"pinned": "a" * 64, "worker": "b" * 64, "attempt": 1}
        event_append(run_id=run.id, type="version.mismatch", data=data)

    run_span = signed_in.get(f"/runs/{run.id}/timeline.json").json()["spans"][0]

    assert [log["message"] for log in run_span["logs"]] == [
        "version mismatch: attempt 1 ran code bbbbbbbbbb, the run is pinned to aaaaaaaaaa"]


def test_a_pinned_run_waiting_for_a_worker_of_its_version_says_so_on_its_page(signed_in, settings):
    settings.STEPWISE_VERSION_GRACE_SECONDS = 600
    run = run_pinned_elsewhere()
    page = signed_in.get(f"/runs/{run.id}/").content.decode()
    assert ">pinned</span>" in page and "Waiting for a worker" not in page

    pinned_runs_sweep(timezone.now())  # no running worker holds that version

    page = signed_in.get(f"/runs/{run.id}/").content.decode()
    assert f"Waiting for a worker of version {ELSEWHERE[:10]}" in page
    run_span = signed_in.get(f"/runs/{run.id}/timeline.json").json()["spans"][0]
    assert run_span["attributes"]["version_policy"] == "pin"
    assert [log["message"] for log in run_span["logs"]] == [
        f"waiting for a worker of version {ELSEWHERE[:10]}: no running worker holds it (fails after 600s)"]


def test_each_attempt_on_the_timeline_names_the_version_that_ran_it(signed_in):
    run = run_build(steps=1, failed_attempts=1)
    spans = signed_in.get(f"/runs/{run.id}/timeline.json").json()["spans"]
    assert [s["attributes"]["version"] for s in spans if s["kind"] == "attempt"] == [run.version.label] * 2


def test_events_json_returns_the_events_after_a_seq_in_order(signed_in):
    run = run_build(steps=1, failed_attempts=1)

    everything = signed_in.get(f"/runs/{run.id}/events.json?after=0").json()["events"]
    rest = signed_in.get(f"/runs/{run.id}/events.json?after=3").json()["events"]

    assert [e["seq"] for e in everything] == list(range(1, run.last_event_seq + 1))
    assert rest == everything[3:]
    assert set(everything[0]) == {"run_id", "seq", "type", "data", "at"}


def test_step_json_gives_the_recorded_output_for_the_inspector(signed_in):
    run = run_build(steps=3)

    step = signed_in.get(f"/runs/{run.id}/steps/2.json").json()

    assert step["recorded"] and step["key"] == "step-2"
    assert step["output"] == {"position": 2, "value": 20}
    assert step["duration_ms"] == pytest.approx(1)


def test_checkpoint_state_holds_the_step_results_recorded_up_to_a_step(signed_in):
    run = run_build(steps=4)

    upto_2 = signed_in.get(f"/runs/{run.id}/checkpoint.json?position=2").json()["state"]
    everything = signed_in.get(f"/runs/{run.id}/checkpoint.json").json()["state"]

    assert upto_2 == {"fragile": {"position": 1, "value": 10}, "step-2": {"position": 2, "value": 20}}
    assert list(everything) == ["fragile", "step-2", "step-3", "step-4"]


@pytest.mark.django_db(transaction=True)
def test_a_step_cut_short_by_its_failed_attempt_shows_on_the_timeline_after_a_reload(signed_in):
    from stepwise.runs.worker import run_attempt

    run = run_trigger(task_id="test-third-step-flaky", payload={})[0]
    assert run_attempt(run.id).result == "retrying"

    spans = signed_in.get(f"/runs/{run.id}/timeline.json").json()["spans"]

    cut = [s for s in spans if s["kind"] == "step" and s["status"] == "INTERRUPTED"]
    assert [(s["parent"], s["attributes"]["key"]) for s in cut] == [("attempt-1", "third")]
    assert cut[0]["error"]["message"] == "third step fails on attempt 1"
    assert cut[0]["end"] >= cut[0]["start"]


def test_run_page_shows_the_error_chain_with_the_causes_left_off_and_the_traceback_folded(signed_in):
    run = run_build(failed_attempts=1, status="FAILED")
    error = error_describe(chained_error_build(7))
    Run.objects.filter(id=run.id).update(error=error)
    Attempt.objects.filter(run_id=run.id, number=1).update(error=error)

    page = signed_in.get(f"/runs/{run.id}/").content.decode()
    card = page[page.index('id="result-card"'):]

    assert '<p class="error-line"><strong>ValueError</strong>: level 7</p>' in card
    causes = re.findall(r'<span class="cause-text"><strong>(\w+)</strong>: (.*?)</span>', card)
    assert causes == [("ValueError", f"level {n}") for n in (6, 5, 4, 3, 2)]
    assert "and 2 more causes, in the traceback" in card
    assert '<details class="traceback"><summary>Traceback</summary>' in card  # folded: no "open"
    assert "KeyError: &#x27;&lt;root&gt;&#x27;" in card and "<root>" not in card
    spans = signed_in.get(f"/runs/{run.id}/timeline.json").json()["spans"]
    interrupted = next(s for s in spans if s["status"] == "INTERRUPTED")
    assert [c["message"] for c in interrupted["error"]["causes"]] == [f"level {n}" for n in (6, 5, 4, 3, 2)]
    assert interrupted["error"]["causes_left_off"] == 2 and "traceback" not in interrupted["error"]
