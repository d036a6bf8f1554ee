"""Cancel, retry, replay with an edited payload, bulk actions and the tasks page's Test form."""
from __future__ import annotations

import pytest

from stepwise.runs.models import Run
from stepwise.runs.triggers import run_trigger
from tests.console.conftest import csrf_post
from tests.factories import run_build

pytestmark = pytest.mark.django_db


def queued(payload=None) -> Run:
    return run_trigger(task_id="test-noop", payload=payload or {"a": 1})[0]


def test_cancel_cancels_the_run_and_says_so(signed_in):
    run = queued()

    response = csrf_post(signed_in, f"/runs/{run.id}/cancel/", follow=True)

    assert Run.objects.get(id=run.id).status == "CANCELED"
    assert f"Run {run.id} canceled." in response.content.decode()
    assert Run.objects.get(id=run.id).error["message"] == "canceled by ada"


def test_cancel_of_a_finished_run_answers_with_the_reason_as_json(signed_in):
    run = run_build(status="COMPLETED")

    response = csrf_post(signed_in, f"/runs/{run.id}/cancel/", HTTP_ACCEPT="application/json")

    assert response.status_code == 409
    assert response.json() == {"ok": False, "message": f"run {run.id} is already COMPLETED; it cannot be canceled",
                               "redirect": f"/runs/{run.id}/"}


def test_retry_starts_a_linked_run_with_the_same_payload(signed_in):
    run = run_build(payload={"orderId": "7"}, status="FAILED")

    response = csrf_post(signed_in, f"/runs/{run.id}/replay/", HTTP_ACCEPT="application/json")

    retry = Run.objects.exclude(id=run.id).get()
    assert response.json()["redirect"] == f"/runs/{retry.id}/"
    assert response.json()["message"] == f"Retried as {retry.id}."
    assert (retry.payload, retry.replayed_from_id, retry.status) == ({"orderId": "7"}, run.id, "QUEUED")


def test_replay_with_an_edited_payload_uses_the_new_payload(signed_in):
    run = run_build(payload={"orderId": "7"})

    response = csrf_post(signed_in, f"/runs/{run.id}/replay/", {"payload": '{"orderId": "8", "rush": true}'})

    replay = Run.objects.exclude(id=run.id).get()
    assert response["Location"] == f"/runs/{replay.id}/"
    assert replay.payload == {"orderId": "8", "rush": True}
    assert replay.replayed_from_id == run.id


def test_replay_with_invalid_json_starts_nothing_and_names_the_problem(signed_in):
    run = run_build()

    response = csrf_post(signed_in, f"/runs/{run.id}/replay/", {"payload": '{"orderId": '},
                         HTTP_ACCEPT="application/json")

    assert response.status_code == 400
    assert "payload is not valid JSON" in response.json()["message"]
    assert Run.objects.count() == 1


def test_bulk_cancel_cancels_the_selected_runs_and_reports_finished_ones(signed_in):
    first, second, untouched = queued(), queued(), queued()
    done = run_build()

    response = csrf_post(signed_in, "/runs/bulk/", {"action": "cancel", "run_ids": [first.id, second.id, done.id]},
                         HTTP_ACCEPT="application/json")

    statuses = dict(Run.objects.values_list("id", "status"))
    assert (statuses[first.id], statuses[second.id], statuses[untouched.id]) == ("CANCELED", "CANCELED", "QUEUED")
    assert response.json()["message"].startswith("Canceled 2 runs. 1 skipped: run ")


def test_bulk_replay_starts_one_linked_run_per_selected_run(signed_in):
    first, second = run_build(payload={"n": 1}), run_build(payload={"n": 2})

    csrf_post(signed_in, "/runs/bulk/", {"action": "replay", "run_ids": [first.id, second.id]})

    replays = Run.objects.filter(replayed_from__isnull=False)
    assert sorted((r.replayed_from_id, r.payload["n"]) for r in replays) == sorted([(first.id, 1), (second.id, 2)])


def test_test_form_triggers_the_task_with_the_typed_payload(signed_in):
    response = csrf_post(signed_in, "/tasks/test-noop/test/", {"payload": '{"hello": "world"}'})

    run = Run.objects.get()
    assert (run.task_id, run.payload) == ("test-noop", {"hello": "world"})
    assert response["Location"] == f"/runs/{run.id}/"


def test_test_form_of_an_unknown_task_says_which_tasks_exist(signed_in):
    response = csrf_post(signed_in, "/tasks/no-such-task/test/", {"payload": "{}"}, HTTP_ACCEPT="application/json")

    assert response.status_code == 400
    assert "unknown task 'no-such-task'" in response.json()["message"]
    assert not Run.objects.exists()
