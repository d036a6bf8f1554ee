"""Scenarios where worker processes die or freeze: kills under load, a paused worker, a crash loop, a limited queue."""
from __future__ import annotations

import os
import signal
import time

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from stepwise.runs.chaos.cluster import wait_until
from stepwise.runs.chaos.figures import (
    ChaosState,
    Figure,
    executions_of,
    last_finished,
    not_final,
    outcome_figures,
    reexecuted_steps,
    runs_settle,
    seconds_after,
    wrong_outputs,
)
from stepwise.runs.chaos.records import max_overlap
from stepwise.runs.chaos.tasks import CONCURRENCY_LIMIT, LIMITED_QUEUE, chaos_crash_loop, chaos_limited, chaos_steps
from stepwise.runs.models import FINAL_STATUSES, Attempt, Run, RunEvent, Span, Step
from stepwise.runs.statuses import RunStatus
from stepwise.tasks.queues import queue_limit_set


def _expected_total(steps: int) -> dict[str, int]:
    return {"total": sum(range(steps))}


def _kill_while(state: ChaosState, run_ids: list[str], *, window: float) -> int:
    """SIGKILL a random worker every 1-3 s for ``window`` seconds or until the runs are final; return the kills."""
    cluster, kills = state.cluster, 0
    until = time.monotonic() + window
    while time.monotonic() < until:
        time.sleep(state.rng.uniform(1.0, 3.0))
        if not Run.objects.filter(id__in=run_ids).exclude(status__in=FINAL_STATUSES).exists():
            break
        cluster.worker_kill(state.rng)
        kills += 1
    return kills


def killed_workers(state: ChaosState) -> list[Figure]:
    """Scenario 1: SIGKILL random workers every 1-3 s under a load of multi-step runs."""
    n, steps = state.sizes["kill_runs"], state.sizes["kill_steps"]
    started = timezone.now()
    items = [{"payload": state.payload(steps=steps, sleep=state.sizes["kill_sleep"])} for _ in range(n)]
    run_ids = state.triggered([handle.id for handle in chaos_steps.batch_trigger(items)])
    kills = _kill_while(state, run_ids, window=state.sizes["kill_window"])
    statuses = runs_settle(run_ids, timeout=state.timeout)
    return [
        Figure(f"workers SIGKILLed (every 1-3 s, {n} runs x {steps} steps)", kills, "kills"),
        *outcome_figures("killed workers", statuses, run_ids, state.session),
        Figure("killed workers: runs with a wrong output", wrong_outputs(run_ids, _expected_total(steps)), "runs",
               bound=0),
        Figure("killed workers: time to drain (first trigger -> last run final)",
               seconds_after(last_finished(run_ids), started), "s"),
    ]


def rows_of_attempt(run_id: str, number: int) -> dict[str, int]:
    """Count every row the given attempt wrote: steps, events, log lines and spans."""
    events = RunEvent.objects.filter(run_id=run_id, data__attempt=number)
    return {
        "steps": Step.objects.filter(run_id=run_id, attempt_number=number).count(),
        "events": events.count(),
        "log lines": events.filter(type="log").count(),
        "spans": Span.objects.filter(run_id=run_id).filter(
            Q(name__endswith=f" a{number}") | Q(attributes__contains={"stepwise.attempt": number})
        ).count() + Step.objects.filter(run_id=run_id, attempt_number=number).exclude(span_id="").count()
        + Attempt.objects.filter(run_id=run_id, number=number).exclude(span_id="").count(),
    }


def paused_worker(state: ChaosState) -> list[Figure]:
    """Scenario 2: SIGSTOP the process running a run past its lease; after the takeover, SIGCONT it."""
    steps = state.sizes["pause_steps"]
    run_id = state.triggered([chaos_steps.trigger(state.payload(steps=steps, sleep=0.3)).id])[0]
    wait_until(lambda: Step.objects.filter(run_id=run_id).count() >= 2, timeout=state.timeout,
               what="the run to record two steps")
    run = Run.objects.get(id=run_id)
    pid, attempt = int(run.worker_id.split(":")[1]), run.attempt_count
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        wait_until(lambda: Run.objects.filter(id=run_id, attempt_count__gt=attempt).exists(),
                   timeout=state.timeout, what="another worker to take the paused run over")
        takeover = time.monotonic() - stopped
        before = rows_of_attempt(run_id, attempt)
    finally:
        os.kill(pid, signal.SIGCONT)
    # The resumed process finishes its step, tries its writes and flushes its held spans meanwhile.
    time.sleep(settings.STEPWISE_HEARTBEAT_SECONDS + state.cluster.shape.lease_seconds + 1)
    statuses = runs_settle([run_id], timeout=state.timeout)
    after = rows_of_attempt(run_id, attempt)
    return [
        Figure("paused worker: seconds from SIGSTOP to the takeover", takeover, "s"),
        *(Figure(f"paused worker: {table} written by the paused attempt after the takeover",
                 after[table] - before[table], "rows", bound=0) for table in before),
        Figure("paused worker: run not completed with the right output",
               1 - statuses.get(RunStatus.COMPLETED, 0) + wrong_outputs([run_id], _expected_total(steps)),
               "runs", bound=0),
        Figure("paused worker: steps re-executed after they were recorded", reexecuted_steps(state.session, [run_id]),
               "steps", bound=0),
    ]


def crash_loop(state: ChaosState) -> list[Figure]:
    """Scenario 5: a step that kills its worker process on every attempt ends CRASHED after the cap."""
    started = time.monotonic()
    run_id = state.triggered([chaos_crash_loop.trigger({}).id])[0]
    statuses = runs_settle([run_id], timeout=state.timeout)
    elapsed = time.monotonic() - started
    run = Run.objects.get(id=run_id)
    reason = (run.error or {}).get("message", "")
    right_end = run.status == RunStatus.CRASHED and "gave up after" in reason and "stopped renewing" in reason
    return [
        Figure("crash loop: run not ended CRASHED with its reason", 0 if right_end else 1, "runs", bound=0),
        Figure("crash loop: runs stranded (not final at the end)", not_final(statuses), "runs", bound=0),
        Figure(f"crash loop: attempts before CRASHED (cap {run.crash_count} crashes)", run.attempt_count, "attempts"),
        Figure("crash loop: time from trigger to CRASHED", elapsed, "s"),
    ]


def limited_queue(state: ChaosState) -> list[Figure]:
    """Scenario 8: runs of a queue limited to 5 while workers are killed; the most ever running at once."""
    n, steps = state.sizes["limited_runs"], state.sizes["limited_steps"]
    items = [{"payload": state.payload(steps=steps, sleep=0.2)} for _ in range(n)]
    run_ids = state.triggered([handle.id for handle in chaos_limited.batch_trigger(items)])
    queue_limit_set(environment=settings.STEPWISE_ENVIRONMENT, name=LIMITED_QUEUE, limit=CONCURRENCY_LIMIT)
    kills = _kill_while(state, run_ids, window=state.sizes["kill_window"])
    statuses = runs_settle(run_ids, timeout=state.timeout)
    return [
        Figure(f"limited queue: workers SIGKILLed ({n} runs x {steps} steps, limit {CONCURRENCY_LIMIT})", kills,
               "kills"),
        Figure("limited queue: most runs executing a step at once", max_overlap(executions_of(state.session, run_ids)),
               "runs", bound=CONCURRENCY_LIMIT),
        *outcome_figures("limited queue", statuses, run_ids, state.session),
    ]
