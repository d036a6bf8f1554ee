"""Websockets streaming run events through the real Redis channel layer from real workers."""
from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.contrib.auth.models import User
from django.db import connections
from django.test import Client

from stepwise.console.asgi import application
from stepwise.console.websocket_origins import SameOriginValidator
from stepwise.runs.models import Run, RunEvent
from stepwise.runs.routing import websocket_urlpatterns_under
from stepwise.runs.statuses import FINAL_STATUSES
from stepwise.runs.triggers import TriggerOptions, run_trigger
from tests.engine_tasks import CANARY
from tests.roles import grant
from tests.waiting import wait_finished, wait_for
from tests.websockets import WebsocketClient

FINAL = {str(s) for s in FINAL_STATUSES}
# A project that includes the console under "stepwise/" (examples/shop_site): its asgi.py, with the same guards.
application_under_prefix = SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns_under("stepwise/"))))


@pytest.fixture(autouse=True)
async def _close_consumer_connections():
    """Close the database connection the consumers' helper thread opened, so the test database can go."""
    yield
    await sync_to_async(connections.close_all)()


def _session_cookie(user: User) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def staff_cookie(transactional_db) -> bytes:
    return _session_cookie(User.objects.create_user("ops", password="x", is_superuser=True))


def communicator(path: str, cookie: bytes | None = None, app=application) -> WebsocketClient:
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if cookie:
        headers.append((b"cookie", cookie))
    return WebsocketClient(app, path, headers=headers)


def trigger(task_id: str, payload=None) -> str:
    run, _ = run_trigger(task_id=task_id, payload=payload or {})
    return run.id


def stored_messages(run_id: str) -> list[dict]:
    return [e.as_message() for e in RunEvent.objects.filter(run_id=run_id).order_by("seq")]


async def receive_stored(comm: WebsocketClient, timeout: float = 10, live_only: list[dict] | None = None) -> dict:
    """Return the next stored event; live-only ones (a step started, no seq) go to ``live_only``."""
    while True:
        event = await comm.receive_json_from(timeout=timeout)
        if not event.get("transient"):
            return event
        assert event["seq"] is None
        if live_only is not None:
            live_only.append(event)


async def receive_until_finished(
    comm: WebsocketClient, received: list[dict], timeout: float = 30, live_only: list[dict] | None = None
) -> None:
    """Receive stored events until the run's final status event arrives."""
    while True:
        event = await receive_stored(comm, timeout, live_only)
        received.append(event)
        if event["type"] == "run.status" and event["data"]["to"] in FINAL:
            return


async def close_code(comm: WebsocketClient) -> int:
    connected, _ = await comm.connect()
    assert connected
    message = await comm.receive_output(timeout=5)
    assert message["type"] == "websocket.close"
    return message["code"]


async def test_anonymous_websocket_is_refused(transactional_db):
    run_id = await sync_to_async(trigger)("test-noop")
    assert await close_code(communicator(f"/ws/runs/{run_id}/")) == 4401
    assert await close_code(communicator("/ws/runs/")) == 4401


async def test_user_without_a_role_is_refused_and_a_viewer_of_the_run_s_environment_is_accepted(transactional_db):
    run_id = await sync_to_async(trigger)("test-noop")
    plain = await sync_to_async(User.objects.create_user)("guest", password="x")
    assert await close_code(communicator(f"/ws/runs/{run_id}/", await sync_to_async(_session_cookie)(plain))) == 4403

    def viewer() -> bytes:
        grant(plain, "dev", "viewer")
        return _session_cookie(User.objects.get(id=plain.id))

    comm = communicator(f"/ws/runs/{run_id}/?after=0", await sync_to_async(viewer)())
    connected, _ = await comm.connect()
    assert connected
    first = await comm.receive_json_from(timeout=5)
    assert (first["seq"], first["type"]) == (1, "run.created")
    await comm.disconnect()


