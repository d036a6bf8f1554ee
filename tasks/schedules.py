"""Cron schedules: next ticks across DST, CRUD per environment, and firing each tick once."""
from __future__ import annotations

import heapq
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone as dj_timezone

from stepwise.runs.engine.checkpoints import checkpoint_encode
from stepwise.runs.engine.errors import StepwiseError
from stepwise.tasks.models import Schedule
from stepwise.tasks.registry import UnknownTask, task_all, task_get
from stepwise.tasks.services import environment_exists

logger = logging.getLogger(__name__)
# A tick's run keeps its idempotency key this long, so no scheduler can fire the tick again.
TICK_KEY_TTL_SECONDS = 35 * 24 * 3600
# The dedup keys of schedules declared with @task(cron=...) start with this; the sync owns them.
DECLARED_KEY_PREFIX = "declared:"


# Where the check that an expression fires at all starts: a leap year, so February 29th fires.
_CRON_PROBE_START = datetime(2000, 1, 1)
# Room kept in the payload size limit for the fields each tick adds (schedule id, timestamps, zone).
TICK_FIELDS_BYTES = 1024


class InvalidSchedule(StepwiseError):
    """A schedule's cron expression, time zone, task or dedup key is wrong; nothing was stored."""


class ScheduleNotFound(StepwiseError):
    """No schedule has this id in this environment."""


def timezone_validate(name: str) -> ZoneInfo:
    """Return the zone of an IANA name, or raise InvalidSchedule."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"unknown time zone '{name}' (use an IANA name such as 'Europe/Paris')") from None


def cron_validate(expression: str, timezone: str = "UTC") -> None:
    """Raise InvalidSchedule unless the expression has five valid fields and the zone exists."""
    if not isinstance(expression, str) or len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise InvalidSchedule(f"invalid cron expression '{expression}' (expected 5 fields, e.g. '0 * * * *')")
    try:
        croniter(expression, _CRON_PROBE_START).get_next(datetime)
    except (CroniterError, ValueError, OverflowError):
        # croniter searches 50 years for a match: none means the expression names no real date.
        raise InvalidSchedule(f"cron expression '{expression}' never fires (no date matches it, e.g. "
                              "'0 0 31 2 *' names February 31st)") from None
    timezone_validate(timezone)


def _instants(naive: datetime, zone: ZoneInfo, every_hour: bool) -> list[datetime]:
    """Map a wall-clock tick to UTC: a skipped time moves forward, a repeated one fires once
    (or at both occurrences when the hour field repeats every hour)."""
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return [first.astimezone(UTC)]
    roundtrip = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None)
    if roundtrip != naive:  # in the gap of a spring-forward change
        return [first.astimezone(UTC)]
    return [first.astimezone(UTC), second.astimezone(UTC)] if every_hour else [first.astimezone(UTC)]


def cron_ticks(expression: str, timezone: str, after: datetime) -> Iterator[datetime]:
    """Yield the UTC instants of a cron expression's ticks strictly after ``after``, in order."""
    cron_validate(expression, timezone)
    zone = timezone_validate(timezone)
    hour_field = expression.split()[1]
    every_hour = hour_field == "*" or hour_field.startswith("*/")
    # Start a little early: around a fall-back change, local wall-clock time goes backwards.
    start = after.astimezone(zone).replace(tzinfo=None) - timedelta(hours=3)
    wall = croniter(expression, start)
    pending: list[datetime] = []
    last: datetime | None = None
    while True:
        naive = wall.get_next(datetime)
        for instant in _instants(naive, zone, every_hour):
            heapq.heappush(pending, instant)
        horizon = naive.replace(tzinfo=zone, fold=0).astimezone(UTC) - timedelta(hours=3)
        while pending and pending[0] <= horizon:
            instant = heapq.heappop(pending)
            if instant > after and instant != last:
                last = instant
                yield instant


def cron_next(expression: str, timezone: str, *, after: datetime, count: int = 5) -> list[datetime]:
    """Return the next ``count`` UTC tick instants after ``after``."""
    ticks = cron_ticks(expression, timezone, after)
    return [next(ticks) for _ in range(count)]


def _next_after(schedule: Schedule, after: datetime) -> datetime:
    return next(cron_ticks(schedule.cron, schedule.timezone, after))


