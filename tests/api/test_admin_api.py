"""Queues, schedules, secrets and API keys through the API, and session auth with CSRF."""
from __future__ import annotations

import json

from django.contrib.auth.models import User
from django.test import Client

from stepwise.runs.models import Run
from stepwise.tasks.models import ApiKey, Queue, Secret
from stepwise.tasks.services import environments_ensure
from tests.roles import grant


def test_queues_list_pause_resume_and_limit(api):
    api.post("/api/tasks/test-noop/trigger", {"payload": {}})
    queues = {q["name"]: q for q in api.get("/api/queues").json()}
    assert queues["task/test-noop"]["queued"] == 1 and queues["task/test-noop"]["paused"] is False
    assert api.post("/api/queues/task/test-noop/pause").json()["paused"] is True
    assert Queue.objects.get(environment_id="dev", name="task/test-noop").paused
    assert api.put("/api/queues/task/test-noop/limit", {"concurrency_limit": 3}).json()["concurrency_limit"] == 3
    assert api.put("/api/queues/task/test-noop/limit", {"concurrency_limit": 0}).status_code == 422
    assert api.put("/api/queues/task/test-noop/limit", {"concurrency_limit": None}).json()["concurrency_limit"] is None
    assert api.post("/api/queues/task/test-noop/resume").json()["paused"] is False
    assert api.post("/api/queues/nope/pause").status_code == 404


def test_a_queue_takes_a_total_limit_beside_its_per_key_limit_and_keeps_what_is_not_given(api):
    api.post("/api/tasks/test-noop/trigger", {"payload": {}})  # the task's queue exists once it is used
    url = "/api/queues/task/test-noop/limit"
    both = api.put(url, {"concurrency_limit": 2, "total_limit": 10}).json()
    assert (both["concurrency_limit"], both["total_limit"]) == (2, 10)
    total_only = api.put(url, {"total_limit": 4}).json()
    assert (total_only["concurrency_limit"], total_only["total_limit"]) == (2, 4)
    removed = api.put(url, {"total_limit": None}).json()
    assert (removed["concurrency_limit"], removed["total_limit"]) == (2, None)
    empty = api.put(url, {})
    assert empty.status_code == 400 and "concurrency limit, a total limit or both" in empty.json()["detail"]
    assert api.put(url, {"total_limit": 0}).status_code == 422
    queue = Queue.objects.get(environment_id="dev", name="task/test-noop")
    assert (queue.concurrency_limit, queue.total_limit) == (2, None)


def test_a_queue_takes_a_rate_limit_as_runs_per_period_and_refuses_a_bad_one(api):
    api.post("/api/tasks/test-noop/trigger", {"payload": {}})
    url = "/api/queues/task/test-noop/rate"
    set_ = api.put(url, {"rate_limit": "10/s"})
    assert set_.status_code == 200 and set_.json()["rate_limit"] == "10/s"
    listed = {q["name"]: q for q in api.get("/api/queues").json()}
    assert listed["task/test-noop"]["rate_limit"] == "10/s"
    assert api.put(url, {"rate_limit": "90/90s"}).json()["rate_limit"] == "90/90s"
    bad = api.put(url, {"rate_limit": "ten per second"})
    assert bad.status_code == 400 and "not a rate limit" in bad.json()["detail"]
    assert api.put(url, {"rate_limit": None}).json()["rate_limit"] is None
    assert Queue.objects.get(environment_id="dev", name="task/test-noop").rate_limit is None


