"""The queues page of one environment: concurrency limits, pause and resume, live executing and queued counts."""
from __future__ import annotations

from dataclasses import asdict

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET, require_POST

from stepwise.console.forms import QueueLimitForm
from stepwise.console.views.access import audit, login_required
from stepwise.console.views.environments import environment_checked, environment_page, environment_url
from stepwise.console.views.feedback import action_done
from stepwise.tasks.access import Capability
from stepwise.tasks.queues import (
    MAX_LIMIT,
    InvalidQueueLimit,
    QueueChangeRefused,
    QueueNotFound,
    queue_get,
    queue_limit_set,
    queue_list,
    queue_pause,
    queue_rate_set,
    queue_resume,
    rate_parse,
    rate_text,
)


@login_required
@require_GET
def queue_list_view(request: HttpRequest) -> HttpResponse:
    """Show an environment's queues with their limit, paused state and counts."""
    return environment_page(request, "console/queues/list.html", nav="queues", form=None, capability=Capability.READ,
                            rows=lambda environment: queue_list(environment=environment), max_limit=MAX_LIMIT)


@login_required
@require_GET
def queue_counts_view(request: HttpRequest) -> JsonResponse:
    """Return an environment's queues with limit, paused state and counts: what the page polls."""
    slug = environment_checked(request, Capability.READ)
    return JsonResponse({"queues": [asdict(q) for q in queue_list(environment=slug)]})


@login_required
@require_POST
def queue_limit_view(request: HttpRequest, name: str) -> HttpResponse:
    """Set or (with an empty value) remove a queue's limits: per concurrency key, in total, and its rate."""
    slug = environment_checked(request, Capability.ADMIN)
    back = environment_url("console:queues", slug)
    form = QueueLimitForm(request.POST)
    if not form.is_valid():
        first = next(iter(form.errors.values()))[0]
        return action_done(request, message=first, to=back, ok=False, status=400)
    limit, total = form.cleaned_data["concurrency_limit"], form.cleaned_data["total_limit"]
    rate = form.cleaned_data["rate_limit"] or None
    try:
        parsed = rate_parse(rate)  # checked before anything changes
        with transaction.atomic():
            queue = queue_limit_set(environment=slug, name=name, limit=limit, total=total)
            if rate_text(*(parsed or (None, None))) != rate_text(queue.rate_limit, queue.rate_period):
                queue_rate_set(environment=slug, name=name, rate=rate)  # unchanged, its pacing goes on
    except QueueNotFound as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=404)
    except InvalidQueueLimit as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=400)
    audit(request, "queue.limit", environment=slug, target=name,
          data={"concurrency_limit": limit, "total_limit": total, "rate_limit": rate})
    stats = queue_get(environment=slug, name=name)
    said = [f"{stats.concurrency_limit} at a time per key" if stats.concurrency_limit is not None else "",
            f"{stats.total_limit} in all" if stats.total_limit is not None else "",
            f"rate {stats.rate_limit}" if stats.rate_limit else ""]
    described = ", ".join(part for part in said if part) or "unlimited"
    return action_done(request, message=f"Queue {name} is now {described}.", to=back)


@login_required
@require_POST
def queue_paused_view(request: HttpRequest, name: str, paused: bool) -> HttpResponse:
    """Pause a queue (executing runs finish, no new one starts) or resume it."""
    slug = environment_checked(request, Capability.ADMIN)
    back = environment_url("console:queues", slug)
    try:
        (queue_pause if paused else queue_resume)(environment=slug, name=name)
    except QueueNotFound as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=404)
    except QueueChangeRefused as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=409)
    audit(request, "queue.pause" if paused else "queue.resume", environment=slug, target=name)
    verb = "paused: its queued runs wait until you resume it" if paused else "resumed"
    return action_done(request, message=f"Queue {name} {verb}.", to=back)
