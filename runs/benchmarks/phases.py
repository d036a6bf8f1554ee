"""The phases of ``manage.py bench``: what each measures, in which order, and the rows it reports."""
from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from stepwise.runs.benchmarks import measure, seeding
from stepwise.runs.benchmarks.embedded import embedded_start_latencies
from stepwise.runs.benchmarks.floor import commit_floor
from stepwise.runs.benchmarks.lateness import wait_lateness
from stepwise.runs.benchmarks.listing import list_page_timings
from stepwise.runs.benchmarks.measure import BenchUnavailable, Latencies
from stepwise.runs.benchmarks.report import Row
from stepwise.runs.benchmarks.selection import named_select
from stepwise.runs.benchmarks.tasks import NOOP_TASK_ID, OBSERVABILITY_TASK_ID, STEPS_TASK_ID, WAIT_TASK_ID
from stepwise.runs.dispatch import dispatch_run
from stepwise.runs.models import Run

OBSERVABILITY_MISSING = ""
try:
    from stepwise.runs.benchmarks import observability
except ImportError as exc:  # it drives engine internals that may have moved: its two phases read n/a
    observability = None
    OBSERVABILITY_MISSING = str(exc)

# The runs-list phase's mix of statuses (weights). Only final and WAITING runs: the sweeper and the
# workers leave those alone, so a million seeded runs never turn into work.
LIST_STATUSES = {
    "COMPLETED": 75, "FAILED": 8, "WAITING": 10, "CANCELED": 4, "TIMED_OUT": 1, "CRASHED": 1, "EXPIRED": 1,
}
TEN_STEPS = 10


@dataclass
class BenchState:
    """What the phases share: options, where to connect, the runs to delete, figures reused later."""

    opts: dict[str, Any]
    conninfo: str
    log_dir: Path
    note: Callable[[str], None] = print  # progress inside a long phase
    created: list[str] = field(default_factory=list)
    floor_ms: float | None = None


@dataclass(frozen=True)
class Phase:
    """One measured phase: its name (for --only/--skip), its progress line and its measurement."""

    name: str
    title: Callable[[dict[str, Any]], str]
    measure: Callable[[BenchState], list[Row]]
    needs_workers: bool = True
    # Runs after the worker processes are stopped: it needs no worker, and they would only add noise.
    after_workers: bool = False


def _p(latencies: Latencies, q: float) -> float | None:
    return latencies.percentile(q)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def commit_floor_phase(state: BenchState) -> list[Row]:
    """Time single-row INSERT + COMMIT round trips: the floor a checkpoint cannot go under."""
    samples = state.opts["floor_samples"]
    floor = commit_floor(conninfo=state.conninfo, samples=samples)
    state.floor_ms = floor.percentile(50)
    return [
        Row(f"PostgreSQL INSERT + COMMIT p50, fresh connection ({samples})", state.floor_ms, "ms"),
        Row(f"PostgreSQL INSERT + COMMIT p99, fresh connection ({samples})", _p(floor, 99), "ms"),
    ]


