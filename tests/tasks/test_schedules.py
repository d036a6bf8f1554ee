"""Cron schedules: DST, next run times, declared and imperative schedules, one run per tick."""
from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stepwise.runs.models import Run
from stepwise.tasks.models import Schedule
from stepwise.tasks.schedules import (
    InvalidSchedule,
    cron_next,
    schedule_next_runs,
    schedule_upsert,
    schedules_declared_sync,
    schedules_fire_due,
)
from stepwise.tasks.services import environments_ensure
from tests.tasks import cron_tasks  # noqa: F401  (registers test-hourly-paris)


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def iso(instants) -> list[str]:
    return [i.strftime("%m-%d %H:%M") for i in instants]


def test_daily_tick_in_paris_keeps_local_time_across_both_dst_changes():
    spring = cron_next("30 9 * * *", "Europe/Paris", after=utc(2025, 3, 29, 12), count=3)
    assert iso(spring) == ["03-30 07:30", "03-31 07:30", "04-01 07:30"]  # 09:30 CEST
    autumn = cron_next("30 9 * * *", "Europe/Paris", after=utc(2025, 10, 25, 12), count=3)
    assert iso(autumn) == ["10-26 08:30", "10-27 08:30", "10-28 08:30"]  # 09:30 CET


def test_a_tick_inside_the_spring_gap_fires_once_just_after_it():
    ticks = cron_next("30 2 * * *", "Europe/Paris", after=utc(2025, 3, 29, 12), count=3)
    # 02:30 does not exist on 30 March: it fires at 03:30 CEST (01:30 UTC), once.
    assert iso(ticks) == ["03-30 01:30", "03-31 00:30", "04-01 00:30"]


def test_a_fixed_tick_in_the_repeated_autumn_hour_fires_once_then_keeps_local_time():
    ticks = cron_next("30 2 * * *", "Europe/Paris", after=utc(2025, 10, 25, 12), count=3)
    assert iso(ticks) == ["10-26 00:30", "10-27 01:30", "10-28 01:30"]


def test_hourly_ticks_fire_every_real_hour_through_the_autumn_change():
    ticks = cron_next("0 * * * *", "Europe/Paris", after=utc(2025, 10, 25, 22, 30), count=5)
    assert iso(ticks) == ["10-25 23:00", "10-26 00:00", "10-26 01:00", "10-26 02:00", "10-26 03:00"]
    spring = cron_next("0 * * * *", "Europe/Paris", after=utc(2025, 3, 29, 23, 30), count=3)
    assert iso(spring) == ["03-30 00:00", "03-30 01:00", "03-30 02:00"]


def test_invalid_cron_or_zone_is_refused_with_a_message(db):
    environments_ensure()
    with pytest.raises(InvalidSchedule, match="invalid cron expression 'every hour'"):
        schedule_upsert(environment="dev", task_id="test-noop", cron="every hour", dedup_key="x")
    with pytest.raises(InvalidSchedule, match="unknown time zone 'Mars/Olympus'"):
        schedule_upsert(environment="dev", task_id="test-noop", cron="0 * * * *", timezone="Mars/Olympus",
                        dedup_key="x")
    with pytest.raises(InvalidSchedule, match="unknown task 'nope'"):
        schedule_upsert(environment="dev", task_id="nope", cron="0 * * * *", dedup_key="x")
    assert not Schedule.objects.exists()


def test_upsert_with_the_same_dedup_key_updates_the_schedule(db):
    environments_ensure()
    first, created = schedule_upsert(environment="dev", task_id="test-noop", cron="0 * * * *", dedup_key="tenant-1")
    second, created_again = schedule_upsert(environment="dev", task_id="test-noop", cron="*/5 * * * *",
                                            dedup_key="tenant-1")
    assert created and not created_again and first.id == second.id
    assert Schedule.objects.get().cron == "*/5 * * * *"
    nexts = schedule_next_runs(second, now=utc(2025, 1, 1, 10, 2))
    assert iso(nexts) == ["01-01 10:05", "01-01 10:10", "01-01 10:15", "01-01 10:20", "01-01 10:25"]


def test_declared_schedule_is_synced_from_the_task_decorator(db):
    environments_ensure()
    schedules_declared_sync()
    schedule = Schedule.objects.get(dedup_key="declared:test-hourly-paris")
    assert (schedule.environment_id, schedule.cron, schedule.timezone, schedule.declared) == (
        "dev", "0 * * * *", "Europe/Paris", True)
    schedules_declared_sync()
    assert Schedule.objects.count() == 1


def test_a_due_tick_triggers_one_run_with_the_tick_in_its_payload(db):
    environments_ensure()
    schedule, _ = schedule_upsert(environment="dev", task_id="test-noop", cron="0 * * * *", dedup_key="d",
                                  payload={"report": "sales"})
    Schedule.objects.filter(id=schedule.id).update(next_run_at=utc(2025, 1, 1, 10))
    assert schedules_fire_due(utc(2025, 1, 1, 10, 0, 30)) == 1
    assert schedules_fire_due(utc(2025, 1, 1, 10, 0, 40)) == 0
    run = Run.objects.get()
    assert run.payload["timestamp"] == "2025-01-01T10:00:00+00:00" and run.payload["report"] == "sales"
    assert run.idempotency_key == f"schedule:{schedule.id}:2025-01-01T10:00:00+00:00"
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2025, 1, 1, 11) and schedule.last_run_at == utc(2025, 1, 1, 10)


def test_after_downtime_only_the_latest_missed_tick_fires(db):
    environments_ensure()
    schedule, _ = schedule_upsert(environment="dev", task_id="test-noop", cron="0 * * * *", dedup_key="d")
    Schedule.objects.filter(id=schedule.id).update(next_run_at=utc(2025, 1, 1, 1))
    assert schedules_fire_due(utc(2025, 1, 1, 5, 30)) == 1
    assert Run.objects.get().payload["timestamp"] == "2025-01-01T05:00:00+00:00"


def test_a_schedule_due_since_long_ago_fires_its_latest_tick_once(db):
    environments_ensure()
    schedule, _ = schedule_upsert(environment="dev", task_id="test-noop", cron="* * * * *", dedup_key="d")
    Schedule.objects.filter(id=schedule.id).update(next_run_at=utc(2024, 3, 1, 0, 0))
    # Two years of missed minutes: one run, for the latest of them, and the schedule moves past now.
    assert schedules_fire_due(utc(2026, 3, 1, 12, 30, 20)) == 1
    assert Run.objects.get().payload["timestamp"] == "2026-03-01T12:30:00+00:00"
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2026, 3, 1, 12, 31) and schedule.last_run_at == utc(2026, 3, 1, 12, 30)


def test_a_late_tick_with_no_newer_one_fires_itself(db):
    environments_ensure()
    schedule, _ = schedule_upsert(environment="dev", task_id="test-noop", cron="0 9 1 1 *", dedup_key="yearly")
    Schedule.objects.filter(id=schedule.id).update(next_run_at=utc(2025, 1, 1, 9))
    assert schedules_fire_due(utc(2025, 6, 1)) == 1
    assert Run.objects.get().payload["timestamp"] == "2025-01-01T09:00:00+00:00"
    schedule.refresh_from_db()
    assert schedule.next_run_at == utc(2026, 1, 1, 9)
