"""Sign-in is required for every page and action, and every action checks its CSRF token."""
from __future__ import annotations

import pytest

from stepwise.runs.models import Run
from stepwise.runs.triggers import run_trigger
from tests.console.conftest import PASSWORD, csrf_post

PAGES = ["/", "/runs/updates.json", "/tasks/", "/waitpoints/"]
RUN_PAGES = ["/runs/{id}/", "/runs/{id}/timeline.json", "/runs/{id}/events.json", "/runs/{id}/steps/0.json",
             "/runs/{id}/checkpoint.json"]
ACTIONS = ["/runs/{id}/cancel/", "/runs/{id}/replay/", "/runs/bulk/", "/tasks/test-noop/test/"]


@pytest.fixture
def run(db):
    return run_trigger(task_id="test-noop", payload={"a": 1})[0]


@pytest.mark.parametrize("url", PAGES + RUN_PAGES)
def test_pages_send_anonymous_visitors_to_sign_in(client, run, url):
    response = client.get(url.format(id=run.id))

    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("url", ACTIONS)
def test_actions_by_anonymous_visitors_change_nothing(client, run, url):
    response = client.post(url.format(id=run.id), {"payload": "{}", "action": "cancel", "run_ids": [run.id]})

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    assert Run.objects.count() == 1
    assert Run.objects.get().status == "QUEUED"


@pytest.mark.parametrize("url", ACTIONS)
def test_actions_without_a_csrf_token_are_refused(signed_in, run, url):
    response = signed_in.post(url.format(id=run.id), {"payload": "{}", "action": "cancel", "run_ids": [run.id]})

    assert response.status_code == 403
    assert Run.objects.count() == 1
    assert Run.objects.get().status == "QUEUED"


def test_sign_in_with_the_right_password_lands_on_the_runs_list(client, user):
    response = client.post("/login/", {"username": "ada", "password": PASSWORD}, follow=True)

    assert response.redirect_chain[-1][0] == "/"
    assert b"<h1>Runs" in response.content


def test_sign_in_with_a_wrong_password_says_so(client, user):
    response = client.post("/login/", {"username": "ada", "password": "nope"})

    assert response.status_code == 200
    assert b"didn't match" in response.content


def test_sign_out_ends_the_session(signed_in):
    csrf_post(signed_in, "/logout/")

    assert signed_in.get("/")["Location"].startswith("/login/")


def test_signed_in_user_without_the_view_permission_is_refused(client, django_user_model):
    plain = django_user_model.objects.create_user(username="guest", password="pw-123-long-enough")
    client.force_login(plain)
    assert client.get("/").status_code == 403
    assert client.get("/waitpoints/").status_code == 403
