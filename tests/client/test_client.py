"""The Python client against a real server (uvicorn in a subprocess) and real workers."""
from __future__ import annotations

import pytest

from stepwise.client import Client, RunTimeout, StepwiseApiError
from stepwise.runs.models import Run
from stepwise.tasks.access import SCOPES
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.models import Queue
from stepwise.tasks.services import environments_ensure
from tests.processes import Processes
from tests.waiting import wait_finished, wait_for


@pytest.fixture
def server(live):
    """Serve the app with uvicorn on a free port, on the test database."""
    procs = Processes("client")
    try:
        yield procs.console()
    finally:
        procs.stop_all()


@pytest.fixture
def client(server):
    environments_ensure()
    with Client(server, api_key=api_key_create(environment="dev", name="client", scopes=SCOPES).secret) as c:
        yield c


def test_trigger_and_wait_returns_the_finished_run(client):
    run = client.trigger("test-third-step-flaky", {}, idempotency_key="client-1", tags=["from-client"])
    again = client.trigger("test-third-step-flaky", {}, idempotency_key="client-1")
    assert again["id"] == run["id"] and again["created"] is False
    statuses = [r["status"] for r in client.follow(run["id"], timeout=60, interval=0.2)]
    assert statuses[-1] == "COMPLETED"
    done = client.wait(run["id"], timeout=5)
    assert done["output"] == {"results": ["first-done", "second-done", "third-done"]}
    assert len(done["attempts"]) == 3 and done["tags"] == ["from-client"]


def test_cancel_replay_and_errors_through_the_client(client):
    Queue.objects.update_or_create(environment_id="dev", name="task/test-noop", defaults={"paused": True})
    run = client.trigger("test-noop", {"v": 1})
    with pytest.raises(RunTimeout):
        client.wait(run["id"], timeout=0.5, interval=0.1)
    assert client.cancel(run["id"])["status"] == "CANCELED"
    with pytest.raises(StepwiseApiError) as refused:
        client.cancel(run["id"])
    assert refused.value.status_code == 409
    replayed = client.replay(run["id"], payload={"v": 2})
    assert Run.objects.get(id=replayed["id"]).payload == {"v": 2}
    with pytest.raises(StepwiseApiError, match="unknown task 'nope'"):
        client.trigger("nope", {})
    ids = [r["id"] for r in client.list_runs(task="test-noop", limit=1)]
    assert ids == [replayed["id"], run["id"]]


def _waiting(client: Client, task_id: str, payload=None) -> str:
    run_id = client.trigger(task_id, payload or {})["id"]
    wait_for(lambda: client.get_run(run_id)["status"] == "WAITING", message=f"run {run_id} to wait")
    return run_id


def test_events_and_waitpoints_through_the_client(client):
    completed, approved, rejected = (_waiting(client, "test-wait-token") for _ in range(3))
    waiting_for_event = _waiting(client, "test-wait-event", {"filter": {"orderId": "c1"}})
    tokens = {w["run_id"]: w["id"] for w in client.list_waitpoints(kind="TOKEN", limit=1)}
    assert list(tokens) == [completed, approved, rejected]

    assert client.complete_waitpoint(tokens[completed], {"answer": 42})["status"] == "COMPLETED"
    client.approve(tokens[approved], {"note": "ok"})
    client.reject(tokens[rejected])
    with pytest.raises(StepwiseApiError, match="already completed") as refused:
        client.approve(tokens[approved])
    assert refused.value.status_code == 409
    with pytest.raises(StepwiseApiError, match="no waitpoint with id 'wp_nope'"):
        client.complete_waitpoint("wp_nope", 1)
    assert client.send_event("paid", {"orderId": "c1"})["resumed_runs"] == 1

    assert wait_finished(completed).output == {"ok": True, "output": {"answer": 42}}
    assert wait_finished(approved).output == {"ok": True, "output": {"note": "ok", "approved": True}}
    assert wait_finished(rejected).output == {"ok": True, "output": {"approved": False}}
    assert wait_finished(waiting_for_event).output["event"] == {"orderId": "c1"}
    assert client.get_waitpoint(tokens[approved])["completed_by"].startswith("api key client (sk_dev_")
    assert list(client.list_waitpoints()) == []


def test_a_wrong_key_is_refused(server):
    with Client(server, api_key="sk_dev_wrong") as c, pytest.raises(StepwiseApiError) as refused:
        c.get_run("run_x")
    assert refused.value.status_code == 401


def test_reset_idempotency_key_through_the_client(client):
    Queue.objects.update_or_create(environment_id="dev", name="task/test-idem-echo", defaults={"paused": True})
    first = client.trigger("test-idem-echo", {}, idempotency_key="client-key", idempotency_key_scope="global")

    reset = client.reset_idempotency_key("test-idem-echo", "client-key")
    second = client.trigger("test-idem-echo", {}, idempotency_key="client-key")

    assert reset["run_id"] == first["id"] and reset["scope"] == "global"
    assert second["created"] is True and second["id"] != first["id"]
    assert client.get_run(first["id"])["idempotency_key_state"] == "reset"
    with pytest.raises(StepwiseApiError) as missing:
        client.reset_idempotency_key("test-idem-echo", "never-used")
    assert missing.value.status_code == 404 and "holds the idempotency key 'never-used'" in str(missing.value)
