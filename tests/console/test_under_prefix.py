"""The console included under a project's prefix: its live pages open their websockets under it too."""
from __future__ import annotations

import pytest
from django.test import Client, override_settings

from stepwise.runs.routing import websocket_urlpatterns_under
from stepwise.runs.triggers import run_trigger
from tests.console.conftest import PASSWORD


@pytest.fixture
def run_id(db) -> str:
    return run_trigger(task_id="test-noop", payload={})[0].id


@override_settings(ROOT_URLCONF="tests.console.prefixed_urls")
def test_the_live_pages_connect_below_the_prefix_the_console_is_included_at(signed_in, run_id):
    runs_page = signed_in.get("/stepwise/")
    assert runs_page.status_code == 200
    assert 'data-ws-path="/stepwise/ws/runs/"' in runs_page.text
    run_page = signed_in.get(f"/stepwise/runs/{run_id}/")
    assert run_page.status_code == 200
    assert f'data-ws-path="/stepwise/ws/runs/{run_id}/"' in run_page.text


@override_settings(ROOT_URLCONF="tests.console.prefixed_urls")
def test_signing_in_leads_to_the_console_under_its_prefix_or_to_the_page_asked_for(user):
    # Django's default LOGIN_REDIRECT_URL is /accounts/profile/, a page the project may not have.
    with override_settings(LOGIN_REDIRECT_URL="/accounts/profile/"):
        client = Client()
        signed_in = client.post("/stepwise/login/", {"username": "ada", "password": PASSWORD})
        assert (signed_in.status_code, signed_in["Location"]) == (302, "/stepwise/")
        assert client.get("/stepwise/login/")["Location"] == "/stepwise/"  # already signed in
        asked = Client().post("/stepwise/login/?next=/stepwise/queues/", {"username": "ada", "password": PASSWORD})
        assert asked["Location"] == "/stepwise/queues/"
        elsewhere = Client().post("/stepwise/login/?next=https://evil.example/", {"username": "ada",
                                                                               "password": PASSWORD})
        assert elsewhere["Location"] == "/stepwise/"  # never off the site


def test_the_console_at_the_root_connects_at_the_root(signed_in, run_id):
    assert 'data-ws-path="/ws/runs/"' in signed_in.get("/").text
    assert f'data-ws-path="/ws/runs/{run_id}/"' in signed_in.get(f"/runs/{run_id}/").text


def test_the_prefix_of_the_websocket_routes_reads_as_in_urls_py_with_or_without_slashes():
    for prefix in ("stepwise/", "/stepwise", "/stepwise/"):
        assert [str(p.pattern) for p in websocket_urlpatterns_under(prefix)] == [
            "stepwise/ws/runs/", "stepwise/ws/runs/<str:run_id>/"]
    assert [str(p.pattern) for p in websocket_urlpatterns_under("")] == ["ws/runs/", "ws/runs/<str:run_id>/"]