@pytest.mark.parametrize("host, origin, accepted", [
    (b"localhost:8000", b"http://localhost:8000", True),
    (b"localhost:8000", b"http://localhost:8001", False),  # another program on the same host
    (b"localhost", b"http://localhost:80", True),
    (b"localhost", b"https://localhost", False),
    (b"localhost", b"http://evil.example", False),
    (b"localhost", b"null", False),
    (b"localhost", None, False),
])
async def test_a_websocket_from_another_origin_scheme_or_port_is_refused(staff_cookie, host, origin, accepted):
    headers = [(b"host", host), (b"cookie", staff_cookie)] + ([(b"origin", origin)] if origin else [])
    comm = WebsocketClient(application, "/ws/runs/", headers=headers)
    connected, _ = await comm.connect()
    assert connected is accepted
    if connected:
        await comm.disconnect()


async def test_a_viewer_of_dev_cannot_follow_a_prod_run_nor_see_it_on_the_runs_list(transactional_db):
    def setup() -> tuple[str, bytes]:
        user = User.objects.create_user("dev-viewer", password="x")
        grant(user, "dev", "viewer")
        prod = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(environment="prod"))[0]
        return prod.id, _session_cookie(user)

    prod_run_id, cookie = await sync_to_async(setup)()
    assert await close_code(communicator(f"/ws/runs/{prod_run_id}/?after=0", cookie)) == 4403

    runs_list = communicator("/ws/runs/", cookie)
    assert (await runs_list.connect())[0]
    await sync_to_async(run_trigger)(task_id="test-noop", payload={}, options=TriggerOptions(environment="prod"))
    dev_run_id = await sync_to_async(trigger)("test-noop")
    received = []
    while not received or received[-1]["run_id"] != dev_run_id:
        received.append(await runs_list.receive_json_from(timeout=10))
    await runs_list.disconnect()
    assert [(e["run_id"], e["type"]) for e in received] == [(dev_run_id, "run.created")]


async def test_unknown_run_and_bad_seq_are_refused(staff_cookie):
    assert await close_code(communicator("/ws/runs/run_nope/", staff_cookie)) == 4404
    run_id = await sync_to_async(trigger)("test-noop")
    assert await close_code(communicator(f"/ws/runs/{run_id}/?after=x", staff_cookie)) == 4400


async def test_client_reconnecting_with_its_last_seq_ends_with_the_full_event_sequence(live, staff_cookie):
    run_id = await sync_to_async(trigger)("test-sleepy-steps", {"steps": 8, "sleep": 0.15})

    def seq_now() -> int:
        return Run.objects.filter(id=run_id).values_list("last_event_seq", flat=True).get()

    await sync_to_async(wait_for)(lambda: seq_now() >= 4, message="the run to get going")
    stored_at_connect = await sync_to_async(seq_now)()
    received: list[dict] = []
    first = communicator(f"/ws/runs/{run_id}/?after=0", staff_cookie)
    assert (await first.connect())[0]
    live_only: list[dict] = []
    while len(received) < stored_at_connect + 4:
        received.append(await receive_stored(first, live_only=live_only))
    await first.disconnect()
    assert received[-1]["seq"] > stored_at_connect  # some arrived live, after the stored ones

    await asyncio.sleep(0.6)  # the run goes on while the client is away
    second = communicator(f"/ws/runs/{run_id}/?after={received[-1]['seq']}", staff_cookie)
    assert (await second.connect())[0]
    await receive_until_finished(second, received, live_only=live_only)
    await second.disconnect()

    await sync_to_async(wait_finished)(run_id)
    stored = await sync_to_async(stored_messages)(run_id)
    assert [e["seq"] for e in received] == list(range(1, len(stored) + 1))
    assert received == stored
    assert [e["data"]["to"] for e in received if e["type"] == "run.status"] == ["EXECUTING", "COMPLETED"]


