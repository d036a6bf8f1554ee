"""Pages beside the runs: pending approvals (queues, schedules, secrets and API keys have their own modules)."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.forms import DecisionForm
from console.views.access import audit, login_required, readable_environments, require
from console.views.feedback import action_done, next_url
from runs.models import Waitpoint, WaitpointKind, WaitpointStatus
from runs.selectors import waitpoint_list as waitpoints_pending
from runs.waits import WaitpointError, waitpoint_approve, waitpoint_reject, waitpoint_skip, waitpoint_time_out
from tasks.access import Capability


@login_required
def waitpoint_list(request: HttpRequest) -> HttpResponse:
    """Show pending human approvals (token waitpoints), oldest first, to approve or reject in place."""
    waitpoints = waitpoints_pending(status=WaitpointStatus.PENDING, kind=WaitpointKind.TOKEN,
                                    environments=readable_environments(request))
    return render(request, "console/waitpoints/list.html", {"nav": "waitpoints", "waitpoints": waitpoints})


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
