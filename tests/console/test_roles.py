"""Roles per environment in the console and through the API with a session: viewer, operator, admin."""
from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User
from django.test import Client

from stepwise.runs.models import Run, Waitpoint
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.models import ApiKey, Queue, Schedule, Secret
from stepwise.tasks.secrets import secret_set
from stepwise.tasks.services import environments_ensure
from tests.console.conftest import csrf_post
from tests.factories import run_build
from tests.roles import grant

pytestmark = pytest.mark.django_db

AS_JSON = {"HTTP_ACCEPT": "application/json"}


@pytest.fixture(autouse=True)
def environments(db):
    environments_ensure()


def signed_in_as(username: str, *roles: tuple[str, str]) -> Client:
    user = User.objects.create_user(username, password="pw-long-enough-123")
    for environment, role in roles:
        grant(user, environment, role)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def prod_run() -> Run:
    return run_trigger(task_id="test-noop", payload={"card": "4242"}, options=TriggerOptions(environment="prod"))[0]


def api_call(client: Client, method: str, url: str, body=None, environment: str = "prod"):
    client.get("/admin/login/")  # sets the csrftoken cookie, as in tests/api/test_admin_api.py
    headers = {"Stepwise-Environment": environment, "X-CSRFToken": client.cookies["csrftoken"].value}
    if method == "get":
        return client.get(url, headers=headers)
    return getattr(client, method)(url, json.dumps(body or {}), content_type="application/json", headers=headers)


# Finding 1: a signed-in account without any role used the whole REST API with its session cookie.
NOBODY_CALLS = [
    ("get", "/api/runs"), ("get", "/api/runs/{run}"), ("post", "/api/runs/{run}/cancel"),
    ("post", "/api/runs/{run}/replay"), ("post", "/api/tasks/test-noop/trigger"), ("post", "/api/api-keys"),
    ("put", "/api/secrets/STRIPE_KEY"), ("delete", "/api/secrets/DB_URL"), ("get", "/api/secrets"),
    ("post", "/api/queues/task/test-noop/pause"), ("put", "/api/queues/task/test-noop/limit"),
    ("post", "/api/schedules"), ("post", "/api/waitpoints/{waitpoint}/approve"), ("post", "/api/events"),
    ("get", "/api/waitpoints"), ("get", "/api/audit"),
]
BODIES = {"/api/api-keys": {"name": "mine"}, "/api/secrets/STRIPE_KEY": {"value": "sk_live"},
          "/api/queues/task/test-noop/limit": {"concurrency_limit": 1}, "/api/events": {"name": "paid"},
          "/api/schedules": {"task_id": "test-noop", "cron": "* * * * *", "dedup_key": "x"}}


@pytest.mark.parametrize(("method", "url"), NOBODY_CALLS)
def test_a_signed_in_account_without_a_role_is_refused_by_every_api_endpoint(method, url):
    run = prod_run()
    secret_set(environment="prod", name="DB_URL", value="postgres://x")
    waitpoint = Waitpoint.objects.create(id="wp_roles_1", run=run, key="approval", position=0, kind="TOKEN")
    nobody = signed_in_as("nobody")

    response = api_call(nobody, method, url.format(run=run.id, waitpoint=waitpoint.id), BODIES.get(url))

    assert response.status_code == 403, response.content
    assert "4242" not in response.content.decode()
    assert Run.objects.get(id=run.id).status == "QUEUED" and Run.objects.count() == 1
    assert not ApiKey.objects.exists() and not Schedule.objects.exists()
    assert list(Secret.objects.values_list("name", flat=True)) == ["DB_URL"]
    assert not Queue.objects.filter(paused=True).exists() and not Queue.objects.filter(concurrency_limit=1).exists()
    assert Waitpoint.objects.get(id=waitpoint.id).status == "PENDING"


def test_a_role_in_one_environment_gives_nothing_in_another_through_the_api():
    run = prod_run()
    dev_admin = signed_in_as("devops", ("dev", "admin"))

    assert api_call(dev_admin, "get", f"/api/runs/{run.id}").status_code == 403
    assert api_call(dev_admin, "post", f"/api/runs/{run.id}/cancel").status_code == 403
    assert api_call(dev_admin, "get", f"/api/runs/{run.id}", environment="dev").status_code == 404
    assert Run.objects.get(id=run.id).status == "QUEUED"