async def test_a_step_starting_is_shown_live_but_never_stored(live, staff_cookie):
    # Delayed by a second, so the client listens before the run starts and sees every event live.
    run, _ = await sync_to_async(run_trigger)(
        task_id="test-sleepy-steps", payload={"steps": 3, "sleep": 0.05}, options=TriggerOptions(delay=1)
    )
    comm = communicator(f"/ws/runs/{run.id}/?after=1", staff_cookie)
    assert (await comm.connect())[0]
    received: list[dict] = []
    live_only: list[dict] = []
    await receive_until_finished(comm, received, live_only=live_only)
    await comm.disconnect()

    assert [(e["type"], e["data"]["key"]) for e in live_only] == [
        ("step.started", "s0"), ("step.started", "s1"), ("step.started", "s2")
    ]
    stored = await sync_to_async(stored_messages)(run.id)
    assert not any(e["type"] == "step.started" for e in stored)
    assert received == stored[1:]


async def test_events_committed_while_catching_up_are_neither_lost_nor_duplicated(live, staff_cookie):
    run_id = await sync_to_async(trigger)("test-sleepy-steps", {"steps": 30, "sleep": 0.01})
    received: list[dict] = []
    for after in (0, 1, 2):  # connect several times while the run is emitting fast
        received = [e for e in received if e["seq"] <= after]
        comm = communicator(f"/ws/runs/{run_id}/?after={after}", staff_cookie)
        assert (await comm.connect())[0]
        if after < 2:
            received.append(await receive_stored(comm))
            await comm.disconnect()
    await receive_until_finished(comm, received)
    await comm.disconnect()

    stored = await sync_to_async(stored_messages)(run_id)
    assert [e["seq"] for e in received] == list(range(1, len(stored) + 1))
    assert received == stored


async def test_runs_list_socket_streams_status_changes_of_every_run(live, staff_cookie):
    comm = communicator("/ws/runs/", staff_cookie)
    assert (await comm.connect())[0]
    run_id = await sync_to_async(trigger)("test-noop")
    seen: list[tuple[str, str]] = []
    while ("run.status", "COMPLETED") not in seen:
        event = await comm.receive_json_from(timeout=15)
        assert event["type"] in {"run.created", "run.status"}
        if event["run_id"] == run_id:
            seen.append((event["type"], event["data"].get("to", event["data"].get("status"))))
    await comm.disconnect()
    assert seen == [("run.created", "QUEUED"), ("run.status", "EXECUTING"), ("run.status", "COMPLETED")]


async def test_websocket_frames_of_a_run_never_carry_a_secret(live, staff_cookie):
    run_id = await sync_to_async(trigger)("test-canary")
    comm = communicator(f"/ws/runs/{run_id}/?after=0", staff_cookie)
    assert (await comm.connect())[0]
    received: list[dict] = []
    await receive_until_finished(comm, received)
    await comm.disconnect()

    frames = json.dumps(received, ensure_ascii=False)
    assert "••••" in frames and CANARY not in frames


async def test_live_event_after_lost_messages_brings_the_missing_ones_from_the_database(staff_cookie):
    def delayed_run() -> str:  # no worker takes it, so only this test writes its events
        return run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(delay=3600))[0].id

    run_id = await sync_to_async(delayed_run)()
    comm = communicator(f"/ws/runs/{run_id}/?after=0", staff_cookie)
    assert (await comm.connect())[0]
    received = [await comm.receive_json_from()]

    def lose_two_then_publish_one() -> None:
        from django.db import transaction
        from django.db.models import F

        from stepwise.runs.events import event_append

        with transaction.atomic():  # rows written without a broadcast: as if the channel layer dropped them
            for n in (1, 2):
                Run.objects.filter(id=run_id).update(last_event_seq=F("last_event_seq") + 1)
                seq = Run.objects.values_list("last_event_seq", flat=True).get(id=run_id)
                RunEvent.objects.create(run_id=run_id, seq=seq, type="note", data={"lost": n})
        with transaction.atomic():
            event_append(run_id=run_id, type="note", data={"lost": 0})

    await sync_to_async(lose_two_then_publish_one)()
    for _ in range(3):
        received.append(await comm.receive_json_from())
    await comm.disconnect()
    assert [(e["seq"], e["data"].get("lost")) for e in received] == [(1, None), (2, 1), (3, 2), (4, 0)]


