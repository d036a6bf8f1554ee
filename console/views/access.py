"""Who may use the console: signed-in staff, or users granted ``runs.view_run`` (as for the websockets)."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.decorators import login_required as django_login_required
from django.core.exceptions import PermissionDenied

from runs.selectors import user_can_view_runs


def login_required(view: Callable) -> Callable:
    """Require a signed-in user who may watch runs; others get 403 (anonymous users go to sign-in)."""

    @wraps(view)
    def guarded(request, *args, **kwargs):
        if not user_can_view_runs(request.user):
            raise PermissionDenied("this account may not use the console; ask for the runs.view_run permission")
        return view(request, *args, **kwargs)

    return django_login_required(guarded)
