"""Scenario 6: timers and token timeouts with a short deadline, and with the scheduler killed meanwhile."""
from __future__ import annotations

import time

from stepwise.runs.benchmarks.lateness import fired_lateness, resume_lateness
from stepwise.runs.chaos.figures import ChaosState, Figure, not_final, runs_settle
from stepwise.runs.chaos.tasks import chaos_timer, chaos_token
from stepwise.runs.statuses import RunStatus

LATENESS_P99_TARGET_MS = 1000


def _waiting_runs(state: ChaosState, count: int, seconds: float) -> list[str]:
    """Trigger ``count`` runs, half waiting for a timer and half for a token that times out."""
    item = {"payload": {"seconds": seconds}}
    timers = [handle.id for handle in chaos_timer.batch_trigger([item] * (count // 2))]
    tokens = [handle.id for handle in chaos_token.batch_trigger([item] * (count - count // 2))]
    return state.triggered(timers + tokens)


def deadlines(state: ChaosState) -> list[Figure]:
    """Time how late deadlines fire under a burst of them, then with the scheduler killed and restarted."""
    n, seconds = state.sizes["deadline_waits"], state.sizes["deadline_seconds"]
    run_ids = _waiting_runs(state, n, seconds)
    statuses = runs_settle(run_ids, timeout=state.timeout)
    lateness, fired = resume_lateness(run_ids), fired_lateness(run_ids)

    restarted_n = max(2, n // 4)
    cluster = state.cluster
    again = _waiting_runs(state, restarted_n, seconds)
    time.sleep(seconds / 4)
    cluster.scheduler_kill()
    time.sleep(seconds)  # every deadline falls due while no scheduler runs
    cluster.scheduler_start()
    again_statuses = runs_settle(again, timeout=state.timeout)
    again_lateness = resume_lateness(again)
    label = f"{n} timers and tokens, {seconds:g}s deadline"
    return [
        # The deadline fires (the scheduler resolves the wait, the run is QUEUED again) ...
        Figure(f"deadlines: fired late p50 ({label})", fired.percentile(50), "ms"),
        Figure(f"deadlines: fired late p99 ({label})", fired.percentile(99), "ms", target=LATENESS_P99_TARGET_MS),
        # ... and the run starts again once a worker is free: all of them at once is a burst of work.
        Figure(f"deadlines: run started again p50 ({label})", lateness.percentile(50), "ms"),
        Figure(f"deadlines: run started again p99 ({label})", lateness.percentile(99), "ms"),
        Figure("deadlines: runs not resumed", n - len(lateness.samples_ms) + not_final(statuses), "runs", bound=0),
        Figure("deadlines: runs not completed",
               n - statuses.get(RunStatus.COMPLETED, 0), "runs", bound=0),
        Figure(f"deadlines, scheduler killed and restarted: runs not resumed ({restarted_n} runs)",
               restarted_n - len(again_lateness.samples_ms) + not_final(again_statuses), "runs", bound=0),
        Figure("deadlines, scheduler killed and restarted: lateness p99 (its downtime included)",
               again_lateness.percentile(99), "ms"),
    ]