def burst_phase(state: BenchState) -> list[Row]:
    """Time bursts of raw Celery tasks and of no-op runs triggered one by one, on the same broker, in turn.

    Each round times one burst of each, the order swapped from one round to the next; the figures
    are the rounds' medians and the ratio is the median of the rounds' own ratios. On a machine
    whose neighbours come and go, one pair of bursts read anywhere from 37 to 79 % ours / raw from
    one bench to the next: a slow moment falls on one side only. Pairs taken seconds apart share it.
    """
    n, timeout, rounds = state.opts["runs"], state.opts["timeout"], state.opts["burst_rounds"]
    bursts = {
        "raw": lambda: measure.raw_celery_throughput(n, timeout=timeout),
        "ours": lambda: measure.runs_throughput(n, state.created, timeout=timeout),
    }
    timed: dict[str, list[measure.Throughput]] = {"raw": [], "ours": []}
    samples: dict[str, list[float]] = {"raw": [], "ours": []}
    for index in range(rounds):
        for side in ("raw", "ours") if index % 2 == 0 else ("ours", "raw"):
            throughput, latencies = bursts[side]()
            timed[side].append(throughput)
            samples[side] += latencies.samples_ms
    raws, ours = timed["raw"], timed["ours"]
    ratios = [100 * a.per_second / b.per_second for a, b in zip(ours, raws, strict=True)]
    raw_start, start = Latencies(tuple(samples["raw"])), Latencies(tuple(samples["ours"]))
    of = f"median of {rounds}" if rounds > 1 else "one burst"
    pooled = f", {rounds} bursts pooled" if rounds > 1 else ""
    rows = [
        Row(f"no-op runs, triggered -> completed ({n}), {of}", _median(ours, "per_second"), "runs/s"),
        Row(f"raw Celery no-op tasks, sent -> done ({n}), {of}", _median(raws, "per_second"), "tasks/s"),
        Row(f"ours / raw, {of} pairs" if rounds > 1 else "ours / raw", statistics.median(ratios), "%"),
    ]
    if rounds > 1:
        rows += [Row(f"ours / raw, lowest of {rounds} pairs", min(ratios), "%"),
                 Row(f"ours / raw, highest of {rounds} pairs", max(ratios), "%")]
    return rows + [
        Row("trigger() calls from one thread", _median(ours, "enqueue_per_second"), "runs/s"),
        Row("apply_async() calls from one thread", _median(raws, "enqueue_per_second"), "tasks/s"),
        Row(f"trigger-to-start latency p50, burst of {n}{pooled}", _p(start, 50), "ms"),
        Row(f"trigger-to-start latency p99, burst of {n}{pooled}", _p(start, 99), "ms"),
        Row(f"raw Celery send-to-start latency p50, burst of {n}{pooled}", _p(raw_start, 50), "ms"),
        Row(f"raw Celery send-to-start latency p99, burst of {n}{pooled}", _p(raw_start, 99), "ms"),
        Row("trigger-to-start p50, ours / raw", _ratio(_p(start, 50), _p(raw_start, 50)), "x"),
    ]


def _median(throughputs: list[measure.Throughput], figure: str) -> float:
    return statistics.median(getattr(t, figure) for t in throughputs)


def batch_phase(state: BenchState) -> list[Row]:
    """Time no-op runs created with batch_trigger."""
    n = state.opts["runs"]
    batch = measure.batch_throughput(n, state.created, timeout=state.opts["timeout"])
    return [Row(f"no-op runs, batch_trigger() -> completed ({n})", batch.per_second, "runs/s")]


def idle_phase(state: BenchState) -> list[Row]:
    """Time trigger-to-start of runs triggered one at a time on idle workers."""
    n = state.opts["latency_runs"]
    idle = measure.idle_latencies(n, state.created, timeout=state.opts["timeout"])
    return [
        Row(f"trigger-to-start latency p50, idle ({n} runs)", _p(idle, 50), "ms"),
        Row(f"trigger-to-start latency p99, idle ({n} runs)", _p(idle, 99), "ms"),
    ]


