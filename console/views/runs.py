"""Runs list, run detail and the JSON the live pages poll."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import require_GET

from stepwise.console.forms import PayloadForm, RunFilterForm
from stepwise.console.templatetags.console_format import duration_between
from stepwise.console.views.access import (
    environment_slugs_readable,
    login_required,
    readable_environments,
    require,
    run_require,
)
from stepwise.runs.exports import FORMATS, run_export_response
from stepwise.runs.pinning import version_wait_deadline
from stepwise.runs.selectors import (
    RunFilters,
    run_checkpoint_state,
    run_detail,
    run_display_get,
    run_events_after,
    run_page,
    run_pending_waits,
    run_status_counts,
    run_statuses,
    run_step,
    runs_newer_than,
)
from stepwise.runs.statuses import RunStatus
from stepwise.runs.timeline import epoch_ms, run_timeline
from stepwise.tasks.access import Capability
from stepwise.tasks.selectors import environment_list, task_ids

PAGE_SIZE = 50
# The runs list's time presets: ?period=1h shows the runs created in the last hour.
PERIODS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24),
           "7d": timedelta(days=7), "30d": timedelta(days=30)}


def _int(value: str | None, default: int | None = None) -> int | None:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def _list_filters(request: HttpRequest, form: RunFilterForm) -> RunFilters:
    """Return the list's filters: the form's, the time preset, the environment shown and those the user may read."""
    filters = replace(form.filters(), environments=readable_environments(request))
    period = PERIODS.get(request.GET.get("period", ""))
    if period and not filters.created_after:
        filters = replace(filters, created_after=timezone.now() - period)
    env = request.GET.get("env", "")
    if env and (filters.environments is None or env in filters.environments):
        filters = replace(filters, environment=env)
    return filters


@login_required
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    """Show one page of runs, filtered, newest first, with the count of each status."""
    form = RunFilterForm(request.GET)
    filters = _list_filters(request, form)
    readable = filters.environments
    page = run_page(
        filters=filters, before=request.GET.get("before", ""), after=request.GET.get("after", ""), size=PAGE_SIZE
    )
    return render(
        request,
        "console/runs/list.html",
        {
            "form": form,
            "page": page,
            "query": _query(request, form),
            "is_first_page": not request.GET.get("before") and not page.newer_cursor,
            "task_ids": task_ids(),
            "filter_environments": environment_slugs_readable(request),
            "nav": "runs",
            "status_counts": _status_counts(filters),
            "periods": list(PERIODS),
            "period": request.GET.get("period", ""),
            "env": filters.environment,
            "environments": [e.slug for e in environment_list() if readable is None or e.slug in readable],
        },
    )


def _query(request: HttpRequest, form: RunFilterForm) -> dict[str, str]:
    """Return the list's query-string values (filters, time preset, environment) that links keep."""
    values = {**form.filters().as_query(), "period": request.GET.get("period", ""), "env": request.GET.get("env", "")}
    return {k: v for k, v in values.items() if v and not (k == "period" and v not in PERIODS)}


def _status_counts(filters: RunFilters) -> list[tuple[str, str, int]]:
    """Return (status, label, count) for each status some run has, in the state machine's order, with the total."""
    counts = run_status_counts(filters=filters)
    return [(status, label, counts[status]) for status, label in RunStatus.choices if counts.get(status)]


@login_required
@require_GET
def run_list_updates(request: HttpRequest) -> JsonResponse:
    """Return rows of runs newer than ``newest`` and the statuses of the runs in ``ids``."""
    filters = _list_filters(request, RunFilterForm(request.GET))
    readable = filters.environments
    newest = request.GET.get("newest", "")
    rows = runs_newer_than(filters=filters, newest_id=newest) if newest else []
    ids = [i for i in request.GET.get("ids", "").split(",") if i]
    return JsonResponse(
        {
            "rows": [{"id": r.id, "html": render_to_string("console/runs/_row.html", {"run": r})} for r in rows],
            "statuses": {
                r.id: {"status": r.status, "label": r.get_status_display(), "attempts": r.attempt_count,
                       "duration": duration_between(r.started_at, r.finished_at)}
                for r in run_statuses(run_ids=ids, environments=readable)
            },
        }
    )


