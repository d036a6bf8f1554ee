"""The waitpoints page: pending approvals oldest first, approve or reject in place, with CSRF."""
from __future__ import annotations

from django.test import Client

from stepwise.runs.models import Run, Waitpoint
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import run_trigger
from tests.console.conftest import csrf_post
from tests.waiting import wait_for


def _waiting_token_run() -> Waitpoint:
    run, _ = run_trigger(task_id="test-wait-token", payload={})
    wait_for(lambda: Run.objects.filter(id=run.id, status=RunStatus.WAITING).exists(), message="the run to wait")
    return Waitpoint.objects.get(run_id=run.id)


def test_pending_approvals_are_listed_oldest_first_and_approved_in_place(live, signed_in):
    first, second = _waiting_token_run(), _waiting_token_run()
    page = signed_in.get("/waitpoints/").content.decode()
    assert page.index(first.id) < page.index(second.id)
    assert "approve the test" in page

    answer = csrf_post(signed_in, f"/waitpoints/{first.id}/decide/", {"decision": "approve", "data": '{"note": "ok"}'},
                            HTTP_ACCEPT="application/json")
    assert answer.status_code == 200 and answer.json()["ok"] is True
    run = wait_for(lambda: Run.objects.filter(id=first.run_id, status=RunStatus.COMPLETED).first(),
                   message="the approved run to complete")
    assert run.output == {"ok": True, "output": {"note": "ok", "approved": True}}
    assert Waitpoint.objects.get(id=first.id).completed_by == "ada"
    assert first.id not in signed_in.get("/waitpoints/").content.decode()


def test_rejecting_twice_or_with_bad_json_is_refused_with_a_message(live, signed_in):
    wp = _waiting_token_run()
    bad = csrf_post(signed_in, f"/waitpoints/{wp.id}/decide/", {"decision": "reject", "data": "[1"},
                         HTTP_ACCEPT="application/json")
    assert bad.status_code == 400 and "answer is not valid JSON" in bad.json()["message"]
    assert Waitpoint.objects.get(id=wp.id).status == "PENDING"
    url, as_json = f"/waitpoints/{wp.id}/decide/", {"HTTP_ACCEPT": "application/json"}
    ok = csrf_post(signed_in, url, {"decision": "reject"}, **as_json)
    again = csrf_post(signed_in, url, {"decision": "approve"}, **as_json)
    assert ok.status_code == 200
    assert again.status_code == 409 and "already completed" in again.json()["message"]


def test_decision_needs_csrf_and_a_signed_in_user(live, client, django_user_model):
    wp = _waiting_token_run()
    assert client.post(f"/waitpoints/{wp.id}/decide/", {"decision": "approve"}).status_code == 302
    user = django_user_model.objects.create_user("eve", password="pw-123-long-enough", is_superuser=True)
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user)
    assert csrf_client.post(f"/waitpoints/{wp.id}/decide/", {"decision": "approve"}).status_code == 403
    assert Waitpoint.objects.get(id=wp.id).status == "PENDING"
