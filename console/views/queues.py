"""The queues page: concurrency limits, pause and resume, live executing and queued counts."""
from __future__ import annotations

from dataclasses import asdict

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from console.forms import QueueLimitForm
from console.views.access import login_required
from console.views.feedback import action_done
from tasks.queues import (
    MAX_LIMIT,
    InvalidQueueLimit,
    QueueNotFound,
    queue_limit_set,
    queue_list,
    queue_pause,
    queue_resume,
)


@login_required
@require_GET
def queue_list_view(request: HttpRequest) -> HttpResponse:
    """Show every queue with its limit, paused state and counts."""
    context = {"nav": "queues", "queues": queue_list(), "max_limit": MAX_LIMIT}
    return render(request, "console/queues/list.html", context)


@login_required
@require_GET
def queue_counts_view(request: HttpRequest) -> JsonResponse:
    """Return every queue's limit, paused state and counts: what the page polls."""
    return JsonResponse({"queues": [asdict(q) for q in queue_list()]})


@login_required
@require_POST
def queue_limit_view(request: HttpRequest, name: str) -> HttpResponse:
    """Set or (with an empty value) remove a queue's concurrency limit."""
    back = reverse("console:queues")
    form = QueueLimitForm(request.POST)
    if not form.is_valid():
        return action_done(request, message=form.errors["concurrency_limit"][0], to=back, ok=False, status=400)
    limit = form.cleaned_data["concurrency_limit"]
    try:
        queue_limit_set(name=name, limit=limit)
    except QueueNotFound as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=404)
    except InvalidQueueLimit as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=400)
    described = f"limited to {limit} at a time" if limit is not None else "unlimited"
    return action_done(request, message=f"Queue {name} is now {described}.", to=back)


@login_required
@require_POST
def queue_paused_view(request: HttpRequest, name: str, paused: bool) -> HttpResponse:
    """Pause a queue (executing runs finish, no new one starts) or resume it."""
    back = reverse("console:queues")
    try:
        (queue_pause if paused else queue_resume)(name=name)
    except QueueNotFound as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=404)
    verb = "paused: its queued runs wait until you resume it" if paused else "resumed"
    return action_done(request, message=f"Queue {name} {verb}.", to=back)
