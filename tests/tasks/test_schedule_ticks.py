"""Schedule ticks with two schedulers racing over the same due schedules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from stepwise.runs.models import Run
from stepwise.tasks.models import Schedule
from stepwise.tasks.schedules import (
    schedule_upsert,
    schedules_fire_due,
)
from stepwise.tasks.services import environments_ensure
from tests.tasks import cron_tasks  # noqa: F401  (registers test-hourly-paris)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_two_schedulers_with_overlapping_views_trigger_each_tick_exactly_once(transactional_db, processes):
    # ``processes`` stops the session's shared scheduler: this test plays both schedulers itself.
    environments_ensure()
    schedules = [
        schedule_upsert(environment="dev", task_id="test-noop", cron="*/5 * * * *", dedup_key=f"s{i}")[0]
        for i in range(10)
    ]
    start = utc(2025, 1, 1, 10)
    Schedule.objects.update(next_run_at=start)
    from stepwise.tasks.schedules import _fire

    for step in range(6):
        now = start + timedelta(minutes=5 * step, seconds=1)
        # A stale copy: the second scheduler still believes the tick is due (it read before the first fired).
        stale = list(Schedule.objects.all())
        schedules_fire_due(now)
        schedules_fire_due(now)
        for schedule in stale:  # replay the stale view directly: the database must refuse it
            _fire(schedule, now)
    assert Run.objects.count() == 10 * 6
    keys = list(Run.objects.values_list("idempotency_key", flat=True))
    assert len(set(keys)) == len(keys)
    assert {s.id for s in schedules} == {int(k.split(":")[1]) for k in keys}