# How far back a late scheduler looks for the latest missed tick before widening the search.
_LOOKBACKS = (timedelta(hours=2), timedelta(days=2), timedelta(days=40), timedelta(days=400))


def _latest_due(schedule: Schedule, now: datetime) -> tuple[datetime, datetime]:
    """Return the latest tick at or before ``now`` (at least the due one) and the tick after it.

    After downtime only the latest missed tick fires, never a burst of stale ones. The search
    starts shortly before ``now`` and widens, so a schedule due since long ago (every minute for
    two years) costs a handful of cron steps, not one per missed tick.
    """
    due = schedule.next_run_at
    for lookback in (*_LOOKBACKS, None):
        start = due if lookback is None or now - lookback <= due else now - lookback
        latest = None
        for instant in cron_ticks(schedule.cron, schedule.timezone, start):
            if instant > now:
                if latest is not None or start == due:
                    return latest or due, instant
                break
            latest = instant
    raise AssertionError("unreachable: the last search starts at the due tick")


def _checked(*, environment: str, task_id: str, cron: str, timezone: str, dedup_key: str, payload: Any) -> None:
    if not environment_exists(environment):
        raise InvalidSchedule(f"unknown environment '{environment}'")
    try:
        task_get(task_id)
    except UnknownTask as exc:
        raise InvalidSchedule(str(exc)) from None
    cron_validate(cron, timezone)
    if not isinstance(dedup_key, str) or not 0 < len(dedup_key) <= 255:
        raise InvalidSchedule("dedup_key must be a non-empty string of at most 255 characters")
    if not isinstance(payload, dict):
        raise InvalidSchedule("a schedule's payload must be a JSON object")
    limit = settings.STEPWISE_MAX_PAYLOAD_BYTES - TICK_FIELDS_BYTES
    try:
        checkpoint_encode(payload, where="the schedule's payload", max_bytes=limit)
    except StepwiseError as exc:  # too large, or a value no run could take: every tick would fail
        raise InvalidSchedule(str(exc)) from None


def schedule_upsert(
    *,
    environment: str,
    task_id: str,
    cron: str,
    timezone: str = "UTC",
    dedup_key: str,
    payload: dict[str, Any] | None = None,
    active: bool = True,
    declared: bool = False,
) -> tuple[Schedule, bool]:
    """Create a schedule, or update the one with the same dedup key; return (schedule, created)."""
    payload = {} if payload is None else payload
    _checked(environment=environment, task_id=task_id, cron=cron, timezone=timezone, dedup_key=dedup_key,
             payload=payload)
    now = dj_timezone.now()
    with transaction.atomic():
        schedule, created = Schedule.objects.select_for_update().get_or_create(
            environment_id=environment,
            dedup_key=dedup_key,
            defaults={"task_id": task_id, "cron": cron, "timezone": timezone, "payload": payload,
                      "active": active, "declared": declared},
        )
        if not created:
            changed_timing = (schedule.cron, schedule.timezone, schedule.active) != (cron, timezone, active)
            schedule.task_id, schedule.cron, schedule.timezone = task_id, cron, timezone
            schedule.payload, schedule.active, schedule.declared = payload, active, declared
            if changed_timing:
                schedule.next_run_at = None
        if schedule.next_run_at is None and schedule.active:
            schedule.next_run_at = _next_after(schedule, now)
        if not schedule.active:
            schedule.next_run_at = None
        schedule.save()
    return schedule, created