def test_schedules_crud_with_next_runs(api):
    created = api.post("/api/schedules", {"task_id": "test-noop", "cron": "0 9 * * 1", "timezone": "Europe/Paris",
                                          "dedup_key": "weekly"})
    assert created.status_code == 201, created.content
    schedule = created.json()
    assert len(schedule["next_runs"]) == 5 and schedule["environment"] == "dev"
    again = api.post("/api/schedules", {"task_id": "test-noop", "cron": "0 10 * * 1", "dedup_key": "weekly"})
    assert again.status_code == 200 and again.json()["id"] == schedule["id"]
    patched = api.patch(f"/api/schedules/{schedule['id']}", {"active": False})
    assert patched.json()["active"] is False and patched.json()["next_runs"] == []
    bad = api.post("/api/schedules", {"task_id": "test-noop", "cron": "61 * * * *", "dedup_key": "x"})
    assert bad.status_code == 400 and "invalid cron expression" in bad.json()["detail"]
    assert [s["dedup_key"] for s in api.get("/api/schedules").json()] == ["weekly"]
    assert api.delete(f"/api/schedules/{schedule['id']}").status_code == 204
    assert api.get(f"/api/schedules/{schedule['id']}").status_code == 404


def test_secrets_are_masked_after_saving_and_encrypted_at_rest(api):
    saved = api.put("/api/secrets/STRIPE_KEY", {"value": "sk_live_canary_12345"})
    assert saved.status_code == 200 and saved.json()["value"] == "••••"
    listed = api.get("/api/secrets")
    assert "sk_live_canary" not in listed.content.decode() and listed.json()[0]["name"] == "STRIPE_KEY"
    assert b"sk_live_canary" not in bytes(Secret.objects.get().ciphertext)
    assert api.put("/api/secrets/1BAD", {"value": "x"}).status_code == 400
    assert api.delete("/api/secrets/STRIPE_KEY").status_code == 204
    assert api.delete("/api/secrets/STRIPE_KEY").status_code == 404


def test_api_keys_are_shown_once_stored_hashed_and_revocable(api):
    created = api.post("/api/api-keys", {"name": "ci"})
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("sk_dev_") and secret.startswith(created.json()["prefix"])
    assert len(created.json()["prefix"]) == len("sk_dev_") + 6 and len(secret) > 40
    assert not ApiKey.objects.filter(key_hash__contains=secret).exists()
    listing = api.get("/api/api-keys")
    assert secret not in listing.content.decode() and "secret" not in listing.json()[0]
    other = Client(headers={"Authorization": f"Bearer {secret}"})
    assert other.get("/api/runs").status_code == 200
    api.post(f"/api/api-keys/{created.json()['id']}/revoke")
    assert other.get("/api/runs").status_code == 401


def test_console_session_may_call_the_api_but_unsafe_methods_need_csrf(environments):
    ada = User.objects.create_user("ada", password="pw-long-enough-123")
    grant(ada, "dev", "viewer")
    grant(ada, "staging", "operator")
    client = Client(enforce_csrf_checks=True)
    client.login(username="ada", password="pw-long-enough-123")
    assert client.get("/api/runs").status_code == 200
    refused = client.post("/api/tasks/test-noop/trigger", json.dumps({"payload": {}}), content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    assert not Run.objects.exists()
    client.get("/admin/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post("/api/tasks/test-noop/trigger", json.dumps({"payload": {}}),
                           content_type="application/json", headers={"X-CSRFToken": token,
                                                                     "Stepwise-Environment": "staging"})
    assert accepted.status_code == 201
    assert Run.objects.get().environment_id == "staging"


def test_openapi_document_and_docs_are_served_to_a_signed_in_user_only(db, django_user_model, settings):
    environments_ensure()
    for url in ("/api/docs", "/api/openapi.json"):
        anonymous = Client().get(url)
        assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    user = Client()
    user.force_login(django_user_model.objects.create_superuser("ada", password="x"))
    assert user.get("/api/docs").status_code == 200
    document = user.get("/api/openapi.json").json()
    settings.STEPWISE_API_DOCS_PUBLIC = True
    assert Client().get("/api/openapi.json").status_code == 200
    assert "/api/tasks/{task_id}/trigger" in document["paths"] and "/api/webhooks/{task_id}" in document["paths"]
