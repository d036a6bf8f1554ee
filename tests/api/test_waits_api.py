"""The waits endpoints: send an event; list, get, complete, approve and reject waitpoints."""
from __future__ import annotations

import json

from stepwise.runs.models import Event, Run, Waitpoint
from stepwise.runs.statuses import RunStatus
from stepwise.tasks.access import SCOPES
from stepwise.tasks.apikeys import api_key_create
from tests.api.conftest import ApiClient
from tests.factories import waitpoint_build
from tests.waiting import wait_finished, wait_for


def wait_status(run_id: str, status: str) -> Run:
    return wait_for(lambda: Run.objects.filter(id=run_id, status=status).first(),
                    message=f"run {run_id} to be {status}")


def trigger_waiting(api: ApiClient, task_id: str, payload: dict | None = None) -> str:
    run_id = api.post(f"/api/tasks/{task_id}/trigger", {"payload": payload or {}}).json()["id"]
    wait_status(run_id, RunStatus.WAITING)
    return run_id


def test_event_sent_through_the_api_resumes_the_waiting_run_with_its_payload(live_api):
    run_id = trigger_waiting(live_api, "test-wait-event", {"filter": {"orderId": "o1"}})
    prod_api = ApiClient(api_key_create(environment="prod", name="prod", scopes=SCOPES).secret)

    from_prod = prod_api.post("/api/events", {"name": "paid", "payload": {"orderId": "o1", "amount": 1}})
    assert from_prod.status_code == 201 and from_prod.json()["resumed_runs"] == 0
    assert Run.objects.get(id=run_id).status == RunStatus.WAITING
    sent = live_api.post("/api/events", {"name": "paid", "payload": {"orderId": "o1", "amount": 5}})
    assert sent.status_code == 201, sent.content
    assert sent.json()["resumed_runs"] == 1 and sent.json()["name"] == "paid"

    run = wait_finished(run_id)
    assert run.status == RunStatus.COMPLETED
    assert run.output == {"ok": True, "timed_out": False, "event": {"orderId": "o1", "amount": 5}}
    assert Event.objects.get(id=sent.json()["id"]).environment_id == "dev"
    assert Event.objects.get(id=from_prod.json()["id"]).environment_id == "prod"


def test_approve_and_reject_through_the_api_resume_runs_with_the_answer(live_api):
    approved_run = trigger_waiting(live_api, "test-wait-token")
    rejected_run = trigger_waiting(live_api, "test-wait-token")
    listed = live_api.get("/api/waitpoints", kind="TOKEN").json()["items"]
    assert [w["run_id"] for w in listed] == [approved_run, rejected_run]
    assert listed[0]["description"] == "approve the test" and listed[0]["task_id"] == "test-wait-token"

    approved = live_api.post(f"/api/waitpoints/{listed[0]['id']}/approve", {"data": {"note": "fine"}})
    rejected = live_api.post(f"/api/waitpoints/{listed[1]['id']}/reject")
    assert approved.status_code == 200 and approved.json()["status"] == "COMPLETED"
    assert rejected.json()["output"] == {"approved": False}

    assert wait_finished(approved_run).output == {"ok": True, "output": {"note": "fine", "approved": True}}
    assert wait_finished(rejected_run).output == {"ok": True, "output": {"approved": False}}
    assert Waitpoint.objects.get(id=listed[0]["id"]).completed_by.startswith("api key live tests (sk_dev_")
    assert live_api.get("/api/waitpoints").json()["items"] == []


def test_list_and_get_show_only_the_keys_environment(api, prod_api):
    token, event = waitpoint_build(), waitpoint_build(kind="EVENT", event_name="paid")
    prod_token = waitpoint_build(environment="prod")

    assert [w["id"] for w in api.get("/api/waitpoints").json()["items"]] == [token.id, event.id]
    assert [w["id"] for w in api.get("/api/waitpoints", kind="EVENT").json()["items"]] == [event.id]
    assert [w["id"] for w in api.get("/api/waitpoints", run_id=token.run_id).json()["items"]] == [token.id]
    assert api.get("/api/waitpoints", status="COMPLETED").json()["items"] == []
    assert [w["id"] for w in prod_api.get("/api/waitpoints").json()["items"]] == [prod_token.id]

    detail = api.get(f"/api/waitpoints/{event.id}").json()
    assert detail["kind"] == "EVENT" and detail["event_name"] == "paid" and detail["run_id"] == event.run_id
    assert prod_api.get(f"/api/waitpoints/{token.id}").status_code == 404


