"""API keys carry scopes and an environment: least privilege by default, checked by every endpoint."""
from __future__ import annotations

import json

from django.contrib.auth.models import User
from django.test import Client

from stepwise.runs.models import Run
from stepwise.runs.realtime.tokens import public_token_create
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.models import ApiKey, Queue, Secret
from tests.api.conftest import ApiClient
from tests.roles import grant


def session(username: str, *roles: tuple[str, str], superuser: bool = False) -> Client:
    user = User.objects.create_user(username, password="pw-long-enough-123", is_superuser=superuser)
    for environment, role in roles:
        grant(user, environment, role)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/admin/login/")  # sets the csrftoken cookie
    return client


def session_post(client: Client, url: str, body: dict, environment: str = "prod"):
    return client.post(url, json.dumps(body), content_type="application/json",
                       headers={"Stepwise-Environment": environment, "X-CSRFToken": client.cookies["csrftoken"].value})


def test_a_new_key_reads_and_triggers_but_may_not_operate_or_administer(environments):
    admin = session("ada", ("prod", "admin"))
    created = session_post(admin, "/api/api-keys", {"name": "ci"})
    assert created.status_code == 201 and created.json()["scopes"] == ["read", "trigger"]
    key = ApiClient(created.json()["secret"])

    run_id = key.post("/api/tasks/test-noop/trigger", {"payload": {}}).json()["id"]
    assert key.get(f"/api/runs/{run_id}").status_code == 200
    refused = key.post(f"/api/runs/{run_id}/cancel")
    assert refused.status_code == 403 and "'operate' scope" in refused.json()["detail"]
    assert key.put("/api/secrets/STRIPE_KEY", {"value": "sk_live"}).status_code == 403
    assert key.post("/api/queues/task/test-noop/pause").status_code == 403
    assert key.post("/api/api-keys", {"name": "escalate", "scopes": ["admin"]}).status_code == 403
    assert Run.objects.get(id=run_id).status == "QUEUED"
    assert not Secret.objects.exists() and ApiKey.objects.count() == 1
    assert not Queue.objects.filter(paused=True).exists()
    assert ApiKey.objects.get().last_used_at is not None


def test_keys_get_at_most_the_scopes_of_whoever_creates_them(environments):
    operator = session("otto", ("prod", "operator"))
    assert session_post(operator, "/api/api-keys", {"name": "mine", "scopes": ["read"]}).status_code == 403
    admin_key = ApiClient(api_key_create(environment="prod", name="admin", scopes=["admin"]).secret)
    refused = admin_key.post("/api/api-keys", {"name": "reader", "scopes": ["read", "operate"]})
    assert refused.status_code == 403 and "read, operate" in refused.json()["detail"]
    allowed = admin_key.post("/api/api-keys", {"name": "admin-2", "scopes": ["admin"]})
    assert allowed.status_code == 201 and allowed.json()["scopes"] == ["admin"]
    assert admin_key.post("/api/api-keys", {"name": "bad", "scopes": ["root"]}).status_code == 422
    assert set(ApiKey.objects.values_list("name", flat=True)) == {"admin", "admin-2"}


def test_a_scope_holds_only_in_the_key_s_own_environment(environments):
    dev_ops = ApiClient(api_key_create(environment="dev", name="ops", scopes=["read", "operate"]).secret)
    prod_run = ApiClient(api_key_create(environment="prod", name="t").secret).post(
        "/api/tasks/test-noop/trigger", {"payload": {}}).json()["id"]

    assert dev_ops.get(f"/api/runs/{prod_run}").status_code == 404
    assert dev_ops.post(f"/api/runs/{prod_run}/cancel").status_code == 404
    assert Run.objects.get(id=prod_run).status == "QUEUED"


def test_a_public_token_on_the_rest_api_is_told_it_reads_only_the_streams(environments):
    run_id = ApiClient(api_key_create(environment="dev", name="t").secret).post(
        "/api/tasks/test-noop/trigger", {"payload": {}}).json()["id"]
    token = public_token_create(environment="dev", scopes={"runs": [run_id]})[0]

    refused = ApiClient(token).get(f"/api/runs/{run_id}")
    assert refused.status_code == 401
    assert "public token" in refused.json()["detail"] and "/api/runs/<id>/events/stream" in refused.json()["detail"]
    assert ApiClient(token).post("/api/tasks/test-noop/trigger", {"payload": {}}).status_code == 401
    assert Run.objects.count() == 1
