"""Token callback URLs (the URL's signature is the credential), and timing a wait out or skipping it."""
from __future__ import annotations

from urllib.parse import urlparse

import httpx
import pytest

from stepwise.runs.models import Step, Waitpoint
from stepwise.runs.triggers import run_trigger
from stepwise.runs.waits import waitpoint_callback_signature
from stepwise.tasks.apikeys import api_key_create
from tests.waiting import wait_finished, wait_for


def _waiting_token(task_id: str = "test-callback-token", payload=None) -> tuple[str, Waitpoint]:
    run, _ = run_trigger(task_id=task_id, payload=payload or {})
    waitpoint = wait_for(lambda: Waitpoint.objects.filter(run_id=run.id, status="PENDING").first(),
                         message="the run's waitpoint")
    return run.id, waitpoint


def _callback_path(run_id: str) -> str:
    announced = wait_for(lambda: Step.objects.filter(run_id=run_id, key="announce").first(),
                         message="the token's url").output
    url = urlparse(announced["url"])
    assert f"{url.scheme}://{url.netloc}" == "http://localhost:8000"  # STEPWISE_PUBLIC_URL's default
    return url.path


def _logs(processes) -> str:
    return "".join(proc.log_path.read_text(errors="replace") for proc in processes.procs)


def test_a_service_completes_a_token_once_by_posting_json_to_its_url(realtime, processes):
    run_id, waitpoint = _waiting_token()
    path = _callback_path(run_id)
    assert path == f"/api/waitpoints/{waitpoint.id}/callback/{waitpoint_callback_signature(waitpoint.id)}"
    tampered = path[:-4] + ("0000" if not path.endswith("0000") else "1111")
    refused = httpx.post(f"{realtime}{tampered}", json={"paid": True})
    assert refused.status_code == 401
    assert refused.json()["detail"] == ("the callback URL's signature does not match: use the url "
                                        "wait.create_token returned")
    answer = httpx.post(f"{realtime}{path}", json={"paid": True, "amount": 42})  # no API key
    assert answer.status_code == 200 and answer.json() == {"id": waitpoint.id, "status": "COMPLETED"}
    done = wait_finished(run_id)
    assert done.output == {"ok": True, "output": {"paid": True, "amount": 42}}
    assert Waitpoint.objects.get(id=waitpoint.id).completed_by == "callback"
    again = httpx.post(f"{realtime}{path}", json={"paid": False})
    assert again.status_code == 409 and "already completed" in again.json()["detail"]
    # Another waitpoint's signature does not open this one.
    _, other = _waiting_token()
    stolen = f"/api/waitpoints/{other.id}/callback/{waitpoint_callback_signature(waitpoint.id)}"
    assert httpx.post(f"{realtime}{stolen}", json={}).status_code == 401
    bad_json = httpx.post(f"{realtime}/api/waitpoints/{other.id}/callback/{waitpoint_callback_signature(other.id)}",
                          content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert Waitpoint.objects.get(id=other.id).status == "PENDING"
    # Refusals are logged by waitpoint id, never with the URL: its signature is a credential.
    logs = _logs(processes)
    assert f"token callback for waitpoint {other.id} refused (400)" in logs
    assert waitpoint_callback_signature(other.id) not in logs
    assert waitpoint_callback_signature(waitpoint.id) not in logs


def test_a_callback_url_expires_with_its_token(realtime):
    run_id, waitpoint = _waiting_token(payload={"timeout": 1})
    path = _callback_path(run_id)
    assert wait_finished(run_id).output == {"ok": False, "output": None}
    answer = httpx.post(f"{realtime}{path}", json={"late": True})
    assert answer.status_code == 409 and f"waitpoint {waitpoint.id} timed out at" in answer.json()["detail"]


@pytest.mark.parametrize("action", ["timeout", "skip"])
def test_an_operator_times_a_token_out_now_or_skips_it(realtime, action):
    operate = api_key_create(environment="dev", name="ops", scopes=["read", "operate"]).secret
    read = api_key_create(environment="dev", name="read", scopes=["read"]).secret
    run_id, waitpoint = _waiting_token()
    url = f"{realtime}/api/waitpoints/{waitpoint.id}/{action}"
    refused = httpx.post(url, headers={"Authorization": f"Bearer {read}"})
    assert refused.status_code == 403 and "needs the 'operate' scope" in refused.json()["detail"]
    assert httpx.post(url).status_code == 401
    answer = httpx.post(url, headers={"Authorization": f"Bearer {operate}"})
    assert answer.status_code == 200
    expected = {"timeout": ("TIMED_OUT", {"ok": False, "output": None}),
                "skip": ("COMPLETED", {"ok": True, "output": {"skipped": True}})}[action]
    assert answer.json()["status"] == expected[0]
    assert wait_finished(run_id).output == expected[1]
    assert httpx.post(url, headers={"Authorization": f"Bearer {operate}"}).status_code == 409


def test_skipping_a_timer_resumes_its_run_now_and_a_timer_cannot_be_timed_out(realtime):
    operate = api_key_create(environment="dev", name="ops", scopes=["read", "operate"]).secret
    run_id, waitpoint = _waiting_token("test-wait-then-return")
    headers = {"Authorization": f"Bearer {operate}"}
    refused = httpx.post(f"{realtime}/api/waitpoints/{waitpoint.id}/timeout", headers=headers)
    assert refused.status_code == 400
    assert refused.json()["detail"] == (f"waitpoint {waitpoint.id} waits for duration; only token and event waits "
                                        "can be timed out (skip a timer instead)")
    assert httpx.post(f"{realtime}/api/waitpoints/{waitpoint.id}/skip", headers=headers).status_code == 200
    assert wait_finished(run_id).output == {"ok": True}
