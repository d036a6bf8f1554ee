"""summarise-document: a progress bar from metadata and a fake LLM's tokens streamed live to any web page."""
from __future__ import annotations

import random

from examples.fakes import pause
from stepwise.tasks.sdk import Retry, task

WORDS = ("Durable runs record every step, so a crash or a deploy never repeats finished work; "
         "subscribers replay what they missed and then follow live.").split()


def fake_llm(sections: int):
    """Yield a summary word by word, as a streaming LLM answer would."""
    for word in WORDS[: 4 + 2 * sections]:
        pause(random.uniform(0.02, 0.08))
        yield word + " "


@task(id="summarise-document", retry=Retry(max_attempts=3, min_timeout=0.5))
def summarise_document(payload, ctx):
    sections = int(payload.get("sections", 5))
    for done in range(1, sections + 1):
        ctx.step(f"read-section-{done}", pause, 0.3)
        ctx.metadata.set("progress", round(done / (sections + 1), 3))   # the example page's progress bar
    summary = "".join(ctx.stream("summary", fake_llm(sections)))
    ctx.metadata.set("progress", 1.0)
    return {"summary": summary.strip()}
