"""Server-sent events through a real ASGI server: credentials, scopes, order, resume, heartbeats, tags."""
from __future__ import annotations

import json
import time

import httpx
import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from django.core import signing
from django.db import connections

from stepwise.client import Client, StepwiseApiError, StreamEnded
from stepwise.console.asgi import django_asgi_app
from stepwise.runs.models import Run, RunEvent
from stepwise.runs.realtime import sse
from stepwise.runs.realtime.tokens import PREFIX, SALT, public_token_create
from stepwise.runs.services import run_cancel
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.apikeys import api_key_create, api_key_revoke
from tests.realtime.conftest import sse_events
from tests.waiting import wait_finished, wait_for


def _run(task_id: str = "test-noop", payload=None, **options) -> str:
    run, _ = run_trigger(task_id=task_id, payload=payload or {}, options=TriggerOptions(**options))
    return run.id


def _token(**scopes) -> str:
    return public_token_create(environment="dev", scopes=scopes, expires_in="10m")[0]


def _expired_token(run_id: str) -> str:
    # Signed as the server signs, with an expiry in the past.
    return PREFIX + signing.dumps({"e": "dev", "r": [run_id], "t": [], "x": 1_700_000_000}, salt=SALT, compress=True)


def _stored(run_id: str) -> list[dict]:
    return [e.as_message() for e in RunEvent.objects.filter(run_id=run_id).order_by("seq")]


