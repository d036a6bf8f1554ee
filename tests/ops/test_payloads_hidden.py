"""Payloads hidden from viewers: a canary in a run's values reaches no viewer of a listed environment, on any surface.

STEPWISE_PAYLOADS_HIDDEN_FROM_VIEWERS lists the environments; whoever may read runs there but not
operate them sees a placeholder for the payload, the output, step results, waitpoint outputs and
stream chunks, while operators, admins and the engine read what is stored.
"""
from __future__ import annotations

import json
import uuid
from datetime import timedelta

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from websockets.sync.client import connect

from stepwise.runs.models import Attempt, Run, RunEvent, Step, Waitpoint
from stepwise.runs.realtime.tokens import public_token_create
from stepwise.runs.statuses import WaitpointKind, WaitpointStatus
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.access import payloads_hidden
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.redaction import HIDDEN_FROM_VIEWERS
from stepwise.tasks.schedules import schedule_upsert
from stepwise.tasks.services import environments_ensure
from tests.api.conftest import ApiClient
from tests.roles import grant

TAG = "hidden-canary"
CONSOLE_PATHS = ("/runs/{run}/", "/runs/{run}/timeline.json", "/runs/{run}/timeline.json?first=200",
                 "/runs/{run}/events.json", "/runs/{run}/steps/1.json", "/runs/{run}/checkpoint.json",
                 "/runs/{run}/export.jsonl", "/runs/{run}/export.markdown", "/runs/{run}/export.otlp")
API_PATHS = ("/api/runs/{run}", "/api/runs/{run}/export?format=jsonl", "/api/runs/{run}/export?format=markdown",
             "/api/runs/{run}/export?format=otlp", "/api/waitpoints/{waitpoint}",
             "/api/waitpoints?status=COMPLETED&run_id={run}", f"/api/runs?tag={TAG}")


def run_holding(canary: str, *, environment: str) -> Run:
    """Return a finished run whose payload, output, step result, waitpoint output and stream chunk hold ``canary``."""
    run, _ = run_trigger(task_id="test-noop", payload={"secret": canary},
                         options=TriggerOptions(environment=environment, delay=3600, tags=[TAG]))
    now = timezone.now()
    Attempt.objects.create(run=run, number=1, status="COMPLETED", worker_id="w1", lease_token="t",
                           version_id=run.version_id, started_at=now - timedelta(seconds=1), finished_at=now)
    Step.objects.create(run=run, position=1, key="fetch", name="fetch", status="COMPLETED", output={"got": canary},
                        attempt_number=1, started_at=now - timedelta(milliseconds=900),
                        finished_at=now - timedelta(milliseconds=800))
    Waitpoint.objects.create(run=run, key="approval", position=2, kind=WaitpointKind.TOKEN,
                             status=WaitpointStatus.COMPLETED, output={"approved": True, "note": canary},
                             completed_by="ops", completed_at=now)
    seq = run.last_event_seq + 1
    RunEvent.objects.create(run=run, seq=seq, type="stream.chunk", data={
        "stream": "answer", "key": "stream:answer", "index": 0, "attempt": 1, "chunk": f"token {canary}"})
    Run.objects.filter(id=run.id).update(
        status="COMPLETED", output={"answer": canary}, metadata={"note": "metadata stays"}, attempt_count=1,
        started_at=now - timedelta(seconds=1), finished_at=now, delay_until=None, last_event_seq=seq)
    return Run.objects.get(id=run.id)


def signed_in(username: str, environment: str, role: str | None) -> Client:
    user = User.objects.create_user(username, password="pw-long-enough-123", is_superuser=role is None)
    if role is not None:
        grant(user, environment, role)
    client = Client()
    client.force_login(user)
    return client


def key_holder(environment: str, *scopes: str) -> ApiClient:
    return ApiClient(api_key_create(environment=environment, name="-".join(scopes), scopes=list(scopes)).secret)


def body_of(response) -> str:
    assert response.status_code == 200, (response.status_code, response.content[:300])
    return (b"".join(response.streaming_content) if response.streaming else response.content).decode()


def console_bodies(client: Client, run: Run) -> dict[str, str]:
    """Return what the console pages and their JSON show of ``run``, and the REST API to the same session."""
    waitpoint = run.waitpoints.get()
    urls = [path.format(run=run.id) for path in CONSOLE_PATHS]
    bodies = {url: body_of(client.get(url)) for url in urls}
    for path in API_PATHS:
        url = path.format(run=run.id, waitpoint=waitpoint.id)
        bodies[url] = body_of(client.get(url, headers={"Stepwise-Environment": run.environment_id}))
    return bodies


def api_bodies(api: ApiClient, run: Run) -> dict[str, str]:
    """Return what the REST API shows of ``run`` to a key."""
    waitpoint = run.waitpoints.get()
    urls = [path.format(run=run.id, waitpoint=waitpoint.id) for path in API_PATHS]
    return {url: body_of(api.get(url)) for url in urls}


