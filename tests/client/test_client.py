"""The Python client against a real server (uvicorn in a subprocess) and real workers."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from runs.models import Run
from stepwise.client import Client, RunTimeout, StepwiseApiError
from tasks.apikeys import api_key_create
from tasks.models import Queue
from tasks.services import environments_ensure
from tests.processes import LOG_DIR, ROOT, child_env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(live):
    """Serve the app with uvicorn on a free port, on the test database."""
    port = free_port()
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log = open(LOG_DIR / "client-uvicorn.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "console.asgi:application", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, env=child_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"{url}/api/openapi.json", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("uvicorn did not start; see artifacts/logs/client-uvicorn.log")
            time.sleep(0.2)
    yield url
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def client(server):
    environments_ensure()
    with Client(server, api_key=api_key_create(environment="dev", name="client").secret) as c:
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
    Queue.objects.update_or_create(name="task/test-noop", defaults={"paused": True})
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


def test_a_wrong_key_is_refused(server):
    with Client(server, api_key="sk_dev_wrong") as c, pytest.raises(StepwiseApiError) as refused:
        c.get_run("run_x")
    assert refused.value.status_code == 401
