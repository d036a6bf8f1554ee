"""A fan-out batch job: split a list into chunks, process each chunk as a step."""
from __future__ import annotations

from examples.fakes import flaky, pause
from stepwise.tasks.sdk import Retry, task


def resize(chunk: list[str]) -> list[str]:
    pause(0.1)
    flaky("image resizer")
    return [f"{name}@thumb" for name in chunk]


@task(id="resize-images", retry=Retry(max_attempts=5, factor=1.5, min_timeout=0.5, max_timeout=5))
def resize_images(payload, ctx):
    images = payload.get("images") or [f"img-{i}.png" for i in range(12)]
    size = int(payload.get("chunk", 4))
    done: list[str] = []
    for start in range(0, len(images), size):
        # Each chunk is its own step: a retry resumes after the last finished chunk.
        done += ctx.step("resize-chunk", resize, images[start : start + size])
    return {"resized": len(done), "thumbnails": done}
