"""The measured phases of the benchmark; each returns plain figures, none prints."""
from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import redis
from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from stepwise.runs.benchmarks.tasks import RAW_TASK_NAME, bench_noop, bench_steps, bench_work, step_chain
from stepwise.runs.celery_app import celery_app
from stepwise.runs.models import Attempt, Run, RunStatus

try:
    from stepwise.runs.models import FINAL_STATUSES
except ImportError:  # an older tree kept it beside the state machine only
    FINAL_STATUSES = frozenset(
        s for s in RunStatus if s in ("COMPLETED", "FAILED", "CANCELED", "TIMED_OUT", "CRASHED", "EXPIRED")
    )

# How often a phase looks whether its runs finished. Figures come from the runs' own timestamps
# (finished_at, the attempt's started_at), not from when the poll saw them, so polling more
# often would only load the database and the cores the workers share, and lower the figures.
POLL_SECONDS = 0.1
# How many of the pending runs one look asks about (runs_wait).
POLL_CHUNK = 200


class BenchFailed(RuntimeError):
    """A benchmark phase did not finish, or a run ended other than COMPLETED."""


class BenchUnavailable(RuntimeError):
    """This tree lacks what a phase measures: its figures read n/a."""


@dataclass(frozen=True)
class Throughput:
    """How many units went from enqueue to done, and how long that took."""

    count: int
    enqueue_seconds: float
    total_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.total_seconds

    @property
    def enqueue_per_second(self) -> float:
        return self.count / self.enqueue_seconds


@dataclass(frozen=True)
class Latencies:
    """Trigger-to-start latencies of a set of runs, in milliseconds."""

    samples_ms: tuple[float, ...]

    def percentile(self, q: float) -> float | None:
        """Return the nearest-rank percentile ``q`` (0-100) of the samples, None without any."""
        if not self.samples_ms:
            return None
        ordered = sorted(self.samples_ms)
        rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
        return ordered[rank - 1]


@dataclass(frozen=True)
class StepCost:
    """Milliseconds per step of the same chain, checkpointed in a worker and called plainly."""

    steps: int
    durable_ms_per_step: float
    plain_ms_per_step: float

    @property
    def overhead_ms_per_step(self) -> float:
        return self.durable_ms_per_step - self.plain_ms_per_step


def runs_wait(run_ids: list[str], *, timeout: float) -> None:
    """Poll until every run is final; raise BenchFailed on a timeout or a run that did not complete.

    Each look asks about the oldest ``POLL_CHUNK`` runs still pending, and about the next ones
    only once those are all final. Runs start roughly in the order they were triggered, so a look
    costs the database a few hundred ids, not the whole burst's: asking about 3,000 ids ten times
    a second took a quarter of one of the two cores the workers were being timed on.
    """
    deadline = time.monotonic() + timeout
    pending = list(run_ids)
    while pending:
        chunk = pending[:POLL_CHUNK]
        rows = dict(Run.objects.filter(id__in=chunk, status__in=FINAL_STATUSES).values_list("id", "status"))
        failed = [(run_id, status) for run_id, status in rows.items() if status != RunStatus.COMPLETED]
        if failed:
            run_id, status = failed[0]
            error = Run.objects.filter(id=run_id).values_list("error", flat=True).first() or {}
            raise BenchFailed(
                f"run {run_id} ended {status}: {error.get('type')}: {error.get('message')} "
                f"(see `manage.py runs show {run_id} --events`)"
            )
        pending = [run_id for run_id in chunk if run_id not in rows] + pending[POLL_CHUNK:]
        if len(rows) == len(chunk):
            continue  # the whole chunk is final: look at the next one at once
        if time.monotonic() > deadline:
            raise BenchFailed(f"{len(pending)} of {len(run_ids)} runs did not finish within {timeout:g}s")
        time.sleep(POLL_SECONDS)


def start_latencies(run_ids: Iterable[str]) -> Latencies:
    """Return, per run, the time from its creation to the start of its first attempt."""
    rows = Attempt.objects.filter(run_id__in=list(run_ids), number=1).values_list("run__created_at", "started_at")
    return Latencies(tuple((started - created).total_seconds() * 1000 for created, started in rows))


def noop_runs_trigger(count: int, created: list[str]) -> list[str]:
    """Trigger ``count`` no-op runs one by one, as application code would; note each id in ``created``."""
    run_ids = []
    for _ in range(count):
        run_ids.append(bench_noop.trigger({}).id)
        created.append(run_ids[-1])
    return run_ids


def noop_runs_batch_trigger(count: int, created: list[str]) -> list[str]:
    """Create no-op runs with batch_trigger, 1,000 per transaction; note each id in ``created``."""
    run_ids: list[str] = []
    for start in range(0, count, 1000):
        items = [{"payload": {}} for _ in range(min(1000, count - start))]
        run_ids += [handle.id for handle in bench_noop.batch_trigger(items)]
        created += run_ids[start:]
    return run_ids


def runs_throughput(count: int, created: list[str], *, timeout: float) -> tuple[Throughput, Latencies]:
    """Trigger a burst of no-op runs and time them until the last one completed."""
    return burst_throughput(lambda: noop_runs_trigger(count, created), count, timeout=timeout)


