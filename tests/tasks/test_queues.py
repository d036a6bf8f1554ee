"""Concurrency limits, concurrency keys, pause/resume and priority on real worker processes."""
from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict

import pytest

from stepwise.runs.models import Attempt, Run
from stepwise.runs.statuses import RunStatus
from stepwise.runs.triggers import TriggerOptions, run_batch_trigger, run_trigger
from stepwise.tasks.models import Queue
from stepwise.tasks.queues import (
    InvalidQueueLimit,
    queue_limit_set,
    queue_pause,
    queue_rate_set,
    queue_resume,
    rate_parse,
    rate_text,
)
from stepwise.tasks.services import environments_ensure
from tests.engine_tasks import _redis, intervals_key
from tests.waiting import wait_for


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Return the largest number of intervals open at the same instant."""
    points = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda p: (p[0], p[1]))
    best = current = 0
    for _, delta in points:
        current += delta
        best = max(best, current)
    return best


def redis_intervals(label: str) -> dict[str, list[tuple[float, float]]]:
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for raw in _redis.lrange(intervals_key(label), 0, -1):
        key, start, end = raw.decode().split("|")
        by_key[key].append((float(start), float(end)))
    return by_key


def attempt_intervals(queue: str) -> dict[str, list[tuple[float, float]]]:
    """The database's own view: each attempt starts after a slot was counted free, inside the claim.

    An attempt still executing lasts until now (and beyond), so it overlaps everything running now.
    """
    by_key: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, started, finished in Attempt.objects.filter(run__queue=queue).values_list(
        "run__concurrency_key", "started_at", "finished_at"
    ):
        by_key[key].append((started.timestamp(), finished.timestamp() if finished else float("inf")))
    return by_key


def overlap_report(queue: str, label: str) -> str:
    """Say what a failed limit assertion needs: both views' overlaps, and every run that took more than one attempt."""
    repeated = [
        (run_id, list(Attempt.objects.filter(run_id=run_id).order_by("number").values_list(
            "number", "status", "worker_id", "started_at", "finished_at")))
        for run_id in Run.objects.filter(queue=queue, attempt_count__gt=1).values_list("id", flat=True)
    ]
    return (f"overlap in task bodies (Redis) {max_overlap([i for v in redis_intervals(label).values() for i in v])}, "
            f"in attempt rows {max_overlap([i for v in attempt_intervals(queue).values() for i in v])}; "
            f"runs with more than one attempt: {repeated or 'none'}")