def checkpoint_phase(state: BenchState) -> list[Row]:
    """Time the per-step cost of a checkpointed task against the same function undecorated.

    The overhead is set against a commit floor measured between the runs (a share of the floor
    samples before each): the database's commit latency drifts by a tenth and more over a bench,
    and a floor timed minutes earlier would carry that drift into the ratio.
    """
    opts = state.opts
    share = max(1, opts["floor_samples"] // opts["step_runs"])
    floor: list[float] = []

    def floor_share() -> None:
        floor.extend(commit_floor(conninfo=state.conninfo, samples=share).samples_ms)

    cost = measure.step_cost(opts["steps"], opts["step_runs"], state.created, timeout=opts["timeout"],
                             before_each=floor_share)
    beside = Latencies(tuple(floor)).percentile(50)
    return [
        Row(f"{cost.steps}-step task, checkpointed in a worker", cost.durable_ms_per_step, "ms/step"),
        Row(f"{cost.steps}-step function, undecorated", cost.plain_ms_per_step, "ms/step"),
        Row("checkpoint overhead", cost.overhead_ms_per_step, "ms/step"),
        Row(f"PostgreSQL INSERT + COMMIT p50, between these runs ({len(floor)})", beside, "ms"),
        Row("checkpoint overhead / commit floor p50", _ratio(cost.overhead_ms_per_step, beside), "x"),
    ]


def ten_step_phase(state: BenchState) -> list[Row]:
    """Time a burst of 10-step runs through the workers, first trigger to last completion."""
    n = state.opts["ten_step_runs"]
    runs, start = measure.step_runs_throughput(n, TEN_STEPS, state.created, timeout=state.opts["timeout"])
    return [
        Row(f"{TEN_STEPS}-step runs, triggered -> completed ({n})", runs.per_second, "runs/s"),
        Row(f"{TEN_STEPS}-step runs, trigger-to-start latency p50 ({n})", _p(start, 50), "ms"),
    ]


def _observability() -> Any:
    if observability is None:
        raise BenchUnavailable(f"stepwise.runs.benchmarks.observability cannot be imported: {OBSERVABILITY_MISSING}")
    return observability


def tracing_phase(state: BenchState) -> list[Row]:
    """Time traced and untraced attempts of the same steps in this process."""
    try:
        # Many short rounds, in turn: a step's tracing costs a tenth of a millisecond, less than this
        # machine's drift over a few seconds, which three rounds could not tell apart.
        tracing = _observability().measure_tracing_overhead(
            steps=state.opts["steps"], rounds=state.opts["tracing_rounds"]
        )
    finally:
        Run.objects.filter(task_id=OBSERVABILITY_TASK_ID).delete()
    rows = [Row(f"{tracing['steps']}-step attempt in-process, untraced", tracing["untraced_ms_per_step"], "ms/step")]
    if "statement_ms_per_step" in tracing:  # an older tree's bench does not split it
        python_ms = tracing["python_ms_per_step"]
        samples = state.opts["floor_samples"]
        after_work = commit_floor(conninfo=state.conninfo, samples=samples, work_ms=python_ms).percentile(50)
        rows += [
            Row("... in statements (claim, steps, outcome)", tracing["statement_ms_per_step"], "ms/step"),
            Row("... in Python around them", python_ms, "ms/step"),
            Row("statements per step / commit floor p50",
                _ratio(tracing["statement_ms_per_step"], state.floor_ms), "x"),
            Row(f"INSERT + COMMIT p50 after {python_ms:.2f} ms of client work ({samples})", after_work, "ms"),
        ]
    return [
        *rows,
        Row(f"{tracing['steps']}-step attempt in-process, traced", tracing["traced_ms_per_step"], "ms/step"),
        Row("traced / untraced", tracing["ratio"], "x"),
    ]


def events_phase(state: BenchState) -> list[Row]:
    """Time run events from a worker's commit to a websocket client, and to a server-sent events client."""
    try:
        latency = _observability().measure_event_latency(steps=state.opts["steps"], dispatch=dispatch_run)
        sse = _observability().measure_sse_latency(steps=state.opts["steps"], dispatch=dispatch_run)
    finally:
        Run.objects.filter(task_id=OBSERVABILITY_TASK_ID).delete()
    return [
        Row(f"event latency, worker commit -> websocket p50 ({latency['events']})", latency["p50_ms"], "ms"),
        Row(f"event latency, worker commit -> websocket p99 ({latency['events']})", latency["p99_ms"], "ms"),
        Row(f"event latency, worker commit -> SSE p50 ({sse['events']})", sse["p50_ms"], "ms"),
        Row(f"event latency, worker commit -> SSE p99 ({sse['events']})", sse["p99_ms"], "ms"),
    ]


def waits_phase(state: BenchState) -> list[Row]:
    """Time how late waiting runs resume while a burst of no-op runs is queued as they fall due."""
    opts = state.opts
    result = wait_lateness(
        waiters=opts["wait_runs"], burst=opts["wait_burst"], lead=opts["wait_lead"],
        created=state.created, timeout=opts["timeout"],
    )
    label = f"{opts['wait_runs']} waits, {result.burst} no-op runs queued"
    return [
        Row(f"wait lateness p50 ({label})", _p(result.lateness, 50), "ms"),
        Row(f"wait lateness p99 ({label})", _p(result.lateness, 99), "ms"),
        Row("no-op runs of that burst not started yet at the deadline", result.queued_at_deadline, "runs"),
    ]


def waiting_table_phase(state: BenchState) -> list[Row]:
    """Time no-op runs with and without many WAITING runs (seeded with COPY) in the runs table, in turn.

    One round times a batch on the table without them, seeds them, times a batch beside them and
    deletes them; the medians of ``waiting_rounds`` rounds are reported. A single round moved
    between 71 % and 104 % from one bench to the next on the 2-CPU VM, whose speed changes faster
    than a seeding takes. Both batches of a round follow an ANALYZE of the run tables: the seeded
    one after the seeding's, the other after one of its own. Otherwise the first batch ran on
    whatever statistics the bench found (those of an emptied table after another bench's clean-up:
    its runs looked up by sequential scans until the scheduler analyzed the table), and only the
    other paid for every connection planning its statements again: the ratio read 89 % one time
    and 115 % another.
    """
    opts = state.opts
    n, count, rounds, timeout = opts["dispatch_runs"], opts["waiting_runs"], opts["waiting_rounds"], opts["timeout"]
    noop = seeding.seed_task_ensure(NOOP_TASK_ID)
    without, beside, ratios = [], [], []
    for _ in range(rounds):
        seeding.runs_analyze(conninfo=state.conninfo)  # as _seeded does before the batch beside them
        # Batch-triggered, so the workers' claims set the pace, not this process's triggers.
        without.append(measure.batch_throughput(n, state.created, timeout=timeout).per_second)
        plan = seeding.SeedPlan(
            count=count, tasks=(noop,), statuses={"WAITING": 1}, spread=timedelta(hours=1), marker=_marker("waiting")
        )
        with _seeded(plan, state) as seeded:
            beside.append(measure.batch_throughput(n, state.created, timeout=timeout).per_second)
        ratios.append(100 * beside[-1] / without[-1])
    return [
        Row(f"no-op runs, batch_trigger() -> completed ({n}), no WAITING runs, median of {rounds}",
            statistics.median(without), "runs/s"),
        Row(f"no-op runs, batch_trigger() -> completed ({n}), {count:,} WAITING runs, median of {rounds}",
            statistics.median(beside), "runs/s"),
        Row(f"with / without {count:,} WAITING runs, median of {rounds} rounds", statistics.median(ratios), "%"),
        Row("... lowest round", min(ratios), "%"),
        Row("... highest round", max(ratios), "%"),
        *seeded.rows(f"{count:,} WAITING runs (last round)"),
    ]


def runs_list_phase(state: BenchState) -> list[Row]:
    """Time the console's runs-list query, first page, over many seeded runs."""
    opts = state.opts
    count, repeats = opts["list_runs"], opts["list_repeats"]
    tasks = (
        seeding.seed_task_ensure(NOOP_TASK_ID),
        seeding.seed_task_ensure(STEPS_TASK_ID),
        seeding.seed_task_ensure(WAIT_TASK_ID),
    )
    plan = seeding.SeedPlan(
        count=count, tasks=tasks, statuses=LIST_STATUSES, spread=timedelta(days=30), marker=_marker("list"),
        tagged=True,
    )
    with _seeded(plan, state) as seeded:
        timings = list_page_timings(repeats=repeats, tag=seeding.LISTED_TAG)
    return [
        *(Row(f"runs list, first page, {name}, p95 of {repeats} ({count:,} runs)", _p(samples, 95), "ms")
          for name, samples in timings.items()),
        *seeded.rows(f"{count:,} runs"),
    ]


def prune_phase(state: BenchState) -> list[Row]:
    """Time retention pruning: finished runs created over 60 days, deleted past a 30-day retention."""
    from django.test.utils import override_settings
    from django.utils import timezone

    from stepwise.runs.retention import prune_environment

    count = state.opts["prune_runs"]
    task = seeding.seed_task_ensure(NOOP_TASK_ID)
    plan = seeding.SeedPlan(count=count, tasks=(task,), statuses=LIST_STATUSES, spread=timedelta(days=60),
                            marker=_marker("prune"), details=True)
    with _seeded(plan, state) as seeded, override_settings(STEPWISE_RETENTION={"*": {"runs_days": 30}}):
        started = time.perf_counter()
        report = prune_environment(task.environment_id, now=timezone.now(), batch=500)
        seconds = time.perf_counter() - started
    details = f"{seeding.DETAIL_STEPS} steps and {seeding.DETAIL_EVENTS} events"
    return [
        Row(f"prune finished runs past 30 days ({report.runs:,} of {count:,}, each started one with its attempt, "
            f"{details}), batches of 500", seconds, "s"),
        Row("... runs deleted per second", report.runs / seconds if seconds else None, "runs/s"),
        *seeded.rows(f"{count:,} runs"),
    ]


def embedded_phase(state: BenchState) -> list[Row]:
    """Time trigger-to-start of runs triggered by ``manage.py trigger`` while ``manage.py up`` serves."""
    n = state.opts["embedded_triggers"]
    starts = embedded_start_latencies(triggers=n, timeout=state.opts["timeout"], log_dir=state.log_dir)
    return [
        Row(f"embedded: CLI trigger -> run started p50 ({n})", _p(starts, 50), "ms"),
        Row(f"embedded: CLI trigger -> run started max ({n})", max(starts.samples_ms), "ms"),
    ]


def _marker(kind: str) -> str:
    return f"{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@dataclass
class Seeded:
    """How long seeding, deleting the seeded runs and vacuuming and reindexing after them took."""

    seed: seeding.SeedTiming | None = None
    details: seeding.SeedTiming | None = None
    delete: seeding.SeedTiming | None = None
    vacuum_seconds: float | None = None
    reindex_seconds: float | None = None

    def rows(self, what: str) -> list[Row]:
        """Return the seeding and clean-up figures of ``what`` (e.g. "1,000,000 runs")."""
        return [
            Row(f"seed {what} with COPY{_fk_note(self.seed)}", self.seed and self.seed.seconds, "s"),
            *([Row(f"... of which their attempts, {seeding.DETAIL_STEPS} steps and {seeding.DETAIL_EVENTS} events"
                   f"{_fk_note(self.details)}", self.details.seconds, "s")] if self.details else []),
            Row(f"delete {what} by marker{_fk_note(self.delete)}", self.delete and self.delete.seconds, "s"),
            Row(f"VACUUM ANALYZE the seeded tables after deleting {what}", self.vacuum_seconds, "s"),
            Row(f"REINDEX the seeded tables after deleting {what}", self.reindex_seconds, "s"),
        ]


def _fk_note(timing: seeding.SeedTiming | None) -> str:
    return " (FK triggers off)" if timing is not None and not timing.fk_checked else ""


@contextmanager
def _seeded(plan: seeding.SeedPlan, state: BenchState) -> Iterator[Seeded]:
    """Seed a plan (then refresh the planner's statistics); delete its runs afterwards, even after a failure,
    and vacuum and reindex the tables they filled."""
    result = Seeded()
    try:
        result.seed = seeding.runs_seed(plan, conninfo=state.conninfo)
        state.note(f"seeded {plan.count:,} runs in {result.seed.seconds:.1f}s (marker {plan.marker})")
        if plan.details:
            result.details = seeding.run_details_seed(plan, conninfo=state.conninfo)
            result.seed = seeding.SeedTiming(result.seed.seconds + result.details.seconds,
                                             result.seed.fk_checked and result.details.fk_checked)
            state.note(f"seeded their attempts, steps and events in {result.details.seconds:.1f}s")
        seeding.runs_analyze(conninfo=state.conninfo)
        yield result
    finally:
        deleted, result.delete = seeding.seeded_delete(conninfo=state.conninfo, marker=plan.marker,
                                                       details=plan.details)
        result.vacuum_seconds = seeding.runs_vacuum(conninfo=state.conninfo)
        result.reindex_seconds = seeding.runs_reindex(conninfo=state.conninfo)
        reindexed = (f"reindexed in {result.reindex_seconds:.1f}s" if result.reindex_seconds is not None else
                     "not reindexed (only the tables' owner may: their indexes keep the seeded runs' pages)")
        state.note(f"deleted {deleted:,} seeded runs in {result.delete.seconds:.1f}s, "
                   f"vacuumed in {result.vacuum_seconds:.1f}s, {reindexed}")


PHASES: tuple[Phase, ...] = (
    Phase("floor", lambda o: f"PostgreSQL commit floor: {o['floor_samples']} INSERT + COMMIT",
          commit_floor_phase, needs_workers=False),
    Phase("burst", lambda o: f"raw Celery and no-op runs: {o['burst_rounds']} pairs of bursts of {o['runs']}",
          burst_phase),
    Phase("batch", lambda o: f"{o['runs']} no-op runs, batch-triggered", batch_phase),
    Phase("idle", lambda o: f"trigger-to-start latency of {o['latency_runs']} runs on idle workers", idle_phase),
    Phase("checkpoint", lambda o: f"checkpoint cost: {o['step_runs']} x {o['steps']}-step runs", checkpoint_phase),
    Phase("ten-step", lambda o: f"{o['ten_step_runs']} x {TEN_STEPS}-step runs", ten_step_phase),
    Phase("tracing", lambda o: "tracing overhead: traced and untraced attempts in this process",
          tracing_phase, needs_workers=False),
    Phase("events", lambda o: "event latency from a worker to a websocket and an SSE client", events_phase),
    Phase("waits", lambda o: f"wait lateness: {o['wait_runs']} waits, {o['wait_burst']} no-op runs queued",
          waits_phase),
    Phase("waiting-table", lambda o: f"{o['waiting_rounds']} rounds of {o['dispatch_runs']} no-op runs "
                                     f"batch-triggered, then again beside {o['waiting_runs']:,} WAITING runs",
          waiting_table_phase),
    Phase("list", lambda o: f"runs list over {o['list_runs']:,} seeded runs", runs_list_phase,
          needs_workers=False, after_workers=True),
    Phase("prune", lambda o: f"retention: prune {o['prune_runs']:,} seeded runs past 30 days", prune_phase,
          needs_workers=False, after_workers=True),
    Phase("embedded", lambda o: f"embedded mode: {o['embedded_triggers']} CLI triggers under manage.py up",
          embedded_phase, needs_workers=False, after_workers=True),
)
PHASE_NAMES = tuple(phase.name for phase in PHASES)


def phases_select(only: list[str], skip: list[str]) -> list[Phase]:
    """Return the phases to run, in their order: ``only`` those (all when empty), minus ``skip``."""
    return named_select(PHASES, only, skip, kind="phase")