@login_required
@require_GET
def run_show(request: HttpRequest, run_id: str) -> HttpResponse:
    """Show a run: header, actions, live timeline, inspectors."""
    run = run_detail(run_id=run_id, viewer=request.user)
    if run is None:
        raise Http404(f"no run with id '{run_id}'")
    require(request, run.environment_id, Capability.READ)
    replay_form = PayloadForm(initial={"payload": _pretty(run.payload)})
    return render(
        request,
        "console/runs/detail.html",
        {"run": run, "replay_form": replay_form, "nav": "runs", "created_ms": epoch_ms(run.created_at),
         "pending_waits": run_pending_waits(run_id=run.id), "version_wait_until": version_wait_deadline(run)},
    )


def _pretty(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


@gzip_page  # a 5,000-step timeline is ~1 MB of repetitive JSON, and ~60 KB compressed
@login_required
@require_GET
def run_timeline_json(request: HttpRequest, run_id: str) -> JsonResponse:
    """Return the run's timeline spans (``?first=N``: a quick first screen with the first N steps)."""
    run = run_detail(run_id=run_id, viewer=request.user)
    if run is None:
        raise Http404(f"no run with id '{run_id}'")
    require(request, run.environment_id, Capability.READ)
    first = _int(request.GET.get("first"))
    return JsonResponse(run_timeline(run=run, first=max(1, min(first, 1000)) if first else None,
                                     viewer=request.user))


@login_required
@require_GET
def run_events_json(request: HttpRequest, run_id: str) -> JsonResponse:
    """Return the run's events after a seq: the polling fallback of the websocket."""
    run_require(request, run_id, Capability.READ)
    display = run_display_get(run_id=run_id, viewer=request.user)  # stream chunks may be hidden from a viewer
    events = run_events_after(run_id=run_id, after=_int(request.GET.get("after"), 0), limit=1000)
    return JsonResponse({"events": [display.event(e.as_message()) for e in events] if display else []})


@login_required
@require_GET
def run_step_json(request: HttpRequest, run_id: str, position: int) -> JsonResponse:
    """Return one recorded step with its output and error, for the inspector."""
    run_require(request, run_id, Capability.READ)
    step = run_step(run_id=run_id, position=position, viewer=request.user)
    if step is None:
        return JsonResponse({"recorded": False, "position": position})
    return JsonResponse(
        {
            "recorded": True,
            "key": step.key,
            "name": step.name,
            "kind": step.kind,
            "position": step.position,
            "status": step.status,
            "attempt": step.attempt_number,
            "started_at": step.started_at.isoformat(),
            "finished_at": step.finished_at.isoformat(),
            "duration_ms": round(step.duration_ms, 3),
            "output": step.output,
            "error": step.error,
        }
    )


@login_required
@require_GET
def run_checkpoint_json(request: HttpRequest, run_id: str) -> JsonResponse:
    """Return the recorded step results as of a step position."""
    run_require(request, run_id, Capability.READ)
    position = _int(request.GET.get("position"))
    state = run_checkpoint_state(run_id=run_id, as_of_position=position, viewer=request.user)
    return JsonResponse({"position": position, "state": state})


@login_required
@require_GET
def run_export_view(request: HttpRequest, run_id: str, fmt: str) -> HttpResponse:
    """Download a run's trace as JSON lines, a markdown report or OTLP-JSON."""
    run = run_detail(run_id=run_id, viewer=request.user)
    if run is None:
        raise Http404(f"no run with id '{run_id}'")
    require(request, run.environment_id, Capability.READ)
    if fmt not in FORMATS:
        raise Http404(f"unknown export format '{fmt}' (formats: {', '.join(FORMATS)})")
    return run_export_response(run, fmt, viewer=request.user)
