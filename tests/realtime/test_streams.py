"""Streams from inside a run: stored as they come, replayed to late subscribers, never sent twice."""
from __future__ import annotations

import pytest

from stepwise.runs.models import Run, RunEvent
from stepwise.runs.selectors import run_streams
from stepwise.runs.triggers import run_trigger
from tests.engine_tasks import _redis, executions
from tests.realtime.conftest import sse_events
from tests.realtime.stream_tasks import gate_key
from tests.waiting import wait_finished, wait_for


def _chunks(run_id: str, stream: str = "tokens") -> list[dict]:
    return [e.data for e in RunEvent.objects.filter(run_id=run_id, type="stream.chunk").order_by("seq")
            if e.data["stream"] == stream]


@pytest.mark.timeout(180)
def test_a_subscriber_joining_half_way_through_500_chunks_gets_all_500_once_in_order(realtime, read_key):
    run, _ = run_trigger(task_id="test-fake-llm", payload={"chunks": 500, "hold_at": 250})
    wait_for(lambda: len(_chunks(run.id)) == 250, message="the first 250 chunks")
    received = []
    ended = None
    for event, id_, data in sse_events(f"{realtime}/api/runs/{run.id}/events/stream", read_key):
        if event == "run" and not received:
            _redis.set(gate_key(run.id), 1, ex=600)  # joined: let the fake LLM go on
        if event == "stream.chunk":
            received.append((int(id_), data["data"]["index"], data["data"]["chunk"]))
        if event == "end":
            ended = data
            break
    assert ended == {"status": "COMPLETED"}
    assert [index for _, index, _ in received] == list(range(500))
    assert [chunk for _, _, chunk in received] == [f"t{i} " for i in range(500)]
    seqs = [seq for seq, _, _ in received]
    assert seqs == sorted(set(seqs))
    assert wait_finished(run.id).output == {"words": 500}


def test_an_async_task_streams_an_async_iterable(realtime):
    run, _ = run_trigger(task_id="test-fake-llm-async", payload={"chunks": 5})
    assert wait_finished(run.id).output == {"last": {"token": 4}}
    assert [c["chunk"] for c in _chunks(run.id)] == [{"token": i} for i in range(5)]
    assert run_streams(run_id=run.id) == [
        {"name": "tokens", "completed": True, "chunks": [{"key": "stream:tokens", "chunk": {"token": i}}
                                                          for i in range(5)]},
    ]


def test_a_retried_attempt_does_not_send_a_finished_stream_again(realtime):
    run, _ = run_trigger(task_id="test-stream-then-flaky", payload={})
    done = wait_finished(run.id)
    assert done.status == "COMPLETED" and done.attempt_count == 2
    # The second attempt got the stored chunks back without iterating the source again.
    assert done.output == {"chunks": ["a", "b", "c"]}
    assert executions(run.id) == ["stream:1"]
    assert [c["chunk"] for c in _chunks(run.id)] == ["a", "b", "c"]
    assert [c["chunk"] for c in _chunks(run.id, "progress")] == [{"done": 1}, {"done": 2}]
    assert Run.objects.get(id=run.id).steps.filter(kind="stream").count() == 3
