"""manage.py schedules list|create|update|delete|next: cron schedules of an environment."""
from __future__ import annotations

import json
from datetime import datetime

from django.core.management.base import CommandError

from stepwise.runs.management.base import SubcommandCommand, audit, env_option
from stepwise.runs.triggers import payload_parse
from stepwise.tasks.models import Schedule
from stepwise.tasks.schedules import (
    schedule_delete,
    schedule_get,
    schedule_list,
    schedule_next_runs,
    schedule_update,
    schedule_upsert,
    timezone_validate,
)


def _local(schedule: Schedule, at: datetime | None) -> str:
    """Format an instant in the schedule's own time zone."""
    return f"{at.astimezone(timezone_validate(schedule.timezone)):%Y-%m-%d %H:%M %Z}" if at else "-"


def _summary(schedule: Schedule) -> str:
    state = "" if schedule.active else " (inactive)"
    return (f"{schedule.id} {schedule.task_id} '{schedule.cron}' {schedule.timezone}{state} "
            f"key={schedule.dedup_key}; next run {_local(schedule, schedule.next_run_at)}")


class Command(SubcommandCommand):
    help = "List, create (or replace by dedup key), update or delete schedules, or print a schedule's next runs."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        env_option(sub.add_parser("list"))
        creating = sub.add_parser("create", help="the same --dedup-key replaces the existing schedule")
        creating.add_argument("task_id")
        creating.add_argument("cron", help="5 fields, e.g. '0 9 * * 1-5'")
        creating.add_argument("--tz", default="UTC", help="IANA time zone (default UTC)")
        creating.add_argument("--dedup-key", required=True, help="one schedule per key")
        creating.add_argument("--payload", default="{}", help="JSON object added to each run's payload")
        creating.add_argument("--inactive", action="store_true", help="store it switched off")
        env_option(creating)
        updating = sub.add_parser("update", help="change only the fields given")
        updating.add_argument("schedule_id", type=int)
        updating.add_argument("--task", dest="task_id")
        updating.add_argument("--cron")
        updating.add_argument("--tz")
        updating.add_argument("--payload")
        switch = updating.add_mutually_exclusive_group()
        switch.add_argument("--activate", dest="active", action="store_const", const=True)
        switch.add_argument("--deactivate", dest="active", action="store_const", const=False)
        env_option(updating)
        for action, helped in (("delete", "runs it already triggered stay"),
                               ("next", "the next 5 run times in the schedule's time zone")):
            cmd = sub.add_parser(action, help=helped)
            cmd.add_argument("schedule_id", type=int)
            env_option(cmd)

    def _list(self, opts) -> None:
        for schedule in schedule_list(environment=opts["env"]):
            self.stdout.write(_summary(schedule))

    def _create(self, opts) -> None:
        schedule, created = schedule_upsert(
            environment=opts["env"], task_id=opts["task_id"], cron=opts["cron"], timezone=opts["tz"],
            dedup_key=opts["dedup_key"], payload=payload_parse(opts["payload"]), active=not opts["inactive"],
        )
        audit("schedule.create" if created else "schedule.update", environment=opts["env"], target=schedule.id,
              data={"dedup_key": schedule.dedup_key, "task_id": schedule.task_id, "cron": schedule.cron})
        self.stdout.write(f"{'created' if created else 'replaced'} schedule {_summary(schedule)}")

    def _update(self, opts) -> None:
        changes = {"task_id": opts["task_id"], "cron": opts["cron"], "timezone": opts["tz"], "active": opts["active"],
                   "payload": payload_parse(opts["payload"]) if opts["payload"] is not None else None}
        if all(value is None for value in changes.values()):
            raise CommandError("nothing to change: give --task, --cron, --tz, --payload, --activate or --deactivate")
        schedule = schedule_update(environment=opts["env"], schedule_id=opts["schedule_id"], **changes)
        audit("schedule.update", environment=opts["env"], target=schedule.id,
              data={"changed": sorted(k for k, v in changes.items() if v is not None)})
        self.stdout.write(f"updated schedule {_summary(schedule)} payload={json.dumps(schedule.payload)}")

    def _delete(self, opts) -> None:
        schedule_delete(environment=opts["env"], schedule_id=opts["schedule_id"])
        audit("schedule.delete", environment=opts["env"], target=opts["schedule_id"])
        self.stdout.write(f"schedule {opts['schedule_id']} deleted from {opts['env']}; runs it triggered stay")

    def _next(self, opts) -> None:
        schedule = schedule_get(environment=opts["env"], schedule_id=opts["schedule_id"])
        runs = schedule_next_runs(schedule, count=5)
        if not runs:
            self.stdout.write(f"schedule {schedule.id} is inactive: it will not run")
        for at in runs:
            self.stdout.write(_local(schedule, at))
