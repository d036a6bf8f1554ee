"""Pausing and resuming a whole environment from the queues page (admins)."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_POST

from stepwise.console.views.access import audit, login_required
from stepwise.console.views.environments import environment_checked, environment_url
from stepwise.console.views.feedback import action_done
from stepwise.tasks.access import Capability
from stepwise.tasks.environments import EnvironmentPauseRefused, environment_pause, environment_resume


@login_required
@require_POST
def environment_paused_view(request: HttpRequest, paused: bool) -> HttpResponse:
    """Pause every queue of an environment (new ones too), or resume it to how its queues were."""
    slug = environment_checked(request, Capability.ADMIN)
    back = environment_url("console:queues", slug)
    try:
        (environment_pause if paused else environment_resume)(environment=slug)
    except EnvironmentPauseRefused as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=409)
    audit(request, "environment.pause" if paused else "environment.resume", environment=slug, target=slug)
    if paused:
        return action_done(request, message=f"Environment {slug} paused: no run of it starts until you resume it.",
                           to=back)
    return action_done(request, message=f"Environment {slug} resumed; its queues are as they were before.", to=back)
