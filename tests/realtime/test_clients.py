"""The Python client, the CLI and websockets following runs with API keys and public tokens."""
from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.core.management.base import CommandError
from django.db import connections

from stepwise.client import Client, StepwiseApiError
from stepwise.console.asgi import application
from stepwise.runs.models import RunEvent
from stepwise.runs.realtime.tokens import public_token_create
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.apikeys import api_key_create
from tests.commands import run_command
from tests.engine_tasks import _redis
from tests.realtime.stream_tasks import gate_key
from tests.websockets import WebsocketClient


def _stored(run_id: str) -> list[dict]:
    return [e.as_message() for e in RunEvent.objects.filter(run_id=run_id).order_by("seq")]


def test_client_follow_and_events_read_the_server_sent_stream(realtime, all_key):
    with Client(realtime, api_key=all_key) as client:
        run = client.trigger("test-fake-llm", {"chunks": 20}, tags=["c-1"])
        statuses = [r["status"] for r in client.follow(run["id"], timeout=60)]
        assert statuses[-1] == "COMPLETED" and statuses == list(dict.fromkeys(statuses))
        events = [e for e in client.events(run["id"], timeout=30) if e["seq"] is not None]
        token = client.create_public_token({"tags": ["c-1"]})["token"]
    assert events == _stored(run["id"])
    # A browser's public token reads the same stream, resuming where asked.
    with Client(realtime, api_key=token) as public:
        resumed = [e["seq"] for e in public.events(run["id"], after=5, timeout=30)]
        assert resumed == list(range(6, len(events) + 1))
        with pytest.raises(StepwiseApiError) as refused:
            list(public.events(run_trigger(task_id="test-noop", payload={})[0].id, timeout=30))
        assert refused.value.status_code == 403


def test_client_follow_with_a_public_token_yields_the_streamed_run_to_its_output(realtime):
    run, _ = run_trigger(task_id="test-fake-llm", payload={"chunks": 4, "hold_at": 2})
    token = public_token_create(environment="dev", scopes={"runs": [run.id]})[0]
    states = []
    with Client(realtime, api_key=token) as public:  # the REST API refuses it: the stream alone says
        for state in public.follow(run.id, timeout=60):
            states.append(state)
            _redis.set(gate_key(run.id), 1, ex=600)  # followed from before the end: let it finish
    statuses = [s["status"] for s in states]
    assert statuses[0] != "COMPLETED" and statuses[-1] == "COMPLETED" and len(set(statuses)) == len(statuses)
    assert states[-1]["id"] == run.id and states[-1]["output"] == {"words": 4}


def test_trigger_follow_server_prints_the_streamed_events_and_the_output(realtime, all_key, monkeypatch):
    monkeypatch.setenv("STEPWISE_API_KEY", all_key)
    out = run_command("trigger", "test-fake-llm", '{"chunks": 3}', "--server", realtime, "--follow",
                      "--timeout", "60")
    run_id = out.split()[0]
    lines = out.splitlines()
    assert lines[0] == f"{run_id} QUEUED"
    assert lines[-1] == f'{run_id} COMPLETED output={{"words": 3}}'
    printed = [int(line.split("#")[1].split()[0]) for line in lines[1:-1]]
    assert printed == [e["seq"] for e in _stored(run_id)]
    assert any("stream.chunk" in line and "chunk=t2 " in line for line in lines)
    monkeypatch.delenv("STEPWISE_API_KEY")
    with pytest.raises(CommandError, match="needs an API key: give --api-key KEY or set STEPWISE_API_KEY"):
        run_command("trigger", "test-noop", "--server", realtime)


@pytest.fixture
async def _close_consumer_connections():
    yield
    await sync_to_async(connections.close_all)()


def _socket(path: str, token: str | None) -> WebsocketClient:
    headers = [(b"host", b"localhost")]  # no Origin: not a browser
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return WebsocketClient(application, path, headers=headers)


@pytest.mark.django_db(transaction=True)
async def test_websockets_take_an_api_key_or_a_public_token_in_the_authorization_header(
        all_key, read_key, _close_consumer_connections):
    run = await sync_to_async(lambda: run_trigger(task_id="test-noop", payload={})[0])()
    token = await sync_to_async(lambda: public_token_create(environment="dev", scopes={"runs": [run.id]})[0])()
    other = await sync_to_async(lambda: public_token_create(environment="dev", scopes={"runs": ["run_x"]})[0])()
    stored = await sync_to_async(_stored)(run.id)
    for credential in (read_key, token):
        socket = _socket(f"/ws/runs/{run.id}/", credential)
        assert await socket.connect() == (True, None)
        assert await socket.receive_json_from() == stored[0]
        await socket.disconnect()
    for credential, code in ((other, 4403), ("sk_dev_wrong", 4401)):
        socket = _socket(f"/ws/runs/{run.id}/", credential)
        assert (await socket.connect())[0] is True
        closed = await socket.receive_output(timeout=5)
        assert closed["type"] == "websocket.close" and closed["code"] == code
    # The runs list with a token: only the runs it names.
    socket = _socket("/ws/runs/", token)
    assert (await socket.connect())[0] is True
    await socket.disconnect()


@pytest.mark.django_db(transaction=True)
async def test_websockets_refuse_a_client_after_too_many_wrong_keys_even_with_a_valid_one(
        read_key, settings, _close_consumer_connections):
    settings.STEPWISE_FAILED_ATTEMPTS_LIMIT = 3
    run = await sync_to_async(lambda: run_trigger(task_id="test-noop", payload={})[0])()
    for _ in range(3):
        socket = _socket(f"/ws/runs/{run.id}/", "sk_dev_guess")
        assert (await socket.connect())[0] is True
        assert (await socket.receive_output(timeout=5))["code"] == 4401

    socket = _socket(f"/ws/runs/{run.id}/", read_key)

    assert (await socket.connect())[0] is True
    closed = await socket.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4429


@pytest.mark.django_db(transaction=True)
async def test_a_websocket_with_a_public_token_sees_only_its_runs_and_closes_when_the_token_expires(
        _close_consumer_connections):
    token = await sync_to_async(lambda: public_token_create(environment="dev", scopes={"tags": ["ws-1"]},
                                                            expires_in=2)[0])()
    runs_list = _socket("/ws/runs/", token)
    assert (await runs_list.connect())[0] is True
    await sync_to_async(run_trigger)(task_id="test-noop", payload={}, options=TriggerOptions(tags=["ws-2"]))
    tagged = (await sync_to_async(run_trigger)(task_id="test-noop", payload={},
                                               options=TriggerOptions(tags=["ws-1"])))[0].id
    received = await runs_list.receive_json_from(timeout=10)
    assert (received["run_id"], received["type"]) == (tagged, "run.created")
    closed = await runs_list.receive_output(timeout=5)  # nothing else comes before the token's expiry
    assert closed["type"] == "websocket.close" and closed["code"] == 4401
    trigger_only = await sync_to_async(lambda: api_key_create(environment="dev", name="t", scopes=["trigger"]))()
    socket = _socket(f"/ws/runs/{tagged}/", trigger_only.secret)
    assert (await socket.connect())[0] is True
    refused = await socket.receive_output(timeout=5)
    assert refused["type"] == "websocket.close" and refused["code"] == 4403
