"""Tasks of the realtime tests: streaming from inside a run (a fake LLM among them), token callback URLs."""
from __future__ import annotations

import asyncio
import time

from stepwise.tasks.sdk import Retry, task, wait
from tests.engine_tasks import _redis, log_execution

FAST_RETRY = Retry(max_attempts=3, factor=1, min_timeout=0.1, max_timeout=0.1, jitter=False)


def gate_key(run_id: str) -> str:
    return f"stepwise-test:gate:{run_id}"


def _hold(run_id: str) -> None:
    """Wait until the test opens this run's gate (at most a minute)."""
    deadline = time.monotonic() + 60
    while not _redis.exists(gate_key(run_id)) and time.monotonic() < deadline:
        time.sleep(0.05)


@task(id="test-fake-llm", retry=FAST_RETRY)
def fake_llm(payload, ctx):
    def tokens():
        for index in range(payload["chunks"]):
            if index == payload.get("hold_at"):
                _hold(ctx.run_id)
            yield f"t{index} "

    text = "".join(ctx.stream("tokens", tokens()))
    return {"words": len(text.split())}


@task(id="test-fake-llm-async", retry=FAST_RETRY)
async def fake_llm_async(payload, ctx):
    async def tokens():
        for index in range(payload["chunks"]):
            await asyncio.sleep(0)
            yield {"token": index}

    chunks = await ctx.stream("tokens", tokens())
    return {"last": chunks[-1]}


@task(id="test-stream-then-flaky", retry=FAST_RETRY)
def stream_then_flaky(payload, ctx):
    def tokens():
        log_execution(ctx, "stream")
        yield from ["a", "b", "c"]

    chunks = ctx.stream("tokens", tokens())
    ctx.stream_append("progress", {"done": 1})

    def flaky():
        if ctx.attempt == 1:
            raise RuntimeError("fails once")
        return "ok"

    ctx.step("flaky", flaky)
    ctx.stream_append("progress", {"done": 2})
    return {"chunks": chunks}


@task(id="test-progress-metadata", retry=FAST_RETRY)
def progress_metadata(payload, ctx):
    for done in range(1, payload["steps"] + 1):
        ctx.step(f"part-{done}", lambda: None)
        ctx.metadata.set("progress", done / payload["steps"])
    return {"done": True}


@task(id="test-callback-token", retry=FAST_RETRY)
def callback_token(payload, ctx):
    token = wait.create_token(timeout=payload.get("timeout"), description="a service calls back")
    ctx.step("announce", lambda: {"id": token.id, "url": token.url})
    result = wait.for_token(token)
    return {"ok": result.ok, "output": result.output}
