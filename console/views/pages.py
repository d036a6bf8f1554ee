"""Pages beside the runs: pending waits and sending events (queues, schedules, secrets, keys: their own modules)."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from stepwise.console.forms import DecisionForm, EventSendForm
from stepwise.console.views.access import audit, login_required, readable_environments, require
from stepwise.console.views.feedback import action_done, next_url
from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.models import Waitpoint, WaitpointKind, WaitpointStatus
from stepwise.runs.selectors import waitpoint_list as waitpoints_pending
from stepwise.runs.waits import (
    WaitpointError,
    event_send,
    waitpoint_approve,
    waitpoint_reject,
    waitpoint_skip,
    waitpoint_time_out,
)
from stepwise.tasks.access import Capability

TIMERS = (WaitpointKind.DURATION, WaitpointKind.DATE, WaitpointKind.CHILDREN)


@login_required
def waitpoint_list(request: HttpRequest) -> HttpResponse:
    """Show pending waits, oldest first: approvals to decide, event waits to send an event to, and timers."""
    waitpoints = waitpoints_pending(status=WaitpointStatus.PENDING, environments=readable_environments(request),
                                    limit=500)
    return render(request, "console/waitpoints/list.html", {
        "nav": "waitpoints",
        "approvals": [wp for wp in waitpoints if wp.kind == WaitpointKind.TOKEN],
        "event_waits": [wp for wp in waitpoints if wp.kind == WaitpointKind.EVENT],
        "timer_waits": [wp for wp in waitpoints if wp.kind in TIMERS],
    })


@login_required
@require_POST
def event_send_view(request: HttpRequest) -> HttpResponse:
    """Send an event from the console: every pending wait on it (in that environment) that matches resumes."""
    back = next_url(request, reverse("console:waitpoints"))
    form = EventSendForm(request.POST)
    if not form.is_valid():
        problem = next(iter(form.errors.values()))[0]
        return action_done(request, message=problem, to=back, ok=False, status=400)
    name, environment = form.cleaned_data["name"], form.cleaned_data["environment"]
    require(request, environment, Capability.TRIGGER)
    try:
        event, matched = event_send(name=name, payload=form.cleaned_data["payload"], environment=environment)
    except StepwiseError as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=400)
    audit(request, "event.send", environment=environment, target=name, data={"event_id": event.id, "matched": matched})
    waits = "no wait matched it" if not matched else ("1 wait resumes" if matched == 1 else f"{matched} waits resume")
    return action_done(request, message=f"Sent event {name}: {waits}.", to=back)


@login_required
@require_POST
def waitpoint_decide(request: HttpRequest, waitpoint_id: str) -> HttpResponse:
    """Approve or reject a token waitpoint, time it out now or skip it; its run resumes."""
    back = next_url(request, reverse("console:waitpoints"))
    form = DecisionForm(request.POST)
    if not form.is_valid():
        problem = next(iter(form.errors.values()))[0]
        return action_done(request, message=problem, to=back, ok=False, status=400)
    environment = Waitpoint.objects.filter(id=waitpoint_id).values_list("run__environment_id", flat=True).first()
    if environment is not None:  # an unknown one is reported by the decision below
        require(request, environment, Capability.OPERATE)
    decision = form.cleaned_data["decision"]
    by = request.user.get_username()
    act = {
        "approve": lambda: waitpoint_approve(waitpoint_id=waitpoint_id, data=form.cleaned_data["data"], by=by),
        "reject": lambda: waitpoint_reject(waitpoint_id=waitpoint_id, data=form.cleaned_data["data"], by=by),
        "timeout": lambda: waitpoint_time_out(waitpoint_id=waitpoint_id, by=by),
        "skip": lambda: waitpoint_skip(waitpoint_id=waitpoint_id, by=by),
    }[decision]
    try:
        wp = act()
    except WaitpointError as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=409)
    verb, action = {"approve": ("Approved", "approve"), "reject": ("Rejected", "reject"),
                    "timeout": ("Timed out", "time_out"), "skip": ("Skipped", "skip")}[decision]
    audit(request, f"waitpoint.{action}", environment=environment, target=wp.id, data={"run_id": wp.run_id})
    return action_done(request, message=f"{verb} {wp.id}; run {wp.run_id} resumes.", to=back)
