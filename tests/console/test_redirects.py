"""After an action the console redirects to a ``next`` page only on this site."""
from __future__ import annotations

import pytest

from stepwise.runs.triggers import run_trigger
from tests.console.conftest import csrf_post

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/runs/bulk/", "waitpoint"])
@pytest.mark.parametrize("target", ["//evil.example", "https://evil.example/", "/\\evil.example", "///evil.example",
                                    "javascript:alert(1)"])
def test_a_next_page_on_another_site_is_never_a_redirect_target(signed_in, url, target):
    if url == "waitpoint":
        url = "/waitpoints/wp_nope/decide/"
        data = {"decision": "approve", "next": target}
    else:
        data = {"action": "cancel", "run_ids": [run_trigger(task_id="test-noop", payload={})[0].id], "next": target}
    response = csrf_post(signed_in, url, data)
    assert response.status_code == 302
    assert response["Location"].startswith("/") and not response["Location"].startswith(("//", "/\\"))
    assert "evil" not in response["Location"] and "javascript" not in response["Location"]


def test_a_next_page_on_this_site_is_followed(signed_in):
    run = run_trigger(task_id="test-noop", payload={})[0]
    response = csrf_post(signed_in, "/runs/bulk/", {"action": "cancel", "run_ids": [run.id],
                                                    "next": "/runs/?status=QUEUED"})
    assert response.status_code == 302 and response["Location"] == "/runs/?status=QUEUED"