async def test_one_message_per_event_from_a_publisher_of_an_earlier_version_is_still_streamed(staff_cookie):
    # During a deploy, workers of the earlier version still send each event as a message of its own.
    from channels.layers import get_channel_layer

    from stepwise.runs.events import RUNS_GROUP, run_group_name

    def delayed_run() -> str:  # no worker takes it, so only this test writes its events
        return run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(delay=3600))[0].id

    run_id = await sync_to_async(delayed_run)()
    run_socket = communicator(f"/ws/runs/{run_id}/?after=0", staff_cookie)
    runs_list = communicator("/ws/runs/", staff_cookie)
    assert (await run_socket.connect())[0] and (await runs_list.connect())[0]
    assert (await run_socket.receive_json_from())["seq"] == 1

    def stored_note() -> dict:
        from django.db import transaction

        from stepwise.runs.events import event_append

        with transaction.atomic():
            return event_append(run_id=run_id, type="run.status", data={"from": "DELAYED", "to": "QUEUED"}).as_message()

    message = await sync_to_async(stored_note)()  # published in a batch, and once more the earlier way:
    layer = get_channel_layer()
    for group in (run_group_name(run_id), RUNS_GROUP):
        await layer.group_send(group, {"type": "run.event", "event": message})
    listed = []
    while len(listed) < 2:
        event = await runs_list.receive_json_from()
        if event["type"] != "run.created":  # the trigger's, if it was published after the list connected
            listed.append(event)
    streamed = await run_socket.receive_json_from()
    assert (streamed["seq"], streamed["data"]["to"]) == (2, "QUEUED")
    assert await run_socket.receive_nothing(timeout=0.5)  # the second copy is a duplicate by seq
    assert [(e["run_id"], e["seq"]) for e in listed] == [(run_id, 2), (run_id, 2)]
    await run_socket.disconnect()
    await runs_list.disconnect()


async def test_under_the_console_s_prefix_a_run_s_socket_and_the_runs_list_stream_live_events(live, staff_cookie):
    runs_list = communicator("/stepwise/ws/runs/", staff_cookie, app=application_under_prefix)
    assert (await runs_list.connect())[0]
    run_id = await sync_to_async(trigger)("test-sleepy-steps", {"steps": 3, "sleep": 0.1})
    listed = await runs_list.receive_json_from(timeout=10)
    while listed["run_id"] != run_id:  # a run of an earlier test may still be finishing
        listed = await runs_list.receive_json_from(timeout=10)
    assert listed["type"] == "run.created"
    await runs_list.disconnect()

    comm = communicator(f"/stepwise/ws/runs/{run_id}/?after=0", staff_cookie, app=application_under_prefix)
    assert (await comm.connect())[0]
    received: list[dict] = []
    await receive_until_finished(comm, received)
    await comm.disconnect()
    assert received == await sync_to_async(stored_messages)(run_id)
    assert [e["data"]["to"] for e in received if e["type"] == "run.status"] == ["EXECUTING", "COMPLETED"]


async def test_under_the_console_s_prefix_sockets_keep_their_guards_and_the_root_path_is_not_served(staff_cookie):
    run_id = await sync_to_async(trigger)("test-noop")
    anonymous = communicator(f"/stepwise/ws/runs/{run_id}/", app=application_under_prefix)
    assert await close_code(anonymous) == 4401
    elsewhere = WebsocketClient(application_under_prefix, "/stepwise/ws/runs/", headers=[
        (b"origin", b"http://evil.example"), (b"host", b"localhost"), (b"cookie", staff_cookie)])
    assert (await elsewhere.connect())[0] is False
    with pytest.raises(ValueError, match="No route found"):
        await communicator("/ws/runs/", staff_cookie, app=application_under_prefix).connect()