def schedule_update(*, environment: str, schedule_id: int, **changes: Any) -> Schedule:
    """Change some fields of a schedule (cron, timezone, task_id, payload, active)."""
    schedule = schedule_get(environment=environment, schedule_id=schedule_id)
    allowed = {"cron", "timezone", "task_id", "payload", "active"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidSchedule(f"unknown schedule field(s): {', '.join(sorted(unknown))}")
    fields = {"task_id": schedule.task_id, "cron": schedule.cron, "timezone": schedule.timezone,
              "payload": schedule.payload, "active": schedule.active}
    fields.update({k: v for k, v in changes.items() if v is not None})
    updated, _ = schedule_upsert(environment=environment, dedup_key=schedule.dedup_key,
                                 declared=schedule.declared, **fields)
    return updated


def schedule_delete(*, environment: str, schedule_id: int) -> None:
    """Delete a schedule; runs it already triggered stay."""
    deleted, _ = Schedule.objects.filter(environment_id=environment, id=schedule_id).delete()
    if not deleted:
        raise ScheduleNotFound(f"no schedule {schedule_id} in environment '{environment}'")


def schedule_get(*, environment: str, schedule_id: int) -> Schedule:
    """Return one schedule of an environment, or raise ScheduleNotFound."""
    schedule = Schedule.objects.filter(environment_id=environment, id=schedule_id).first()
    if schedule is None:
        raise ScheduleNotFound(f"no schedule {schedule_id} in environment '{environment}'")
    return schedule


def schedule_list(*, environment: str) -> list[Schedule]:
    """Return the schedules of an environment."""
    return list(Schedule.objects.filter(environment_id=environment).order_by("id"))


def schedule_next_runs(schedule: Schedule, *, count: int = 5, now: datetime | None = None) -> list[datetime]:
    """Return the next ``count`` times a schedule will trigger (UTC)."""
    if not schedule.active:
        return []
    return cron_next(schedule.cron, schedule.timezone, after=now or dj_timezone.now(), count=count)


def schedules_declared_sync() -> int:
    """Create or update the schedules declared with ``@task(cron=...)``; drop those removed from code."""
    environment = settings.STEPWISE_ENVIRONMENT
    if not environment_exists(environment):
        return 0
    keys = []
    for definition in task_all():
        if definition.cron:
            key = f"{DECLARED_KEY_PREFIX}{definition.id}"
            keys.append(key)
            try:
                schedule_upsert(environment=environment, task_id=definition.id, cron=definition.cron,
                                timezone=definition.timezone, dedup_key=key, declared=True)
            except InvalidSchedule as exc:  # one bad declaration must not stop the scheduler
                logger.error("task %s declares an invalid schedule: %s", definition.id, exc)
    Schedule.objects.filter(environment_id=environment, declared=True).exclude(dedup_key__in=keys).delete()
    return len(keys)


def tick_idempotency_key(schedule_id: int, tick: datetime) -> str:
    """Return the idempotency key of one tick: the unique constraint on runs makes it fire once."""
    return f"schedule:{schedule_id}:{tick.astimezone(UTC).isoformat()}"


def _fire(schedule: Schedule, now: datetime) -> bool:
    from stepwise.runs.triggers import InvalidTrigger, TriggerOptions, run_trigger

    tick, following = _latest_due(schedule, now)
    payload = {
        **schedule.payload,
        "schedule_id": schedule.id,
        "dedup_key": schedule.dedup_key,
        "timestamp": tick.isoformat(),
        "last_timestamp": schedule.last_run_at.isoformat() if schedule.last_run_at else None,
        "timezone": schedule.timezone,
    }
    options = TriggerOptions(
        idempotency_key=tick_idempotency_key(schedule.id, tick),
        idempotency_key_ttl=TICK_KEY_TTL_SECONDS,
        environment=schedule.environment_id,
        tags=[f"schedule:{schedule.id}"],
    )
    created = False
    try:
        _, created = run_trigger(task_id=schedule.task_id, payload=payload, options=options)
    except (InvalidTrigger, UnknownTask) as exc:
        logger.warning("schedule %s could not trigger %s: %s", schedule.id, schedule.task_id, exc)
    Schedule.objects.filter(id=schedule.id, next_run_at=schedule.next_run_at).update(
        next_run_at=following, last_run_at=tick
    )
    return created


def schedules_fire_due(now: datetime | None = None) -> int:
    """Trigger every due tick once; safe to run from two schedulers at the same time."""
    now = now or dj_timezone.now()
    fired = 0
    due_now = Schedule.objects.filter(active=True, next_run_at__lte=now)
    if not due_now.exists():  # most passes: one read, no transaction
        return 0
    with transaction.atomic():
        due = list(due_now.select_for_update(skip_locked=True).order_by("next_run_at")[:200])
        for schedule in due:
            try:
                with transaction.atomic():
                    fired += _fire(schedule, now)
            except IntegrityError:
                pass  # another scheduler recorded this tick first
    return fired
