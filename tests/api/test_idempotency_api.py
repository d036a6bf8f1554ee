"""Idempotency keys through the API: the scope on trigger, the key's state on the run, and reset."""
from __future__ import annotations

import json

from stepwise.runs.models import Run
from stepwise.runs.triggers import TriggerOptions, run_trigger

RESET = "/api/tasks/test-idem-echo/idempotency-keys/reset"


def _trigger(api, **body):
    return api.post("/api/tasks/test-idem-echo/trigger", {"payload": {}, **body})


def test_run_detail_shows_the_key_its_scope_expiry_and_state(api):
    created = _trigger(api, idempotency_key="order-1", idempotency_key_scope="global", idempotency_key_ttl="1h")
    assert created.status_code == 201, created.content

    detail = api.get(f"/api/runs/{created.json()['id']}").json()

    assert detail["idempotency_key"] == "order-1" and detail["idempotency_key_scope"] == "global"
    assert detail["idempotency_key_state"] == "active" and detail["idempotency_key_reset_at"] is None
    run = Run.objects.get(id=created.json()["id"])
    assert detail["idempotency_expires_at"].startswith(run.idempotency_expires_at.strftime("%Y-%m-%dT%H:%M:%S"))
    plain = api.get(f"/api/runs/{_trigger(api).json()['id']}").json()
    assert (plain["idempotency_key"], plain["idempotency_key_scope"], plain["idempotency_key_state"]) == (
        None, None, None)


def test_reset_frees_the_key_and_the_run_shows_it_was_reset(api):
    first = _trigger(api, idempotency_key="order-1").json()

    reset = api.post(RESET, {"key": "order-1"})
    second = _trigger(api, idempotency_key="order-1")

    assert reset.status_code == 200, reset.content
    body = reset.json()
    assert (body["run_id"], body["task_id"], body["key"], body["scope"]) == (
        first["id"], "test-idem-echo", "order-1", "global")
    assert second.status_code == 201 and second.json()["id"] != first["id"]
    detail = api.get(f"/api/runs/{first['id']}").json()
    assert detail["idempotency_key"] == "order-1" and detail["idempotency_key_state"] == "reset"
    assert detail["idempotency_key_reset_at"] == body["reset_at"]
    event = Run.objects.get(id=first["id"]).events.get(type="idempotency_key.reset")
    assert event.data["by"].startswith("api key tests (")  # who reset it, as the API names the key


def test_reset_of_a_run_scoped_key_takes_the_parent(api):
    parent = Run.objects.get(id=_trigger(api).json()["id"])
    child, _ = run_trigger(task_id="test-idem-echo", payload={}, options=TriggerOptions(
        idempotency_key="receipt", idempotency_key_scope="run", parent_run_id=parent.id))

    reset = api.post(RESET, {"key": "receipt", "scope": "run", "parent_run_id": parent.id})

    assert reset.status_code == 200, reset.content
    assert reset.json()["run_id"] == child.id and reset.json()["scope"] == "run"


def test_bad_input_is_a_4xx_naming_the_problem_and_changes_nothing(api, prod_api):
    held = _trigger(api, idempotency_key="order-1").json()["id"]
    cases = [
        (api.post(RESET, {"key": "nope"}), 404,
         "no run of task 'test-idem-echo' in environment 'dev' holds the idempotency key 'nope'"),
        (prod_api.post(RESET, {"key": "order-1"}), 404, "in environment 'prod'"),
        (api.post(RESET, {"key": "order-1", "scope": "galaxy"}), 422, "scope"),
        (api.post(RESET, {"key": "order-1", "scope": "run"}), 400,
         "idempotency_key_scope 'run' combines the key with the parent run"),
        (api.post(RESET, {"key": "order-1", "scope": "attempt", "parent_run_id": held}), 400, "give parent_attempt"),
        (api.post(RESET, {"key": ""}), 422, "key"),
        (api.post(RESET, {}), 422, "key"),
        (_trigger(api, idempotency_key="k", idempotency_key_scope="galaxy"), 422, "idempotency_key_scope"),
        (_trigger(api, idempotency_key="k", idempotency_key_scope="run"), 400,
         "idempotency_key_scope 'run' combines the key with the parent run, so it is only for triggers made inside"),
        (_trigger(api, idempotency_key_scope="global"), 400, "idempotency_key_scope needs an idempotency_key"),
        (api.post("/api/tasks/test-idem-echo/batch", {"items": [
            {"payload": {}}, {"payload": {}, "idempotency_key": "k", "idempotency_key_scope": "attempt"}]}),
         400, "batch item 1: idempotency_key_scope 'attempt'"),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status, response.content
        assert fragment in json.dumps(response.json()), response.json()
    assert list(Run.objects.values_list("id", flat=True)) == [held]
    assert Run.objects.get(id=held).idempotency_key_state == "active"
