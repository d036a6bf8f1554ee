"""The environment a per-environment page (schedules, secrets, API keys) shows, and its tabs."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from stepwise.console.views.access import require
from stepwise.tasks.access import Capability, environments_where
from stepwise.tasks.selectors import environment_list
from stepwise.tasks.services import UnknownEnvironment, environment_require


def environment_checked(request: HttpRequest, capability: Capability) -> str:
    """Return the environment a request names if the user has ``capability`` there; 404 if unknown, else 403."""
    named = request.POST.get("env") or request.GET.get("env")
    if not named:  # the default one, or else the first the user may see this page of
        allowed = environments_where(request.user, capability)
        default = settings.STEPWISE_ENVIRONMENT
        named = default if allowed is None or default in allowed or not allowed else allowed[0]
    try:
        slug = environment_require(named)
    except UnknownEnvironment as exc:
        raise Http404(str(exc)) from None
    require(request, slug, capability)
    return slug


def environment_context(request: HttpRequest, capability: Capability) -> dict[str, Any]:
    """Return the selected environment and the environments the user may see this page of, for the tabs."""
    slug = environment_checked(request, capability)
    allowed = environments_where(request.user, capability)
    environments = [e for e in environment_list() if allowed is None or e.slug in allowed]
    return {"environment": next(e for e in environments if e.slug == slug), "environments": environments}


def environment_url(name: str, slug: str) -> str:
    """Return the URL of a console page showing one environment."""
    return f"{reverse(name)}?{urlencode({'env': slug})}"


def environment_page(
    request: HttpRequest,
    template: str,
    *,
    nav: str,
    rows: Callable[[str], Any],
    form: Form | None,
    capability: Capability,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    """Render a per-environment page the user has ``capability`` in: its tabs, ``rows(environment)``, its form."""
    context = environment_context(request, capability)
    context.update(extra, nav=nav, rows=rows(context["environment"].slug), form=form)
    return render(request, template, context, status=status)
