"""Scenarios where a service goes away: PostgreSQL, the broker, and engine database calls failing at random."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from stepwise.runs.chaos.cluster import FAULT_RATE_VARIABLE, wait_until
from stepwise.runs.chaos.figures import (
    ChaosState,
    Figure,
    first_finished_after,
    last_finished,
    last_started,
    outcome_figures,
    runs_settle,
    seconds_after,
    wrong_outputs,
)
from stepwise.runs.chaos.tasks import chaos_steps, chaos_timer
from stepwise.runs.models import Attempt, Step, Waitpoint

INJECTED_FAULT_LOG = "injected store fault"
OUTAGE_LEAD_SECONDS = 3.0
DROPPED_HINT_LOG = "the scheduler will resume it"  # what a worker logs when it gives a hint up


def _steps_burst(state: ChaosState, count: int, steps: int, *, sleep: float | None = None) -> list[str]:
    pause = state.sizes["step_sleep"] if sleep is None else sleep
    items = [{"payload": state.payload(steps=steps, sleep=pause)} for _ in range(count)]
    return state.triggered([handle.id for handle in chaos_steps.batch_trigger(items)])


def database_outage(state: ChaosState) -> list[Figure]:
    """Scenario 3: the database refuses new connections and drops open ones for a while, mid-run."""
    n, steps, outage = state.sizes["db_runs"], state.sizes["db_steps"], state.sizes["db_outage"]
    # The outage starts a few seconds from now, once the runs are under way; waits fall due in
    # its middle, and their resume needs the scheduler's first good pass after it.
    planned = timezone.now() + timedelta(seconds=OUTAGE_LEAD_SECONDS)
    due = (planned + timedelta(seconds=outage / 2)).isoformat()
    timers = state.triggered([chaos_timer.trigger({"until": due}).id for _ in range(3)])
    run_ids = _steps_burst(state, n, steps, sleep=state.sizes["db_sleep"])
    wait_until(lambda: Step.objects.filter(run_id__in=run_ids).count() >= 2, timeout=state.timeout,
               what="the runs to record their first steps")
    time.sleep(max(0.0, (planned - timezone.now()).total_seconds()))
    down = timezone.now()
    state.cluster.proxy.down()
    time.sleep(outage)
    state.cluster.proxy.up()
    back = timezone.now()
    statuses = runs_settle(run_ids + timers, timeout=state.timeout)
    return [
        *outcome_figures(f"database away {outage:g}s", statuses, run_ids + timers, state.session),
        Figure("database back: first run completed after", seconds_after(first_finished_after(run_ids, back), back),
               "s"),
        Figure("database back: waits due during the outage resumed, the last after",
               seconds_after(_last_resumed_of_due(timers, down, back), back), "s"),
        Figure("database back: every run completed after", seconds_after(last_finished(run_ids), back), "s"),
        Figure("database away: hints dropped by workers (instead of kept until it is back)",
               state.cluster.procs.log_count(DROPPED_HINT_LOG), "hints", bound=0),
    ]


def _last_resumed_of_due(run_ids: list[str], start: datetime, end: datetime) -> datetime | None:
    """Return when the last of the runs whose wait fell due between ``start`` and ``end`` resumed (None: none did)."""
    due = Waitpoint.objects.filter(run_id__in=run_ids, resume_at__gte=start, resume_at__lte=end).values("run_id")
    return Attempt.objects.filter(run_id__in=due, number=2).aggregate(at=Max("started_at"))["at"]


def broker_outage(state: ChaosState) -> list[Figure]:
    """Scenario 4: the broker is killed and restarted empty while runs are queued and more are triggered."""
    n, steps, outage = state.sizes["broker_runs"], state.sizes["broker_steps"], state.sizes["broker_outage"]
    before = _steps_burst(state, n, steps)
    wait_until(lambda: Step.objects.filter(run_id__in=before).exists(), timeout=state.timeout,
               what="the runs to start")
    broker = state.cluster.broker
    broker.kill()
    killed = time.monotonic()
    during = _steps_burst(state, n, steps)  # committed in PostgreSQL; their hints have nowhere to go
    time.sleep(max(0.0, outage - (time.monotonic() - killed)))
    broker.start()
    back = timezone.now()
    statuses = runs_settle(before + during, timeout=state.timeout)
    return [
        *outcome_figures(f"broker away {outage:g}s", statuses, before + during, state.session),
        Figure("broker back: every run triggered during the outage started after",
               seconds_after(last_started(during), back), "s", target=10),
        Figure("broker back: every run queued before the outage started after",
               seconds_after(last_started(before), back), "s"),
        Figure("broker back: every run completed after", seconds_after(last_finished(before + during), back), "s"),
    ]


def store_faults(state: ChaosState) -> list[Figure]:
    """Scenario 7: a share of the engine's database calls fail at random (injected in the store)."""
    n, steps, rate = state.sizes["fault_runs"], state.sizes["fault_steps"], state.sizes["fault_rate"]
    cluster = state.cluster
    started = timezone.now()
    run_ids = _steps_burst(state, n, steps)
    statuses = runs_settle(run_ids, timeout=state.timeout)
    injected = cluster.procs.log_count(INJECTED_FAULT_LOG)
    label = f"{rate:.0%} store faults"
    return [
        Figure(f"{label}: faults injected ({FAULT_RATE_VARIABLE}={rate:g}, {n} runs x {steps} steps)", injected,
               "faults"),
        *outcome_figures(label, statuses, run_ids, state.session),
        Figure(f"{label}: runs with a wrong output", wrong_outputs(run_ids, {"total": sum(range(steps))}), "runs",
               bound=0),
        Figure(f"{label}: time to drain (first trigger -> last run final)",
               seconds_after(last_finished(run_ids), started), "s"),
    ]
