"""Who may use the console and each of its actions: what the API and the websockets ask too (tasks.access)."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required as django_login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest

from stepwise.runs.models import Run
from stepwise.tasks.access import Capability, environments_where, may, may_anywhere
from stepwise.tasks.audit import actor_of_user, audit_record
from stepwise.tasks.selectors import environment_list


def login_required(view: Callable) -> Callable:
    """Require a signed-in user with a role in some environment; others get 403 (anonymous users go to sign-in)."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not may_anywhere(request.user, Capability.READ):
            raise PermissionDenied("this account has no role in any environment; ask an admin for one "
                                   "(manage.py roles grant USER viewer --env ENV)")
        return view(request, *args, **kwargs)

    return django_login_required(guarded)


def require(request: HttpRequest, environment: str, capability: Capability) -> None:
    """Refuse (403) unless the signed-in user has ``capability`` in ``environment``."""
    if not may(request.user, environment, capability):
        raise PermissionDenied(f"your role in environment '{environment}' does not allow this "
                               f"(it needs '{capability}')")


def readable_environments(request: HttpRequest) -> list[str] | None:
    """Return the environments whose runs the user may see; None means every one."""
    return environments_where(request.user, Capability.READ)


def environment_slugs_readable(request: HttpRequest) -> list[str]:
    """Return the slugs of the environments whose runs the user may see, for the environment filter."""
    readable = readable_environments(request)
    return [e.slug for e in environment_list() if readable is None or e.slug in readable]


def run_require(request: HttpRequest, run_id: str, capability: Capability) -> None:
    """Refuse (403) unless the user has ``capability`` in the run's environment; 404 for an unknown run."""
    if request.user.is_superuser:
        return  # an admin everywhere: the run's environment need not be read first
    environment = Run.objects.filter(id=run_id).values_list("environment_id", flat=True).first()
    if environment is None:
        raise Http404(f"no run with id '{run_id}'")
    require(request, environment, capability)


def audit(request: HttpRequest, action: str, *, environment: str, target: object = "",
          data: dict | None = None) -> None:
    """Record a change the signed-in user made through the console."""
    audit_record(actor=actor_of_user(request.user), action=action, environment=environment, target=target, data=data)