@pytest.fixture
def hidden_in_prod(db, settings):
    environments_ensure()
    settings.STEPWISE_PAYLOADS_HIDDEN_FROM_VIEWERS = ["prod"]


def test_a_viewer_of_a_listed_environment_sees_a_placeholder_on_every_console_and_api_surface(hidden_in_prod):
    canary = f"canary-{uuid.uuid4().hex}"
    run = run_holding(canary, environment="prod")
    viewer = signed_in("vera", "prod", "viewer")

    shown = {**console_bodies(viewer, run),
             **{f"key read {p}": b for p, b in api_bodies(key_holder("prod", "read"), run).items()},
             **{f"key read+trigger {p}": b for p, b in api_bodies(key_holder("prod", "read", "trigger"), run).items()}}

    assert [surface for surface, body in shown.items() if canary in body] == []
    detail = json.loads(shown[f"/api/runs/{run.id}"])
    assert (detail["payload"], detail["output"], detail["steps"][0]["output"]) == (HIDDEN_FROM_VIEWERS,) * 3
    assert detail["metadata"] == {"note": "metadata stays"}  # metadata, errors and logs are shown as before
    assert json.loads(shown[f"/runs/{run.id}/checkpoint.json"])["state"] == {"fetch": HIDDEN_FROM_VIEWERS}
    assert json.loads(shown[f"/runs/{run.id}/steps/1.json"])["output"] == HIDDEN_FROM_VIEWERS
    waitpoint = json.loads(shown[f"key read /api/waitpoints/{run.waitpoints.get().id}"])
    assert waitpoint["output"] == HIDDEN_FROM_VIEWERS
    chunk = json.loads(shown[f"/runs/{run.id}/events.json"])["events"][-1]
    assert chunk["type"] == "stream.chunk" and chunk["data"]["chunk"] == HIDDEN_FROM_VIEWERS
    page = shown[f"/runs/{run.id}/"]
    assert HIDDEN_FROM_VIEWERS in page and "Replay with an edited payload" not in page
    # Only shown so: the engine, its replays and the local CLI read what is stored.
    stored = Run.objects.get(id=run.id)
    assert stored.payload == {"secret": canary} and stored.output == {"answer": canary}
    assert Step.objects.get(run=run).output == {"got": canary}


@pytest.mark.parametrize("role", ["operator", "admin", None])  # None: a superuser
def test_operators_and_admins_of_a_listed_environment_see_everything(hidden_in_prod, role):
    canary = f"canary-{uuid.uuid4().hex}"
    run = run_holding(canary, environment="prod")

    shown = console_bodies(signed_in("olga", "prod", role), run)

    must_show = [f"/runs/{run.id}/", f"/runs/{run.id}/timeline.json", f"/runs/{run.id}/events.json",
                 f"/runs/{run.id}/steps/1.json", f"/runs/{run.id}/checkpoint.json", f"/runs/{run.id}/export.jsonl",
                 f"/api/runs/{run.id}", f"/api/waitpoints/{run.waitpoints.get().id}"]
    assert [path for path in must_show if canary not in shown[path]] == []
    assert HIDDEN_FROM_VIEWERS not in "".join(shown.values())


@pytest.mark.parametrize("scopes", [("read", "operate"), ("read", "admin")])
def test_api_keys_that_may_operate_or_administer_a_listed_environment_see_everything(hidden_in_prod, scopes):
    canary = f"canary-{uuid.uuid4().hex}"
    run = run_holding(canary, environment="prod")

    shown = api_bodies(key_holder("prod", *scopes), run)

    detail = json.loads(shown[f"/api/runs/{run.id}"])
    assert detail["payload"] == {"secret": canary} and detail["steps"][0]["output"] == {"got": canary}
    assert canary in shown[f"/api/runs/{run.id}/export?format=jsonl"]
    assert canary in shown[f"/api/waitpoints/{run.waitpoints.get().id}"]


def test_a_schedule_s_payload_is_hidden_from_a_read_key_of_a_listed_environment_and_shown_to_an_admin_key(
        hidden_in_prod):
    canary = f"canary-{uuid.uuid4().hex}"
    schedule, _ = schedule_upsert(environment="prod", task_id="test-noop", cron="0 * * * *", dedup_key="hourly",
                                  payload={"secret": canary})

    as_reader = key_holder("prod", "read").get(f"/api/schedules/{schedule.id}")
    as_admin = key_holder("prod", "read", "admin").get("/api/schedules")

    assert as_reader.status_code == 200 and as_reader.json()["payload"] == HIDDEN_FROM_VIEWERS
    assert canary not in body_of(key_holder("prod", "read").get("/api/schedules"))
    assert [s["payload"] for s in as_admin.json()] == [{"secret": canary}]