def step_runs_throughput(count: int, steps: int, created: list[str], *, timeout: float) -> tuple[Throughput, Latencies]:
    """Trigger a burst of ``steps``-step runs one by one and time them until the last one completed."""
    def trigger() -> list[str]:
        run_ids = [bench_steps.trigger({"steps": steps}).id for _ in range(count)]
        created.extend(run_ids)
        return run_ids

    return burst_throughput(trigger, count, timeout=timeout)


def burst_throughput(
    trigger: Callable[[], list[str]], count: int, *, timeout: float
) -> tuple[Throughput, Latencies]:
    """Time runs from the first trigger until the last one completed, with their start latencies."""
    started_at: datetime = timezone.now()
    started = time.monotonic()
    run_ids = trigger()
    enqueue_seconds = time.monotonic() - started
    runs_wait(run_ids, timeout=timeout)
    last: datetime = Run.objects.filter(id__in=run_ids).aggregate(last=Max("finished_at"))["last"]
    total = (last - started_at).total_seconds()
    return Throughput(count, enqueue_seconds, total), start_latencies(run_ids)


def batch_throughput(count: int, created: list[str], *, timeout: float) -> Throughput:
    """Create no-op runs with batch_trigger (1,000 per transaction), so workers, not triggers, set the pace."""
    started_at: datetime = timezone.now()
    started = time.monotonic()
    run_ids = noop_runs_batch_trigger(count, created)
    enqueue_seconds = time.monotonic() - started
    runs_wait(run_ids, timeout=timeout)
    last: datetime = Run.objects.filter(id__in=run_ids).aggregate(last=Max("finished_at"))["last"]
    return Throughput(count, enqueue_seconds, (last - started_at).total_seconds())


def idle_latencies(count: int, created: list[str], *, timeout: float) -> Latencies:
    """Trigger runs one at a time on idle workers, each after the previous one completed."""
    run_ids = []
    for _ in range(count):
        run_ids.extend(noop_runs_trigger(1, created))
        runs_wait(run_ids[-1:], timeout=timeout)
    return start_latencies(run_ids)


def raw_celery_throughput(count: int, *, timeout: float) -> tuple[Throughput, Latencies]:
    """Send ``count`` plain Celery no-op tasks; time them until the last one ran, and each send-to-start."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    app = celery_app()
    done_key = f"stepwise-bench:raw:{uuid.uuid4().hex}"
    try:
        started_at = time.time()
        started = time.monotonic()
        for _ in range(count):
            app.send_task(RAW_TASK_NAME, args=[done_key, time.time()])  # routed as the hints are
        enqueue_seconds = time.monotonic() - started
        deadline = time.monotonic() + timeout
        while client.llen(done_key) < count:
            if time.monotonic() > deadline:
                raise BenchFailed(f"{count - client.llen(done_key)} of {count} Celery tasks did not run "
                                  f"within {timeout:g}s")
            time.sleep(POLL_SECONDS)
        stamps = [_raw_stamp(record) for record in client.lrange(done_key, 0, -1)]
        last = max(ran for ran, _ in stamps)
        latencies = Latencies(tuple((ran - sent) * 1000 for ran, sent in stamps if sent is not None))
        return Throughput(count, enqueue_seconds, last - started_at), latencies
    finally:
        client.delete(done_key)
        client.close()


def _raw_stamp(record: bytes) -> tuple[float, float | None]:
    """Read a raw task's record: when it ran and, if it was told, when it was sent."""
    ran, _, sent = record.decode().partition(" ")
    return float(ran), (float(sent) if sent and sent != "None" else None)


def step_cost(
    steps: int, runs: int, created: list[str], *, timeout: float, before_each: Callable[[], None] | None = None
) -> StepCost:
    """Time a chain of trivial steps as a durable run (one at a time) and as a plain call.

    ``before_each`` is called before each run (the caller measures something beside them).
    """
    run_ids = []
    for _ in range(runs):
        if before_each is not None:
            before_each()
        run_ids.append(bench_steps.trigger({"steps": steps}).id)
        created.append(run_ids[-1])
        runs_wait(run_ids[-1:], timeout=timeout)
    # executed_seconds spans the task function, every checkpoint write included, in the worker.
    durable = statistics.median(Run.objects.filter(id__in=run_ids).values_list("executed_seconds", flat=True))
    repeats = max(1, 200_000 // steps)
    started = time.perf_counter()
    for _ in range(repeats):
        step_chain(steps, bench_work)
    plain = (time.perf_counter() - started) / repeats
    return StepCost(steps, durable / steps * 1000, plain / steps * 1000)


def runs_unfinished() -> int:
    """Return how many runs in the database have not finished (before the bench made any)."""
    return Run.objects.exclude(status__in=FINAL_STATUSES).count()


def runs_delete(run_ids: list[str]) -> int:
    """Delete the benchmark's runs with their attempts, steps and events."""
    deleted = 0
    for start in range(0, len(run_ids), 500):
        deleted += Run.objects.filter(id__in=run_ids[start:start + 500]).delete()[1].get("stepwise_runs.Run", 0)
    return deleted