def test_a_prod_key_cannot_complete_a_dev_waitpoint_nor_resume_it_with_an_event(api, prod_api):
    token, event = waitpoint_build(), waitpoint_build(kind="EVENT", event_name="paid")
    for action, body in (("complete", {"output": 1}), ("approve", {}), ("reject", {})):
        refused = prod_api.post(f"/api/waitpoints/{token.id}/{action}", body)
        assert refused.status_code == 404, refused.content
        assert f"no waitpoint with id '{token.id}' in environment 'prod'" in refused.json()["detail"]
    assert prod_api.post("/api/events", {"name": "paid"}).json()["resumed_runs"] == 0
    assert set(Waitpoint.objects.values_list("status", flat=True)) == {"PENDING"}
    assert api.post("/api/events", {"name": "paid"}).json()["resumed_runs"] == 1
    assert Waitpoint.objects.get(id=event.id).status == "COMPLETED"


def test_bad_input_is_a_4xx_naming_the_problem_and_stores_nothing(api, settings):
    token, event = waitpoint_build(), waitpoint_build(kind="EVENT", event_name="paid")
    oversized = "x" * (settings.STEPWISE_MAX_PAYLOAD_BYTES + 10)

    def raw(url: str, text: str):
        return api.client.post(url, text, content_type="application/json", headers=api._headers())

    cases = [
        (api.post("/api/events", {"payload": {}}), 422, "name"),
        (api.post("/api/events", {"name": ""}), 422, "name"),
        (api.post("/api/events", {"name": "paid now"}), 422, "pattern"),
        (api.post("/api/events", {"name": 5}), 422, "name"),
        (raw("/api/events", "{oops"), 400, ""),
        (raw("/api/events", '{"name": "paid", "payload": NaN}'), 400, "NaN is not a JSON number"),
        (api.post("/api/events", {"name": "paid", "payload": oversized}), 413, "the event payload is"),
        (api.post("/api/events", {"name": "paid", "payload": {"a": "\u0000"}}), 400, "cannot be stored"),
        (api.get("/api/waitpoints/wp_nope"), 404, "no waitpoint with id 'wp_nope'"),
        (api.post("/api/waitpoints/wp_nope/approve"), 404, "no waitpoint with id 'wp_nope'"),
        (api.post(f"/api/waitpoints/{event.id}/approve"), 400, "only tokens can be completed"),
        (api.post(f"/api/waitpoints/{token.id}/approve", {"data": [1]}), 422, "data"),
        (api.post(f"/api/waitpoints/{token.id}/complete", {"output": oversized}), 413, "waitpoint output"),
        (api.get("/api/waitpoints", status="NOPE"), 422, "status"),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status, response.content
        assert fragment in json.dumps(response.json())
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    too_big = api.post("/api/events", {"name": "paid", "payload": "x" * 2000})
    assert too_big.status_code == 413 and "request body is over the limit of 1000 bytes" in too_big.json()["detail"]
    assert not Event.objects.exists()
    assert set(Waitpoint.objects.values_list("status", flat=True)) == {"PENDING"}

    assert api.post(f"/api/waitpoints/{token.id}/approve").status_code == 200
    again = api.post(f"/api/waitpoints/{token.id}/approve")
    assert again.status_code == 409 and f"waitpoint {token.id} is already completed" in again.json()["detail"]
    assert Waitpoint.objects.get(id=token.id).output == {"approved": True}


def test_list_pages_with_a_cursor_in_a_constant_number_of_queries(api, django_assert_num_queries):
    ids = [waitpoint_build().id for _ in range(5)]
    page1 = api.get("/api/waitpoints", limit=2).json()
    page2 = api.get("/api/waitpoints", limit=2, cursor=page1["next_cursor"]).json()
    page3 = api.get("/api/waitpoints", limit=2, cursor=page2["next_cursor"]).json()
    assert [w["id"] for p in (page1, page2, page3) for w in p["items"]] == ids and page3["next_cursor"] is None
    # auth lookup, last_used_at update, the page with its runs.
    with django_assert_num_queries(3):
        assert len(api.get("/api/waitpoints").json()["items"]) == 5
    for _ in range(10):
        waitpoint_build()
    with django_assert_num_queries(3):
        assert len(api.get("/api/waitpoints").json()["items"]) == 15
