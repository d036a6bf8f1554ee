"""Actions on runs: cancel, retry, replay with an edited payload, the bulk versions, and resetting a run's key."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from console.forms import BulkActionForm, PayloadForm
from console.views.access import login_required
from console.views.feedback import action_done, next_url
from runs.engine.errors import StepwiseError
from runs.idempotency import run_idempotency_key_reset
from runs.services import run_cancel, run_replay


@login_required
@require_POST
def run_cancel_view(request: HttpRequest, run_id: str) -> HttpResponse:
    """Cancel a run."""
    to = reverse("console:run", args=[run_id])
    try:
        run_cancel(run_id=run_id, reason=f"canceled by {request.user.get_username()}")
    except StepwiseError as exc:
        return action_done(request, message=str(exc), to=to, ok=False, status=409)
    return action_done(request, message=f"Run {run_id} canceled.", to=to)


@login_required
@require_POST
def run_replay_view(request: HttpRequest, run_id: str) -> HttpResponse:
    """Start a new run from this one: the same payload (retry) or an edited one (replay)."""
    here = reverse("console:run", args=[run_id])
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
    verb = "Retried" if payload is ... else "Replayed"
    return action_done(request, message=f"{verb} as {new_run.id}.", to=reverse("console:run", args=[new_run.id]))


@login_required
@require_POST
def run_idempotency_key_reset_view(request: HttpRequest, run_id: str) -> HttpResponse:
    """Free the idempotency key this run holds: the next trigger with it starts a new run."""
    to = reverse("console:run", args=[run_id])
    try:
        run = run_idempotency_key_reset(run_id=run_id, actor=request.user.get_username())
    except StepwiseError as exc:
        return action_done(request, message=str(exc), to=to, ok=False, status=409)
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
    action, done, problems = form.cleaned_data["action"], 0, []
    for run_id in form.cleaned_data["run_ids"]:
        try:
            if action == "cancel":
                run_cancel(run_id=run_id, reason=f"canceled by {request.user.get_username()}")
            else:
                run_replay(run_id=run_id)
            done += 1
        except StepwiseError as exc:
            problems.append(str(exc))
    verb = "Canceled" if action == "cancel" else "Replayed"
    message = f"{verb} {done} run{'s' if done != 1 else ''}."
    if problems:
        message += f" {len(problems)} skipped: {problems[0]}" + (" …" if len(problems) > 1 else "")
    return action_done(request, message=message, to=back, ok=done > 0 or not problems)
