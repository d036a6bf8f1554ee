"""process-video: download, transcribe, summarise; an async task with async steps."""
from __future__ import annotations

import asyncio
import os

from examples.fakes import fingerprint, flaky
from stepwise.tasks.sdk import Retry, step, task


def _speed() -> float:
    return float(os.environ.get("STEPWISE_EXAMPLE_SPEED", "1"))


@step()
async def download(url: str) -> dict:
    await asyncio.sleep(0.5 * _speed())
    return {"path": f"/tmp/video-{fingerprint(url)}.mp4", "seconds": 312}


@step()
async def transcribe(video: dict) -> str:
    await asyncio.sleep(0.8 * _speed())
    flaky("speech-to-text")
    return "Welcome to the quarterly review. Revenue grew, churn fell, and we shipped durable runs."


@step()
async def summarise(transcript: str) -> str:
    await asyncio.sleep(0.3 * _speed())
    sentences = [s.strip() for s in transcript.split(".") if s.strip()]
    return sentences[-1] + "."


@task(id="process-video", retry=Retry(max_attempts=4, factor=2, min_timeout=0.5, max_timeout=5), max_duration="10m")
async def process_video(payload, ctx):
    ctx.metadata.set("stage", "downloading")       # shown live in the run page's Metadata card
    video = await download(payload["url"])
    ctx.metadata.set("stage", "transcribing")
    transcript = await transcribe(video)
    ctx.metadata.set("stage", "summarising")
    summary = await summarise(transcript)
    ctx.metadata.set("stage", "done")
    return {"url": payload["url"], "duration": video["seconds"], "summary": summary}
