"""The runs endpoints: trigger, batch, get, list with filters and cursor, cancel, replay, bad input."""
from __future__ import annotations

import json

from django.test import Client
from django.utils import timezone

from stepwise.runs.models import Run
from stepwise.runs.statuses import RunStatus
from stepwise.runs.sweeper import pinned_runs_sweep
from stepwise.tasks.models import Queue
from tests.factories import ELSEWHERE, run_build, run_pinned_elsewhere
from tests.waiting import wait_finished


def test_trigger_creates_a_run_and_get_returns_it(api):
    response = api.post("/api/tasks/test-noop/trigger", {"payload": {"a": 1}, "tags": ["vip"], "priority": 3})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "QUEUED" and body["created"] is True
    run = Run.objects.get(id=body["id"])
    assert run.payload == {"a": 1} and run.tags == ["vip"] and run.priority == 3 and run.environment_id == "dev"

    detail = api.get(f"/api/runs/{run.id}").json()
    assert detail["payload"] == {"a": 1} and detail["task_id"] == "test-noop"
    assert detail["attempts"] == [] and detail["steps"] == [] and detail["environment"] == "dev"


def test_trigger_with_the_same_idempotency_key_returns_the_existing_run(api):
    first = api.post("/api/tasks/test-noop/trigger", {"payload": {}, "idempotency_key": "k1"})
    second = api.post("/api/tasks/test-noop/trigger", {"payload": {}, "idempotency_key": "k1"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"] and second.json()["created"] is False


def test_bad_input_is_a_4xx_naming_the_problem_and_stores_nothing(api, settings):
    cases = [
        (api.post("/api/tasks/nope/trigger", {"payload": {}}), 404, "unknown task 'nope'"),
        (api.post("/api/tasks/test-noop/trigger", {"payload": {}, "priority": "high"}), 422, "priority"),
        (api.post("/api/tasks/test-noop/trigger", {"payload": {}, "tags": "vip"}), 422, "tags"),
        (api.post("/api/tasks/test-noop/trigger", {"payload": {}, "delay": "soon"}), 400, "delay"),
        (api.post("/api/tasks/test-noop/trigger", {"payload": "x" * (settings.STEPWISE_MAX_PAYLOAD_BYTES + 10)}),
         400, "payload"),
        (api.client.post("/api/tasks/test-noop/trigger", "{oops", content_type="application/json",
                         headers=api._headers()), 400, ""),
        (api.post("/api/tasks/test-noop/batch", {"items": []}), 422, "items"),
        (api.post("/api/tasks/test-noop/batch", {"items": [{"payload": 1}, {"payload": 2, "ttl": "x"}]}),
         400, "batch item 1"),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status, response.content
        assert fragment in json.dumps(response.json())
    assert not Run.objects.exists()


def test_requests_without_a_valid_key_are_refused(api):
    assert Client().get("/api/runs").status_code == 401
    assert Client().get("/api/runs", headers={"Authorization": "Bearer sk_dev_nope"}).status_code == 401
    assert Client().get(f"/api/runs?api_key={api.secret}").status_code == 401
    assert Client().get("/api/runs", headers={"Authorization": f"Bearer {api.secret}"}).status_code == 200


def test_every_call_is_scoped_to_the_keys_environment(api, prod_api):
    prod_run = prod_api.post("/api/tasks/test-noop/trigger", {"payload": {}}).json()["id"]
    dev_run = api.post("/api/tasks/test-noop/trigger", {"payload": {}}).json()["id"]
    assert Run.objects.get(id=prod_run).environment_id == "prod"
    assert [r["id"] for r in api.get("/api/runs").json()["items"]] == [dev_run]
    assert api.get(f"/api/runs/{prod_run}").status_code == 404
    assert api.post(f"/api/runs/{prod_run}/cancel").status_code == 404
    assert Run.objects.get(id=prod_run).status == RunStatus.QUEUED


def test_list_filters_and_cursor_pagination(api):
    ids = [api.post("/api/tasks/test-noop/trigger", {"payload": {"i": i}, "tags": [f"t{i % 2}"]}).json()["id"]
           for i in range(5)]
    api.post("/api/tasks/test-abort/trigger", {"payload": {}, "idempotency_key": "only"})
    page1 = api.get("/api/runs", task="test-noop", limit=2).json()
    page2 = api.get("/api/runs", task="test-noop", limit=2, cursor=page1["next_cursor"]).json()
    page3 = api.get("/api/runs", task="test-noop", limit=2, cursor=page2["next_cursor"]).json()
    seen = [r["id"] for p in (page1, page2, page3) for r in p["items"]]
    assert seen == list(reversed(ids)) and page3["next_cursor"] is None
    assert {r["id"] for r in api.get("/api/runs", tag="t0").json()["items"]} == {ids[0], ids[2], ids[4]}
    assert [r["task_id"] for r in api.get("/api/runs", idempotency_key="only").json()["items"]] == ["test-abort"]
    assert len(api.get("/api/runs", status="QUEUED").json()["items"]) == 6
    assert api.get("/api/runs", status="NOPE").status_code == 422


def test_list_endpoint_query_count_does_not_grow_with_runs(api, django_assert_num_queries):
    for i in range(3):
        api.post("/api/tasks/test-noop/trigger", {"payload": {"i": i}})
    # auth lookup, last_used_at update, the page.
    with django_assert_num_queries(3):
        assert len(api.get("/api/runs").json()["items"]) == 3
    for i in range(20):
        api.post("/api/tasks/test-noop/trigger", {"payload": {"i": i}})
    with django_assert_num_queries(3):
        assert len(api.get("/api/runs").json()["items"]) == 23


def test_cancel_and_cancel_again(api):
    Queue.objects.update_or_create(environment_id="dev", name="task/test-noop", defaults={"paused": True})
    run_id = api.post("/api/tasks/test-noop/trigger", {"payload": {}}).json()["id"]
    canceled = api.post(f"/api/runs/{run_id}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "CANCELED"
    again = api.post(f"/api/runs/{run_id}/cancel")
    assert again.status_code == 409 and "already CANCELED" in again.json()["detail"]
    assert api.post("/api/runs/run_nope/cancel").status_code == 404


def test_replay_with_an_edited_payload(api):
    run_id = api.post("/api/tasks/test-noop/trigger", {"payload": {"v": 1}}).json()["id"]
    same = api.post(f"/api/runs/{run_id}/replay").json()["id"]
    edited = api.post(f"/api/runs/{run_id}/replay", {"payload": {"v": 2}}).json()["id"]
    assert Run.objects.get(id=same).payload == {"v": 1}
    assert Run.objects.get(id=edited).payload == {"v": 2}
    assert Run.objects.get(id=edited).replayed_from_id == run_id


def test_get_run_shows_attempts_steps_and_output(live_api):
    run_id = live_api.post("/api/tasks/test-third-step-flaky/trigger", {"payload": {}}).json()["id"]
    wait_finished(run_id)
    detail = live_api.get(f"/api/runs/{run_id}").json()
    assert detail["status"] == "COMPLETED"
    assert detail["output"] == {"results": ["first-done", "second-done", "third-done"]}
    assert [a["status"] for a in detail["attempts"]] == ["FAILED", "FAILED", "COMPLETED"]
    assert [s["key"] for s in detail["steps"]] == ["first", "second", "third"]


def test_a_failed_run_shows_the_cause_chain_of_its_error_attempts_and_step_with_secrets_masked(live_api):
    run_id = live_api.post("/api/tasks/test-chained-failure/trigger", {"payload": {}}).json()["id"]
    assert wait_finished(run_id).status == RunStatus.FAILED

    response = live_api.get(f"/api/runs/{run_id}")
    detail = response.json()

    chain = [("ConnectionError", "partner refused key ••••"), ("ValueError", "bad total"), ("KeyError", "'total'")]
    error = detail["error"]
    assert (error["type"], error["message"]) == ("stepwise.runs.engine.errors.AbortRun", "could not charge order A-17")
    assert [(c["type"], c["message"]) for c in error["causes"]] == chain
    assert error["causes"][1]["where"].startswith("tests/engine_tasks.py:")
    assert error["causes"][1]["where"].endswith(" in read_total")
    assert error["causes_left_off"] == 0 and "bad total" in error["traceback"]
    first, second = detail["attempts"]
    assert (first["error"]["type"], second["error"]["type"]) == ("tests.engine_tasks.Flaky", error["type"])
    assert [(c["type"], c["message"]) for c in first["error"]["causes"]] == chain
    assert [(c["type"], c["message"]) for c in detail["steps"][0]["error"]["causes"]] == chain
    assert "canary-" not in response.content.decode()


def test_the_openapi_schema_documents_the_cause_chain_of_errors(api):
    schemas = api.get("/api/openapi.json").json()["components"]["schemas"]

    assert set(schemas["ErrorOut"]["properties"]) == {"type", "message", "where", "causes", "causes_left_off",
                                                      "traceback"}
    assert schemas["ErrorOut"]["properties"]["causes"]["items"] == {"$ref": "#/components/schemas/ErrorCauseOut"}
    assert "raise ... from None" in schemas["ErrorOut"]["properties"]["causes"]["description"]
    run_error = schemas["RunOut"]["properties"]["error"]
    assert {"$ref": "#/components/schemas/ErrorOut"} in run_error["anyOf"]


def test_get_run_shows_its_version_policy_and_that_it_waits_for_a_worker_of_its_version(api):
    run_id = run_pinned_elsewhere().id
    detail = api.get(f"/api/runs/{run_id}").json()
    assert (detail["version"], detail["version_policy"], detail["waiting_for_version"]) == (
        ELSEWHERE[:10], "pin", False)

    pinned_runs_sweep(timezone.now())  # no running worker holds that version

    assert api.get(f"/api/runs/{run_id}").json()["waiting_for_version"] is True
    listed = api.get("/api/runs", task="test-pinned-noop").json()["items"]
    assert [(r["id"], r["waiting_for_version"]) for r in listed] == [(run_id, True)]


def test_get_run_shows_the_version_each_attempt_ran(api):
    run = run_build(steps=1, failed_attempts=1)
    detail = api.get(f"/api/runs/{run.id}").json()
    assert [a["version"] for a in detail["attempts"]] == [run.version.label] * 2
