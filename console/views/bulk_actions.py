"""Bulk actions by filter in the console: the count per environment before confirming, then progress."""
from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods

from stepwise.console.forms import RunFilterForm
from stepwise.console.views.access import login_required
from stepwise.console.views.feedback import action_done
from stepwise.runs.bulk import ACTIONS, bulk_action_count, bulk_action_start
from stepwise.tasks.access import Capability, environments_where
from stepwise.tasks.audit import actor_of_user
from stepwise.tasks.models import BulkAction
from stepwise.tasks.selectors import environment_list


def _targets(request: HttpRequest, form: RunFilterForm, action: str) -> list[tuple[str, int]]:
    """Return each environment the user may operate in (and the filter allows) with how many runs the action takes."""
    filters = form.filters()
    allowed = environments_where(request.user, Capability.OPERATE)
    slugs = [e.slug for e in environment_list() if allowed is None or e.slug in allowed]
    if filters.environment:
        slugs = [s for s in slugs if s == filters.environment]
    return [(slug, bulk_action_count(filters=replace(filters, environment=slug), action=action)) for slug in slugs]


@login_required
@require_http_methods(["GET", "POST"])
def bulk_by_filter_view(request: HttpRequest) -> HttpResponse:
    """GET: how many runs a bulk action would touch; POST: start it in every environment with matches."""
    source = request.GET if request.method == "GET" else request.POST
    action = source.get("action", "")
    form = RunFilterForm(source)
    back = reverse("console:runs") + "?" + urlencode(form.filters().as_query())
    if action not in ACTIONS:
        return action_done(request, message=f"Unknown bulk action '{action}'.", to=back, ok=False, status=400)
    targets = _targets(request, form, action)
    if request.method == "GET":
        return render(request, "console/runs/bulk_confirm.html", {
            "action": action, "targets": targets, "total": sum(n for _, n in targets),
            "query": form.filters().as_query(), "back": back, "nav": "runs"})
    started = [bulk_action_start(environment=slug, action=action, filters=form.filters(),
                                 actor=actor_of_user(request.user)).id for slug, count in targets if count]
    if not started:
        return action_done(request, message="No run matches these filters any more.", to=back, ok=False, status=409)
    return redirect(reverse("console:runs-bulk-progress") + "?ids=" + ",".join(map(str, started)))


@login_required
@require_GET
def bulk_progress_view(request: HttpRequest) -> HttpResponse:
    """Show the progress of bulk actions (the page reloads itself while one runs)."""
    wanted = [int(i) for i in request.GET.get("ids", "").split(",") if i.isdigit()][:20]
    readable = environments_where(request.user, Capability.READ)
    actions = BulkAction.objects.filter(id__in=wanted).order_by("id")
    if readable is not None:
        actions = actions.filter(environment_id__in=readable)
    actions = list(actions)
    return render(request, "console/runs/bulk_progress.html", {
        "actions": actions, "running": any(a.status == "running" for a in actions), "nav": "runs"})
