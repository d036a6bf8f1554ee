"""The waitpoints page times a token out now or skips it, for an operator, with CSRF."""
from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from stepwise.runs.models import Run, Waitpoint
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import run_trigger
from tests.console.conftest import csrf_post
from tests.roles import grant
from tests.waiting import wait_finished, wait_for


def _signed_in(username: str, role: str | None) -> Client:
    user = User.objects.create_user(username, password="pw-123-long-enough", is_superuser=role is None)
    if role is not None:
        grant(user, "dev", role)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _waiting_token() -> Waitpoint:
    run, _ = run_trigger(task_id="test-wait-token", payload={})
    wait_for(lambda: Run.objects.filter(id=run.id, status=RunStatus.WAITING).exists(), message="the run to wait")
    return Waitpoint.objects.get(run_id=run.id)


@pytest.mark.parametrize(("decision", "status", "output", "said"), [
    ("timeout", "TIMED_OUT", {"ok": False, "output": None}, "Timed out"),
    ("skip", "COMPLETED", {"ok": True, "output": {"skipped": True}}, "Skipped"),
])
def test_an_operator_times_out_or_skips_a_token_from_the_waitpoints_page(live, decision, status, output, said):
    wp = _waiting_token()
    page = _signed_in("ops", "operator")
    assert f'name="decision" value="{decision}"' in page.get("/waitpoints/").content.decode()
    viewer = _signed_in("viewer", "viewer")
    refused = csrf_post(viewer, f"/waitpoints/{wp.id}/decide/", {"decision": decision})
    assert refused.status_code == 403 and Waitpoint.objects.get(id=wp.id).status == "PENDING"
    answer = csrf_post(page, f"/waitpoints/{wp.id}/decide/", {"decision": decision}, HTTP_ACCEPT="application/json")
    assert answer.status_code == 200
    assert answer.json()["message"] == f"{said} {wp.id}; run {wp.run_id} resumes."
    assert Waitpoint.objects.get(id=wp.id).status == status
    assert wait_finished(wp.run_id).output == output
    again = csrf_post(page, f"/waitpoints/{wp.id}/decide/", {"decision": decision}, HTTP_ACCEPT="application/json")
    assert again.status_code == 409
