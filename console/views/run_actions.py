"""Actions on runs: cancel, retry, replay with an edited payload, the bulk versions, and resetting a run's key."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from stepwise.console.forms import BulkActionForm, PayloadForm
from stepwise.console.views.access import audit, login_required, run_require
from stepwise.console.views.feedback import action_done, next_url
from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.idempotency import run_idempotency_key_reset
from stepwise.runs.models import Run
from stepwise.runs.services import run_cancel, run_replay
from stepwise.tasks.access import Capability, may


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, run_id: str) -> HttpResponse:
    """Cancel a run."""
    to = reverse("console:run", args=[run_id])
    run_require(request, run_id, Capability.OPERATE)
    try:
        run = run_cancel(run_id=run_id, reason=f"canceled by {request.user.get_username()}")
    except StepwiseError as exc:
        return action_done(request, message=str(exc), to=to, ok=False, status=409)
    audit(request, "run.cancel", environment=run.environment_id, target=run_id)
    return action_done(request, message=f"Run {run_id} canceled.", to=to)


@login_required
@require_POST
def run_replay_view(request: HttpRequest, run_id: str) -> HttpResponse:
    """Start a new run from this one: the same payload (retry) or an edited one (replay)."""
    here = reverse("console:run", args=[run_id])
    run_require(request, run_id, Capability.OPERATE)
    payload = ...
    if "payload" in request.POST:
        form = PayloadForm(request.POST)
        if not form.is_valid():
            return action_done(request, message=form.errors["payload"][0], to=here, ok=False, status=400)
        payload = form.cleaned_data["payload"]
    try:
        new_run = run_replay(run_id=run_id, payload=payload)
    except StepwiseError as exc:
        return action_done(request, message=str(exc), to=here, ok=False, status=400)
    audit(request, "run.replay", environment=new_run.environment_id,
                 target=run_id, data={"new_run_id": new_run.id, "payload_edited": payload is not ...})
    verb = "Retried" if payload is ... else "Replayed"
    return action_done(request, message=f"{verb} as {new_run.id}.", to=reverse("console:run", args=[new_run.id]))


@login_required
@require_POST
def run_idempotency_key_reset_view(request: HttpRequest, run_id: str) -> HttpResponse:
    """Free the idempotency key this run holds: the next trigger with it starts a new run."""
    to = reverse("console:run", args=[run_id])
    run_require(request, run_id, Capability.OPERATE)
    try:
        run = run_idempotency_key_reset(run_id=run_id, actor=request.user.get_username())
    except StepwiseError as exc:
        return action_done(request, message=str(exc), to=to, ok=False, status=409)
    audit(request, "idempotency_key.reset", environment=run.environment_id,
                 target=f"{run.task_id}:{run.idempotency_key}", data={"run_id": run.id})
    return action_done(request, message=f"Idempotency key {run.idempotency_key!r} reset: the next trigger with it "
                                        "starts a new run.", to=to)


@login_required
@require_POST
def run_bulk_view(request: HttpRequest) -> HttpResponse:
    """Cancel or replay the selected runs; report how many succeeded and why others did not."""
    back = next_url(request, reverse("console:runs"))
    form = BulkActionForm(request.POST)
    if not form.is_valid():
        return action_done(request, message="Select at least one run.", to=back, ok=False, status=400)
    action, done, refused, problems = form.cleaned_data["action"], 0, 0, []
    environments = dict(Run.objects.filter(id__in=form.cleaned_data["run_ids"]).values_list("id", "environment_id"))
    for run_id in form.cleaned_data["run_ids"]:
        environment = environments.get(run_id)
        if environment is not None and not may(request.user, environment, Capability.OPERATE):
            problems.append(f"your role in environment '{environment}' may not {action} run {run_id}")
            refused += 1
            continue
        try:
            if action == "cancel":
                run_cancel(run_id=run_id, reason=f"canceled by {request.user.get_username()}")
                audit(request, "run.cancel", environment=environment,
                             target=run_id)
            else:
                new_run = run_replay(run_id=run_id)
                audit(request, "run.replay", environment=environment,
                             target=run_id, data={"new_run_id": new_run.id, "payload_edited": False})
            done += 1
        except StepwiseError as exc:
            problems.append(str(exc))
    verb = "Canceled" if action == "cancel" else "Replayed"
    message = f"{verb} {done} run{'s' if done != 1 else ''}."
    if problems:
        message += f" {len(problems)} skipped: {problems[0]}" + (" …" if len(problems) > 1 else "")
    # Every selected run refused for the user's role: the action was forbidden, as for one run.
    forbidden = refused == len(form.cleaned_data["run_ids"])
    return action_done(request, message=message, to=back, ok=not forbidden and (done > 0 or not problems),
                       status=403 if forbidden else 200)