class ExecutingSampler:
    """Polls the runs table and remembers the most EXECUTING runs ever seen per concurrency key."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.max_by_key: dict[str, int] = defaultdict(int)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        from django.db import connection

        try:
            while not self._stop.is_set():
                counts: dict[str, int] = defaultdict(int)
                for key in Run.objects.filter(queue=self.queue, status=RunStatus.EXECUTING).values_list(
                    "concurrency_key", flat=True
                ):
                    counts[key] += 1
                for key, n in counts.items():
                    self.max_by_key[key] = max(self.max_by_key[key], n)
                time.sleep(0.01)
        finally:
            connection.close()

    def __enter__(self) -> ExecutingSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def start_workers(processes, count: int = 4) -> None:
    # Prefork: Celery's thread pool on Redis fetches a new message only every few seconds.
    for _ in range(count):
        processes.worker(concurrency=2, pool="prefork")
    processes.scheduler(interval=0.2)


def all_completed(queue: str, total: int):
    return Run.objects.filter(queue=queue, status=RunStatus.COMPLETED).count() == total


@pytest.mark.xdist_group("heavy")
@pytest.mark.timeout(900)
def test_200_runs_on_a_queue_limited_to_5_never_exceed_5_executing(transactional_db, processes):
    environments_ensure()
    label, queue = uuid.uuid4().hex, f"limited-{uuid.uuid4().hex[:8]}"
    Queue.objects.create(environment_id="dev", name=queue, concurrency_limit=5)
    start_workers(processes)
    # Each run must outlast a few claims (they serialise on the queue row) for 5 to overlap.
    items = [{"payload": {"label": label, "i": i, "sleep": 0.5}, "queue": queue} for i in range(200)]
    with ExecutingSampler(queue) as sampler:
        run_batch_trigger(task_id="test-interval", items=items)
        wait_for(lambda: all_completed(queue, 200), timeout=500, interval=0.5, message="200 runs to complete")

    report = overlap_report(queue, label)
    assert Run.objects.filter(queue=queue).count() == 200
    assert Attempt.objects.filter(run__queue=queue).count() == 200, report
    assert max_overlap(redis_intervals(label)[""]) == 5, report
    assert max_overlap(attempt_intervals(queue)[""]) == 5, report
    assert sampler.max_by_key[""] <= 5, report


@pytest.mark.xdist_group("heavy")
@pytest.mark.timeout(900)
def test_three_concurrency_keys_with_limit_2_each_never_exceed_2_per_key(transactional_db, processes):
    environments_ensure()
    label, queue = uuid.uuid4().hex, f"tenants-{uuid.uuid4().hex[:8]}"
    Queue.objects.create(environment_id="dev", name=queue, concurrency_limit=2)
    start_workers(processes)
    tenants = ["acme", "globex", "initech"]
    items = [
        {"payload": {"label": label, "key": tenants[i % 3], "sleep": 0.4}, "queue": queue,
         "concurrency_key": tenants[i % 3]}
        for i in range(150)
    ]
    with ExecutingSampler(queue) as sampler:
        run_batch_trigger(task_id="test-interval", items=items)
        wait_for(lambda: all_completed(queue, 150), timeout=500, interval=0.5, message="150 runs to complete")

    observed, recorded = redis_intervals(label), attempt_intervals(queue)
    for tenant in tenants:
        assert len(observed[tenant]) == 50
        assert max_overlap(observed[tenant]) == 2, tenant
        assert max_overlap(recorded[tenant]) == 2, tenant
        assert sampler.max_by_key[tenant] <= 2
    # The keys really ran side by side: the queue as a whole had more than 2 at once.
    assert max_overlap([i for t in tenants for i in observed[t]]) > 2


@pytest.mark.xdist_group("heavy")
@pytest.mark.timeout(600)
def test_a_total_limit_of_3_and_2_per_key_hold_at_once(transactional_db, processes):
    environments_ensure()
    label, queue = uuid.uuid4().hex, f"capped-{uuid.uuid4().hex[:8]}"
    Queue.objects.create(environment_id="dev", name=queue, concurrency_limit=2, total_limit=3)
    start_workers(processes)  # 8 slots: only the limits hold the runs back
    tenants = ["acme", "globex", "initech"]
    items = [
        {"payload": {"label": label, "key": tenants[i % 3], "sleep": 0.3}, "queue": queue,
         "concurrency_key": tenants[i % 3]}
        for i in range(60)
    ]
    with ExecutingSampler(queue) as sampler:
        run_batch_trigger(task_id="test-interval", items=items)
        wait_for(lambda: all_completed(queue, 60), timeout=300, interval=0.5, message="60 runs to complete")

    observed, recorded = redis_intervals(label), attempt_intervals(queue)
    everything = [i for t in tenants for i in observed[t]]
    assert len(everything) == 60
    assert max_overlap(everything) == 3
    assert max_overlap([i for t in tenants for i in recorded[t]]) == 3
    assert sum(sampler.max_by_key.values()) >= 3 and max(sampler.max_by_key.values()) <= 2
    for tenant in tenants:
        assert max_overlap(observed[tenant]) <= 2, tenant
        assert max_overlap(recorded[tenant]) <= 2, tenant


def most_starts_in_any_window(starts: list[float], window: float) -> int:
    """Return the most starts that fall in one half-open window [t, t + window)."""
    starts = sorted(starts)
    return max(sum(1 for other in starts[i:] if other < first + window) for i, first in enumerate(starts))


@pytest.mark.xdist_group("heavy")
@pytest.mark.timeout(600)
def test_a_rate_limit_of_4_per_second_holds_across_4_workers(transactional_db, processes):
    environments_ensure()
    label, queue = uuid.uuid4().hex, f"rated-{uuid.uuid4().hex[:8]}"
    Queue.objects.create(environment_id="dev", name=queue)
    queue_rate_set(environment="dev", name=queue, rate="4/s")
    start_workers(processes)  # 8 free slots: only the rate holds the runs back
    items = [{"payload": {"label": label, "key": f"r{i}", "sleep": 0.01}, "queue": queue} for i in range(14)]
    run_batch_trigger(task_id="test-interval", items=items)
    wait_for(lambda: all_completed(queue, 14), timeout=300, interval=0.2, message="14 runs to complete")

    starts = [started.timestamp() for started in Attempt.objects.filter(run__queue=queue).values_list(
        "started_at", flat=True)]
    assert len(starts) == 14
    assert most_starts_in_any_window(starts, 1.0) <= 4
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert min(gaps) >= 0.25  # evenly spaced: one start per interval, never a burst


def test_a_rate_limit_is_read_as_runs_per_period_and_a_bad_one_is_refused_naming_it(transactional_db):
    environments_ensure()
    Queue.objects.create(environment_id="dev", name="rated")
    assert rate_parse("10/s") == (10, 1.0) and rate_parse("1000/1h") == (1000, 3600.0)
    assert rate_parse(" 5 / 30s ") == (5, 30.0) and rate_parse(None) is None
    for shown in ("10/s", "1000/h", "5/30s", "3/90s", "7/2d", "2/1.5s"):  # as listed, and read back the same
        assert rate_text(*rate_parse(shown)) == shown
    for bad, message in (("10", "not a rate limit"), ("0/s", "from 1 to 10000"), ("3/fortnight", "period"),
                         ("3/0s", "from 1ms to 7 days"), (10, "not a rate limit")):
        with pytest.raises(InvalidQueueLimit, match=message):
            queue_rate_set(environment="dev", name="rated", rate=bad)
    assert Queue.objects.get(environment_id="dev", name="rated").rate_limit is None


@pytest.mark.xdist_group("heavy")
def test_pause_holds_runs_and_resume_starts_them_best_priority_first(transactional_db, processes):
    environments_ensure()
    start_workers(processes, count=2)
    label, queue = uuid.uuid4().hex, f"paused-{uuid.uuid4().hex[:8]}"
    Queue.objects.create(environment_id="dev", name=queue, concurrency_limit=1)
    queue_pause(environment="dev", name=queue)
    low = [run_trigger(task_id="test-interval", payload={"label": label, "key": f"low{i}"},
                       options=TriggerOptions(queue=queue, priority=0))[0] for i in range(3)]
    high = [run_trigger(task_id="test-interval", payload={"label": label, "key": f"high{i}"},
                        options=TriggerOptions(queue=queue, priority=10))[0] for i in range(3)]
    time.sleep(1.5)
    assert not Run.objects.filter(queue=queue).exclude(status=RunStatus.QUEUED).exists()

    queue_resume(environment="dev", name=queue)
    wait_for(lambda: all_completed(queue, 6), timeout=180, message="six runs to complete")
    order = [r.payload["key"] for r in Run.objects.filter(id__in=[r.id for r in low + high]).order_by("started_at")]
    # Every high-priority run starts before any low-priority one (within a priority, hints race).
    assert sorted(order[:3]) == ["high0", "high1", "high2"] and sorted(order[3:]) == ["low0", "low1", "low2"]


@pytest.mark.xdist_group("heavy")
def test_an_unlimited_queue_starts_waiting_runs_best_priority_first(transactional_db, processes, settings):
    environments_ensure()
    from stepwise.runs.dispatch import _hints

    # A message per run, so that the one the worker reserves as it starts is one run (a group would
    # be up to eight, by how the hints happened to queue up); groups keep their band (test_celery_app).
    settings.STEPWISE_HINT_GROUP = 1
    label = uuid.uuid4().hex
    # No worker yet: every hint waits in the broker, the low ones sent first.
    low = [run_trigger(task_id="test-interval", payload={"label": label, "key": f"low{i}"},
                       options=TriggerOptions(priority=0))[0] for i in range(4)]
    high = [run_trigger(task_id="test-interval", payload={"label": label, "key": f"high{i}"},
                        options=TriggerOptions(priority=10))[0] for i in range(4)]
    assert _hints.flush(10)
    processes.worker(concurrency=1, pool="prefork")
    ids = [r.id for r in low + high]
    wait_for(lambda: Run.objects.filter(id__in=ids, status=RunStatus.COMPLETED).count() == 8, timeout=120,
             message="eight runs to complete")
    order = [r.payload["key"] for r in Run.objects.filter(id__in=ids).order_by("started_at")]
    # The worker prefetches one hint as it starts (the first one sent may be it); after that every
    # high-priority run starts before the remaining low-priority ones.
    rest = order[1:] if order[0] == "low0" else order
    kinds = ["high" if key.startswith("high") else "low" for key in rest]
    assert kinds == sorted(kinds), order  # "high" sorts before "low"


@pytest.mark.xdist_group("heavy")
def test_raising_a_limit_takes_effect_at_the_next_claim_without_restart(transactional_db, processes):
    environments_ensure()
    start_workers(processes, count=2)
    label, queue = uuid.uuid4().hex, f"raise-{uuid.uuid4().hex[:8]}"
    Queue.objects.create(environment_id="dev", name=queue, concurrency_limit=1)
    items = [{"payload": {"label": label, "sleep": 0.4}, "queue": queue} for _ in range(8)]
    run_batch_trigger(task_id="test-interval", items=items)
    wait_for(lambda: Run.objects.filter(queue=queue, status=RunStatus.COMPLETED).count() >= 2, timeout=180,
             message="two runs at limit 1")
    assert max_overlap(attempt_intervals(queue)[""]) == 1
    raised_at = time.time()
    queue_limit_set(environment="dev", name=queue, limit=4)
    wait_for(lambda: all_completed(queue, 8), timeout=180, message="all runs")
    after = [i for i in attempt_intervals(queue)[""] if i[0] >= raised_at]
    assert max_overlap(after) > 1
    assert max_overlap(attempt_intervals(queue)[""]) <= 4
