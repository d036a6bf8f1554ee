"""Live run events go through the real Redis channel layer, only to groups someone has joined."""
from __future__ import annotations

import asyncio

import pytest
from channels.layers import channel_layers
from channels_redis.core import RedisChannelLayer

from stepwise.runs import events
from stepwise.runs.events import RUNS_GROUP, _publisher_start, events_of, publish_batch, run_group_name


def _message(run_id: str, seq: int, type_: str = "step.completed") -> dict:
    return {"run_id": run_id, "seq": seq, "type": type_, "data": {"key": "s"}, "at": "2026-12-02T00:00:00+00:00"}


# The runs of earlier tests may still publish from this process, to the runs list too.
OURS = frozenset({"run_watched", "run_nobody_watches", "run_ordered"})


def _ours(message: dict) -> bool:
    return any(event["run_id"] in OURS for event in events_of(message))


async def _receive_ours(layer, channel: str) -> dict:
    """Return the next message on a channel about this module's runs, passing over any other run's."""
    while not _ours(message := await asyncio.wait_for(layer.receive(channel), 5)):
        pass
    return message


@pytest.mark.parametrize("path", ["on the event loop", "from the publisher thread"])
def test_events_reach_watchers_and_skip_groups_nobody_joined(monkeypatch, path):
    # Workers publish from a thread of their own, which asks Redis who watches with a plain
    # client and turns its event loop only to send; the server's code awaits publish_batch.
    sent: list[str] = []
    real_send = RedisChannelLayer.group_send

    async def counted(self, group, message):  # the real send, with a note of where this test's events went
        if _ours(message):
            sent.append(group)
        await real_send(self, group, message)

    monkeypatch.setattr(RedisChannelLayer, "group_send", counted)
    if path == "from the publisher thread":
        async def not_on_the_loop(layer, groups):
            raise AssertionError("the publisher thread asked Redis on its event loop")

        monkeypatch.setattr(events, "_groups_watched", not_on_the_loop)
        publisher_send = _publisher_start()

    async def scenario() -> tuple[dict, dict]:
        layer = channel_layers.make_backend("default")

        async def publish(batch: list[dict]) -> None:
            if path == "on the event loop":
                await publish_batch(layer, batch)
            else:
                await asyncio.to_thread(publisher_send, batch)

        watcher, lister = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(run_group_name("run_watched"), watcher)
        await layer.group_add(RUNS_GROUP, lister)
        try:
            await publish([
                _message("run_watched", 7),
                _message("run_nobody_watches", 3),
                _message("run_nobody_watches", 4, "run.status"),
            ])
            got = await _receive_ours(layer, watcher)
            listed = await _receive_ours(layer, lister)
        finally:
            await layer.group_discard(run_group_name("run_watched"), watcher)
            await layer.group_discard(RUNS_GROUP, lister)
        return got, listed

    try:
        got, listed = asyncio.run(scenario())
    finally:
        if path == "from the publisher thread":
            publisher_send.close()

    assert [(e["run_id"], e["seq"]) for e in events_of(got)] == [("run_watched", 7)]
    assert [(e["run_id"], e["seq"]) for e in events_of(listed)] == [("run_nobody_watches", 4)]
    assert sorted(sent) == sorted([run_group_name("run_watched"), RUNS_GROUP])


def test_a_group_gets_the_events_of_a_batch_in_one_message_in_their_order():
    # The runs list, which has no seq to reorder by, once saw a run's COMPLETED before its EXECUTING.
    async def scenario() -> list[list[int]]:
        layer = channel_layers.make_backend("default")
        watcher, lister = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(run_group_name("run_ordered"), watcher)
        await layer.group_add(RUNS_GROUP, lister)
        received = []
        try:
            for _ in range(50):
                await publish_batch(layer, [_message("run_ordered", 2, "run.status"),
                                            _message("run_ordered", 3, "run.status")])
                for channel in (watcher, lister):
                    received.append([e["seq"] for e in events_of(await _receive_ours(layer, channel))])
        finally:
            await layer.group_discard(run_group_name("run_ordered"), watcher)
            await layer.group_discard(RUNS_GROUP, lister)
        return received

    assert all(seqs == [2, 3] for seqs in asyncio.run(scenario()))


def test_a_consumer_of_the_earlier_version_gets_the_batch_s_last_stored_event_to_catch_up_from():
    # During a rolling upgrade a console of the earlier version reads only "event": the last stored
    # one, so its seq check fetches the others from the database.
    async def scenario() -> dict:
        layer = channel_layers.make_backend("default")
        watcher = await layer.new_channel()
        await layer.group_add(run_group_name("run_upgrading"), watcher)
        started = {**_message("run_upgrading", None, "step.started"), "transient": True}
        try:
            await publish_batch(layer, [_message("run_upgrading", 2), started, _message("run_upgrading", 3), started])
            return await asyncio.wait_for(layer.receive(watcher), 5)
        finally:
            await layer.group_discard(run_group_name("run_upgrading"), watcher)

    message = asyncio.run(scenario())
    assert message["type"] == "run.event" and message["event"]["seq"] == 3
    assert [(e["seq"], e["type"]) for e in events_of(message)] == [
        (2, "step.completed"), (None, "step.started"), (3, "step.completed"), (None, "step.started")]