def test_viewers_of_an_environment_not_listed_see_everything(hidden_in_prod):
    canary = f"canary-{uuid.uuid4().hex}"
    run = run_holding(canary, environment="dev")

    shown = {**console_bodies(signed_in("vera", "dev", "viewer"), run), **api_bodies(key_holder("dev", "read"), run)}

    assert [path for path in (f"/runs/{run.id}/", f"/runs/{run.id}/steps/1.json", f"/runs/{run.id}/checkpoint.json",
                              f"/runs/{run.id}/events.json", f"/api/runs/{run.id}",
                              f"/api/waitpoints/{run.waitpoints.get().id}") if canary not in shown[path]] == []
    assert HIDDEN_FROM_VIEWERS not in "".join(shown.values())


def test_only_actors_who_may_not_operate_in_a_listed_environment_are_hidden_from_and_stepwise_itself_never(
        hidden_in_prod):
    viewer = User.objects.create_user("vic")
    grant(viewer, "prod", "viewer")
    token = public_token_create(environment="prod", scopes={"runs": ["run_x"]})[1]
    read_key = api_key_create(environment="prod", name="r", scopes=["read"]).key

    assert payloads_hidden(viewer, "prod") and payloads_hidden(token, "prod") and payloads_hidden(read_key, "prod")
    assert not payloads_hidden(viewer, "dev") and not payloads_hidden(None, "prod")


def _websocket_frames(url: str, path: str, *, headers: dict[str, str]) -> list[str]:
    """Return the frames a websocket of the live server sends, up to the run's stream chunk."""
    frames: list[str] = []
    with connect(url.replace("http://", "ws://") + path, origin=url if "Cookie" in headers else None,
                 additional_headers=headers, open_timeout=10) as socket:
        while not frames or json.loads(frames[-1])["type"] != "stream.chunk":
            frames.append(socket.recv(timeout=10))
    return frames


def _first_snapshot(url: str, credential: str) -> str:
    """Return the first ``run`` frame of a stream that goes on live (the runs of a tag)."""
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {credential}"},
                      timeout=httpx.Timeout(10, read=30)) as response:
        assert response.status_code == 200, response.read()
        lines = response.iter_lines()
        for line in lines:
            if line == "event: run":
                return next(lines)
    raise AssertionError(f"no run snapshot from {url}")


def _session_cookie(username: str, environment: str, role: str) -> str:
    return f"sessionid={signed_in(username, environment, role).cookies['sessionid'].value}"


def test_server_sent_events_and_websockets_hide_a_listed_environment_s_values_from_viewers(
        processes, transactional_db):
    environments_ensure()
    console = processes.console(STEPWISE_PAYLOADS_HIDDEN_FROM_VIEWERS="prod, eu-prod")
    canary = f"canary-{uuid.uuid4().hex}"
    run = run_holding(canary, environment="prod")
    read_key = api_key_create(environment="prod", name="reader", scopes=["read"]).secret
    operate_key = api_key_create(environment="prod", name="ops", scopes=["read", "operate"]).secret
    token = public_token_create(environment="prod", scopes={"runs": [run.id], "tags": [TAG]})[0]

    def stream(path: str, credential: str) -> str:
        response = httpx.get(f"{console}{path}", headers={"Authorization": f"Bearer {credential}"}, timeout=30)
        assert response.status_code == 200, response.text
        return response.text

    # The run has finished: its stream sends the snapshot and the stored events (the chunk among them), then ends.
    for credential in (read_key, token):
        text = stream(f"/api/runs/{run.id}/events/stream", credential)
        assert canary not in text and '"output":"[hidden from viewers in this environment]"' in text
        assert '"chunk":"[hidden from viewers in this environment]"' in text
    assert canary in stream(f"/api/runs/{run.id}/events/stream", operate_key)
    # The runs of a tag, and of a batch: snapshots with their outputs; the batch ends once all have finished.
    batch = stream(f"/api/runs/stream?runs={run.id}", read_key)
    assert canary not in batch and HIDDEN_FROM_VIEWERS in batch
    assert canary in stream(f"/api/runs/stream?runs={run.id}", operate_key)
    for credential in (read_key, token):
        tagged = _first_snapshot(f"{console}/api/runs/stream?tag={TAG}", credential)
        assert canary not in tagged and HIDDEN_FROM_VIEWERS in tagged
    assert canary in _first_snapshot(f"{console}/api/runs/stream?tag={TAG}", operate_key)

    # Websockets: the stored events, up to the stream chunk (after run.created).
    viewers = {"read key": {"Authorization": f"Bearer {read_key}"},
               "public token": {"Authorization": f"Bearer {token}"},
               "viewer session": {"Cookie": _session_cookie("vera", "prod", "viewer")}}
    for who, headers in viewers.items():
        frames = _websocket_frames(console, f"/ws/runs/{run.id}/", headers=headers)
        assert json.loads(frames[-1])["data"]["chunk"] == HIDDEN_FROM_VIEWERS, who
        assert canary not in "".join(frames), who
    for who, headers in {"operate key": {"Authorization": f"Bearer {operate_key}"},
                         "operator session": {"Cookie": _session_cookie("olga", "prod", "operator")}}.items():
        frames = _websocket_frames(console, f"/ws/runs/{run.id}/", headers=headers)
        assert json.loads(frames[-1])["data"]["chunk"] == f"token {canary}", who
