"""Idempotency keys through the API: the scope on trigger and the key's state on the run."""
from __future__ import annotations

import json

from runs.models import Run


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


def test_bad_scopes_are_a_4xx_naming_the_problem_and_store_nothing(api):
    cases = [
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
    assert not Run.objects.exists()
