"""Tasks the chaos scenarios run; every step body notes in the records that it really ran.

Workers load this module through STEPWISE_TASK_MODULES; the chaos command imports it too.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from datetime import datetime
from typing import Any

from opentelemetry import trace

from stepwise.runs.chaos.records import execution_note, now
from stepwise.tasks.sdk import Retry, task, wait

STEPS_TASK_ID = "chaos-steps"
CRASH_LOOP_TASK_ID = "chaos-crash-loop"
TIMER_TASK_ID = "chaos-timer"
TOKEN_TASK_ID = "chaos-token"
LIMITED_TASK_ID = "chaos-limited"
LIMITED_QUEUE = "chaos-limited"
CONCURRENCY_LIMIT = 5

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer(__name__)
# A run's attempts are bounded by the crash cap, not by the task's retry policy: a step that
# fails is a finding, not something the scenarios expect.
ONE_ATTEMPT = Retry(max_attempts=1)


def noted_steps(payload: dict[str, Any], ctx: Any) -> int:
    """Run ``payload["steps"]`` steps, each sleeping ``payload["sleep"]`` s, logging a line and opening a span."""
    session, pause = payload["session"], float(payload.get("sleep", 0.05))

    def body(index: int) -> int:
        began = now()
        with _tracer.start_as_current_span(f"chaos work a{ctx.attempt}"):
            ctx.logger.info(f"step {index} of attempt {ctx.attempt}")
            time.sleep(pause)
        execution_note(session, run_id=ctx.run_id, key=f"s{index}", attempt=ctx.attempt, began=began, ended=now())
        return index

    return sum(ctx.step(f"s{i}", body, i) for i in range(int(payload["steps"])))


@task(id=STEPS_TASK_ID, retry=ONE_ATTEMPT)
def chaos_steps(payload: dict[str, Any], ctx: Any) -> dict[str, int]:
    """Run checkpointed steps that sleep a little; the output is the sum of their indexes."""
    return {"total": noted_steps(payload, ctx)}


@task(id=LIMITED_TASK_ID, retry=ONE_ATTEMPT, queue=LIMITED_QUEUE, concurrency_limit=CONCURRENCY_LIMIT)
def chaos_limited(payload: dict[str, Any], ctx: Any) -> dict[str, int]:
    """The same steps in a queue limited to five runs at a time."""
    return {"total": noted_steps(payload, ctx)}


@task(id=CRASH_LOOP_TASK_ID, retry=ONE_ATTEMPT)
def chaos_crash_loop(payload: dict[str, Any], ctx: Any) -> None:
    """Record one step, then kill this worker process in the next one, on every attempt."""
    ctx.step("before", lambda: "recorded")

    def crash() -> None:
        logger.warning("chaos: step 'crash' kills its worker process (attempt %s)", ctx.attempt)
        os.kill(os.getpid(), signal.SIGKILL)

    ctx.step("crash", crash)


@task(id=TIMER_TASK_ID, retry=ONE_ATTEMPT)
def chaos_timer(payload: dict[str, Any], ctx: Any) -> None:
    """Wait ``payload["seconds"]`` seconds, or until ``payload["until"]`` (ISO date), without holding a worker."""
    if "until" in payload:
        wait.until(datetime.fromisoformat(payload["until"]))
    else:
        wait.for_(seconds=float(payload["seconds"]))


@task(id=TOKEN_TASK_ID, retry=ONE_ATTEMPT)
def chaos_token(payload: dict[str, Any], ctx: Any) -> None:
    """Wait for a token nobody completes; its timeout of ``payload["seconds"]`` seconds resumes the run."""
    wait.for_token(timeout=float(payload["seconds"]), description="chaos: left to time out")