# Finding 2: a user with only runs.view_run could do everything a superuser can in the console.
def test_a_viewer_sees_runs_but_every_action_is_refused_and_hidden():
    run = prod_run()
    viewer = signed_in_as("val", ("prod", "viewer"))

    page = viewer.get(f"/runs/{run.id}/")
    assert page.status_code == 200 and "4242" in page.content.decode()
    assert "Cancel run" not in page.content.decode() and 'id="replay"' not in page.content.decode()
    for url in (f"/runs/{run.id}/cancel/", f"/runs/{run.id}/replay/", "/tasks/test-noop/test/"):
        assert csrf_post(viewer, url, {"payload": "{}"}, **AS_JSON).status_code == 403, url
    bulk = csrf_post(viewer, "/runs/bulk/", {"action": "cancel", "run_ids": [run.id]}, **AS_JSON)
    assert bulk.status_code == 403
    assert Run.objects.get(id=run.id).status == "QUEUED" and Run.objects.count() == 1
    assert viewer.get("/secrets/?env=prod").status_code == 403
    assert viewer.get("/api-keys/?env=prod").status_code == 403
    assert viewer.get("/audit/?env=prod").status_code == 403
    queues = viewer.get("/queues/?env=prod").content.decode()
    assert "task/test-noop" in queues and "Pause</button>" not in queues
    assert csrf_post(viewer, "/queues/task/test-noop/pause/", {"env": "prod"}, **AS_JSON).status_code == 403
    assert not Queue.objects.filter(paused=True).exists()
    nav = viewer.get("/").content.decode()
    assert ">Secrets<" not in nav and ">API keys<" not in nav


def test_a_viewer_of_dev_sees_no_prod_run_anywhere_in_the_console():
    run = prod_run()
    dev_viewer = signed_in_as("dan", ("dev", "viewer"))

    assert run.id not in dev_viewer.get("/").content.decode()
    for url in (f"/runs/{run.id}/", f"/runs/{run.id}/events.json", f"/runs/{run.id}/timeline.json",
                f"/runs/{run.id}/checkpoint.json", f"/runs/{run.id}/steps/0.json"):
        assert dev_viewer.get(url).status_code == 403, url
    assert run.id not in dev_viewer.get("/runs/updates.json", {"ids": run.id, "newest": "run_0"}).content.decode()


def test_an_operator_acts_on_runs_but_not_on_configuration():
    run = prod_run()
    operator = signed_in_as("otto", ("prod", "operator"))

    page = operator.get(f"/runs/{run.id}/").content.decode()
    assert "Cancel run" in page
    assert csrf_post(operator, f"/runs/{run.id}/cancel/", **AS_JSON).status_code == 200
    assert Run.objects.get(id=run.id).status == "CANCELED"
    assert csrf_post(operator, "/queues/task/test-noop/pause/", {"env": "prod"}, **AS_JSON).status_code == 403
    assert csrf_post(operator, "/secrets/", {"env": "prod", "name": "X", "value": "y"}).status_code == 403
    assert api_call(operator, "post", "/api/api-keys", {"name": "mine"}).status_code == 403
    assert not Secret.objects.exists() and not ApiKey.objects.exists()


def test_an_admin_of_prod_manages_prod_and_the_console_shows_it():
    prod_run()
    admin = signed_in_as("ada", ("prod", "admin"))

    assert "Pause</button>" in admin.get("/queues/?env=prod").content.decode()
    assert csrf_post(admin, "/queues/task/test-noop/pause/", {"env": "prod"}, **AS_JSON).status_code == 200
    assert Queue.objects.get(environment_id="prod", name="task/test-noop").paused
    assert not Queue.objects.get(environment_id="dev", name="task/test-noop").paused
    assert admin.get("/secrets/?env=prod").status_code == 200
    assert admin.get("/secrets/?env=dev").status_code == 403


def test_a_signed_in_user_without_any_role_cannot_use_the_console():
    nobody = signed_in_as("nobody")
    run = run_build()

    for url in ("/", "/tasks/", "/waitpoints/", "/queues/", f"/runs/{run.id}/"):
        assert nobody.get(url).status_code == 403, url


def test_an_admin_gives_and_removes_roles_of_their_environment_only():
    admin = signed_in_as("ada", ("prod", "admin"))
    User.objects.create_user("bob", password="pw-long-enough-123")

    given = csrf_post(admin, "/members/", {"env": "prod", "username": "bob", "role": "operator"}, follow=True)

    assert "bob is now operator in prod." in given.content.decode()
    assert list(User.objects.get(username="bob").groups.values_list("name", flat=True)) == ["stepwise:prod:operator"]
    assert csrf_post(admin, "/members/", {"env": "dev", "username": "bob", "role": "admin"}).status_code == 403
    assert csrf_post(admin, "/members/bob/remove/", {"env": "prod"}).status_code == 302
    assert not User.objects.get(username="bob").groups.exists()
    viewer = signed_in_as("val", ("prod", "viewer"))
    assert viewer.get("/members/?env=prod").status_code == 403