def _get(url: str, token: str | None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.get(url, headers=headers, timeout=10)


def test_public_tokens_are_made_by_a_read_key_and_refused_anywhere_but_their_scope(realtime, read_key):
    run_id = _run(tags=["user-1"])
    other = _run(tags=["user-2"])
    wait_finished(run_id)
    with Client(realtime, api_key=read_key) as client:
        made = client.create_public_token({"runs": [run_id]}, expires_in="5m")
        tag_token = client.create_public_token({"tags": ["user-1"]})["token"]
        with pytest.raises(StepwiseApiError, match="at least one run or tag") as refused:
            client.create_public_token({"runs": []})
        assert refused.value.status_code == 400
        with pytest.raises(StepwiseApiError, match="between 1 second and 7 days"):
            client.create_public_token({"runs": [run_id]}, expires_in="30d")
        with pytest.raises(StepwiseApiError, match="unknown scope kind 'batches'"):
            client.create_public_token({"batches": ["b"]})
    with Client(realtime, api_key=api_key_create(environment="dev", name="t", scopes=["trigger"]).secret) as writer:
        with pytest.raises(StepwiseApiError, match="needs the 'read' scope") as refused:
            writer.create_public_token({"runs": [run_id]})
        assert refused.value.status_code == 403
    token = made["token"]
    assert token.startswith("pt_") and made["scopes"] == {"runs": [run_id], "tags": []}
    stream = f"{realtime}/api/runs/{{}}/events/stream"
    assert _get(stream.format(run_id), token).status_code == 200
    assert _get(stream.format(run_id), tag_token).status_code == 200
    for credential in (token, tag_token):
        answer = _get(stream.format(other), credential)
        assert answer.status_code == 403
        assert answer.json()["detail"] == f"this token may not read run '{other}': it is outside the token's scopes"
    # Read-only, for the realtime endpoints alone: the REST API does not take it.
    assert _get(f"{realtime}/api/runs/{run_id}", token).status_code == 401
    assert httpx.post(f"{realtime}/api/tasks/test-noop/trigger", json={"payload": {}},
                      headers={"Authorization": f"Bearer {token}"}).status_code == 401


@pytest.mark.parametrize("endpoint", ["run", "tag"])
def test_stream_endpoints_refuse_missing_bad_expired_revoked_and_unscoped_credentials(realtime, processes, endpoint):
    run_id = _run(tags=["vip"])
    url = f"{realtime}/api/runs/{run_id}/events/stream" if endpoint == "run" else f"{realtime}/api/runs/stream?tag=vip"
    trigger_only = api_key_create(environment="dev", name="t", scopes=["trigger"]).secret
    revoked = api_key_create(environment="dev", name="r", scopes=["read"])
    revoked_token = public_token_create(environment="dev", scopes={"runs": [run_id], "tags": ["vip"]},
                                        api_key_id=revoked.key.id)[0]
    api_key_revoke(key_id=revoked.key.id, environment="dev")
    good = _token(runs=[run_id], tags=["vip"])
    altered = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    cases = {
        None: (401, "send an API key or a public token as 'Authorization: Bearer <token>'"),
        "sk_dev_nope": (401, "the API key is not valid (unknown or revoked)"),
        trigger_only: (403, "this API key may not read runs: it needs the 'read' scope"),
        altered: (401, "the public token's signature does not match"),
        _expired_token(run_id): (401, "the public token expired at 2023-11-14T22:13:20+00:00; ask for a new one"),
        revoked_token: (401, "the API key that made this public token was revoked"),
        _token(runs=["run_other"], tags=["other"]): (403, "outside the token's scopes"),
    }
    for credential, (status, detail) in cases.items():
        answer = _get(url, credential)
        assert answer.status_code == status, (credential, answer.text)
        assert detail in answer.json()["detail"]
        assert answer.headers["Access-Control-Allow-Origin"] == "*"
    logs = "".join(proc.log_path.read_text(errors="replace") for proc in processes.procs)
    for credential in filter(None, cases):
        assert credential not in logs  # no token or key is ever written to a log
    if endpoint == "run":  # a token of another environment never sees this one's runs
        prod = public_token_create(environment="prod", scopes={"runs": [run_id]})[0]
        assert _get(url, prod).status_code == 404


def test_a_browser_preflight_is_answered_for_any_origin(realtime):
    answer = httpx.options(f"{realtime}/api/runs/run_x/events/stream",
                           headers={"Origin": "https://shop.example", "Access-Control-Request-Method": "GET",
                                    "Access-Control-Request-Headers": "authorization,last-event-id"})
    assert answer.status_code == 204
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in answer.headers["Access-Control-Allow-Headers"]


def test_a_run_stream_sends_a_snapshot_then_every_event_in_order_and_resumes_after_last_event_id(realtime, read_key):
    run_id = _run("test-progress-metadata", {"steps": 3}, metadata={"progress": 0})
    events = []
    snapshot = None
    for event, id_, data in sse_events(f"{realtime}/api/runs/{run_id}/events/stream?after=0", read_key):
        if event == "run":
            snapshot = data
        elif event == "end":
            assert data == {"status": "COMPLETED"}
            break
        elif id_ is not None:
            assert event == data["type"] and int(id_) == data["seq"]
            events.append(data)
    assert snapshot["id"] == run_id and snapshot["task_id"] == "test-progress-metadata"
    stored = [e.as_message() for e in RunEvent.objects.filter(run_id=run_id).order_by("seq")]
    assert events == stored
    assert [e["seq"] for e in events] == list(range(1, len(stored) + 1))
    metadata = [e["data"]["metadata"]["progress"] for e in events if e["type"] == "metadata.updated"]
    assert metadata[-1] == 1.0
    # A reconnect names the last event it got: the stream goes on from the next one.
    resumed = [int(id_) for event, id_, _ in sse_events(
        f"{realtime}/api/runs/{run_id}/events/stream?after=1", read_key, headers={"Last-Event-ID": "3"})
        if id_ is not None]
    assert resumed == list(range(4, len(stored) + 1))
    assert _get(f"{realtime}/api/runs/{run_id}/events/stream?after=-1", read_key).status_code == 400
    assert _get(f"{realtime}/api/runs/{run_id}/events/stream?after=x", read_key).json()["detail"] == (
        "after (or Last-Event-ID) must be a whole number, got 'x'")


def test_an_idle_stream_sends_heartbeats_and_ends_when_its_token_expires(realtime):
    run_id = _run("test-wait-token", {})
    token = public_token_create(environment="dev", scopes={"runs": [run_id]}, expires_in=2)[0]
    seen = []
    for event, _, data in sse_events(f"{realtime}/api/runs/{run_id}/events/stream", token):
        seen.append(event)
        if event == "end":
            assert data == {"reason": "the public token expired; subscribe again with a new one"}
            break
    assert "comment" in seen  # heartbeats kept it open while the run waited


def test_the_client_says_when_a_stream_ends_because_its_token_expired(realtime):
    run_id = _run("test-wait-token", {})
    token = public_token_create(environment="dev", scopes={"runs": [run_id]}, expires_in=2)[0]
    with Client(realtime, api_key=token) as public, pytest.raises(StreamEnded, match="public token expired"):
        for _ in public.events(run_id, timeout=30):
            pass
    # The run goes on to its wait (a loaded machine may take longer than the token's two seconds to get
    # there): only the reader's token ended.
    wait_for(lambda: Run.objects.get(id=run_id).status == "WAITING", message=f"run {run_id} waiting")


def test_a_tag_stream_sends_each_tagged_run_as_it_changes_and_no_other(realtime):
    before = _run(tags=["cust-7"])
    wait_finished(before)
    token = _token(tags=["cust-7"])
    statuses: dict[str, list[str]] = {}
    after = None
    for event, _, data in sse_events(f"{realtime}/api/runs/stream?tag=cust-7", token):
        if event != "run":
            continue
        statuses.setdefault(data["id"], []).append(data["status"])
        if after is None:
            _run(tags=["other"])
            after = _run(tags=["cust-7", "x"])
        if statuses.get(after, [""])[-1] == "COMPLETED":
            break
    assert set(statuses) == {before, after}
    assert statuses[before] == ["COMPLETED"]
    assert statuses[after][-1] == "COMPLETED" and len(statuses[after]) == len(set(statuses[after]))


def test_a_batch_stream_follows_the_runs_it_names_until_all_have_finished(realtime, all_key):
    with Client(realtime, api_key=all_key) as client:
        batch = [r["id"] for r in client.batch_trigger("test-noop", [{"payload": {"n": 1}}, {"payload": {"n": 2}}])]
        token = client.create_public_token({"runs": batch})["token"]
        half = client.create_public_token({"runs": batch[:1]})["token"]
    url = f"{realtime}/api/runs/stream?runs={','.join(batch)}"
    latest: dict[str, str] = {}
    for event, _, data in sse_events(url, token):
        if event == "run":
            latest[data["id"]] = data["status"]
        if event == "end":
            assert data == {"status": "finished"}
            break
    assert latest == {batch[0]: "COMPLETED", batch[1]: "COMPLETED"}
    refused = _get(url, half)
    assert refused.status_code == 403 and batch[1] in refused.json()["detail"]
    assert _get(f"{realtime}/api/runs/stream?runs={batch[0]},run_nope", token).status_code == 404
    too_many = _get(f"{realtime}/api/runs/stream?runs={','.join(f'run_{i}' for i in range(101))}", token)
    assert too_many.status_code == 400 and "1 to 100 run ids" in too_many.json()["detail"]
    assert _get(f"{realtime}/api/runs/stream", token).status_code == 400


async def _stream_until_end(path: str, api_key: str, seconds: float) -> list[tuple[str, str | None, dict]]:
    """Read a stream through the ASGI app in this process; return its (event, id, data) up to `end` or `seconds`."""
    headers = [(b"host", b"localhost"), (b"authorization", f"Bearer {api_key}".encode())]
    scope = {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "root_path": "", "path": path,
             "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1), "server": ("localhost", 80)}
    app = ApplicationCommunicator(django_asgi_app, scope)
    await app.send_input({"type": "http.request", "body": b"", "more_body": False})
    assert (await app.receive_output(10))["status"] == 200
    frames, buffer, deadline = [], "", time.monotonic() + seconds
    while time.monotonic() < deadline and not (frames and frames[-1][0] == "end"):
        buffer += (await app.receive_output(seconds)).get("body", b"").decode()
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line and line[0] != ":")
            if "data" in fields:
                frames.append((fields.get("event", "message"), fields.get("id"), json.loads(fields["data"])))
    await app.send_input({"type": "http.disconnect"})
    await app.wait(5)
    await sync_to_async(connections.close_all)()
    return frames


@pytest.mark.django_db(transaction=True)
async def test_a_run_stream_ends_when_the_run_finished_between_its_snapshot_and_its_stored_events(
        read_key, monkeypatch, settings):
    # The final status is then read from the database, and its live copy dropped as a duplicate.
    settings.STEPWISE_SSE_HEARTBEAT_SECONDS = 0.2
    run_id = await sync_to_async(_run)()  # no worker: it stays QUEUED until canceled here
    read_snapshot = sse._snapshot

    async def snapshot_then_cancel(wanted: str) -> dict | None:
        snapshot = await read_snapshot(wanted)
        if snapshot["status"] == "QUEUED":
            await sync_to_async(run_cancel)(run_id=wanted, reason="ended while a client subscribed")
        return snapshot

    monkeypatch.setattr(sse, "_snapshot", snapshot_then_cancel)
    frames = await _stream_until_end(f"/api/runs/{run_id}/events/stream", read_key, seconds=5)
    assert [event for event, _, _ in frames][-2:] == ["run", "end"]
    assert frames[0][2]["status"] == "QUEUED" and frames[-2][2]["status"] == "CANCELED"
    assert frames[-1][2] == {"status": "CANCELED"}
    stored = await sync_to_async(_stored)(run_id)
    assert [data for _, id_, data in frames if id_ is not None] == stored
