"""The schedules page of one environment: next run times, create, switch on or off, edit, delete."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cache, wraps
from zoneinfo import available_timezones

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods, require_POST

from stepwise.console.forms import ScheduleChangeForm, ScheduleForm
from stepwise.console.views.access import audit, login_required
from stepwise.console.views.environments import environment_checked, environment_page, environment_url
from stepwise.console.views.feedback import action_done
from stepwise.tasks.access import Capability
from stepwise.tasks.models import Schedule
from stepwise.tasks.schedules import (
    InvalidSchedule,
    ScheduleNotFound,
    schedule_delete,
    schedule_get,
    schedule_list,
    schedule_next_runs,
    schedule_update,
    schedule_upsert,
)

DECLARED_READ_ONLY = "is declared in code with @task(cron=...): change or remove it there"


@cache
def _timezones() -> list[str]:
    return sorted(available_timezones())


@dataclass(frozen=True)
class ScheduleRow:
    """A schedule as its row shows it: with its next run times (UTC; the template shows its zone)."""

    schedule: Schedule
    next_runs: list[datetime]


def _rows(environment: str) -> list[ScheduleRow]:
    return [ScheduleRow(schedule=s, next_runs=schedule_next_runs(s)) for s in schedule_list(environment=environment)]


def _page(request: HttpRequest, form: ScheduleForm, *, status: int = 200) -> HttpResponse:
    return environment_page(request, "console/schedules/list.html", nav="schedules", rows=_rows, form=form,
                            capability=Capability.READ,
                            status=status, timezones=_timezones())


@login_required
@require_http_methods(["GET", "POST"])
def schedule_list_view(request: HttpRequest) -> HttpResponse:
    """Show an environment's schedules; a POST creates one (or replaces the one with its dedup key)."""
    if request.method == "GET":
        return _page(request, ScheduleForm())
    slug = environment_checked(request, Capability.ADMIN)
    form = ScheduleForm(request.POST)
    if form.is_valid():
        try:
            schedule, created = schedule_upsert(environment=slug, **form.cleaned_data)
        except InvalidSchedule as exc:
            form.add_error(None, str(exc))
        else:
            audit(request, "schedule.create" if created else "schedule.update", environment=slug, target=schedule.id,
                  data={"dedup_key": schedule.dedup_key, "task_id": schedule.task_id, "cron": schedule.cron})
            verb = "Created" if created else "Replaced"
            return action_done(request, message=f"{verb} schedule '{schedule.dedup_key}' of {schedule.task_id}.",
                               to=environment_url("console:schedules", slug))
    return _page(request, form, status=400)


def _editable(view: Callable[[HttpRequest, Schedule, str], HttpResponse]) -> Callable[..., HttpResponse]:
    """Give the view the schedule and the page to go back to; refuse a missing one or one declared in code
    (the scheduler would restore it at its next start)."""

    @wraps(view)
    def checked(request: HttpRequest, schedule_id: int) -> HttpResponse:
        slug = environment_checked(request, Capability.ADMIN)
        back = environment_url("console:schedules", slug)
        try:
            schedule = schedule_get(environment=slug, schedule_id=schedule_id)
        except ScheduleNotFound as exc:
            return action_done(request, message=str(exc), to=back, ok=False, status=404)
        if schedule.declared:
            return action_done(request, message=f"Schedule '{schedule.dedup_key}' {DECLARED_READ_ONLY}.", to=back,
                               ok=False, status=409)
        return view(request, schedule, back)

    return checked


@login_required
@require_POST
@_editable
def schedule_update_view(request: HttpRequest, schedule: Schedule, back: str) -> HttpResponse:
    """Change a schedule's cron and time zone, or switch it on or off."""
    form = ScheduleChangeForm(request.POST)
    if not form.is_valid():
        problem = next(iter(form.errors.values()))[0]
        return action_done(request, message=problem, to=back, ok=False, status=400)
    try:
        schedule = schedule_update(environment=schedule.environment_id, schedule_id=schedule.id, **form.changes())
    except InvalidSchedule as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=400)
    audit(request, "schedule.update", environment=schedule.environment_id, target=schedule.id,
          data={"changed": sorted(form.changes())})
    if "active" in form.changes():
        message = f"Schedule '{schedule.dedup_key}' {'enabled' if schedule.active else 'disabled'}."
    else:
        message = f"Schedule '{schedule.dedup_key}' now runs at '{schedule.cron}' ({schedule.timezone})."
    return action_done(request, message=message, to=back)


@login_required
@require_POST
@_editable
def schedule_delete_view(request: HttpRequest, schedule: Schedule, back: str) -> HttpResponse:
    """Delete a schedule; the runs it already triggered stay."""
    try:
        schedule_delete(environment=schedule.environment_id, schedule_id=schedule.id)
    except ScheduleNotFound as exc:  # deleted meanwhile
        return action_done(request, message=str(exc), to=back, ok=False, status=404)
    audit(request, "schedule.delete", environment=schedule.environment_id, target=schedule.id,
          data={"dedup_key": schedule.dedup_key})
    return action_done(request, message=f"Schedule '{schedule.dedup_key}' deleted; the runs it triggered stay.",
                       to=back)
