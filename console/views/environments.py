"""The environment a per-environment page (schedules, secrets, API keys) shows, and its tabs."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import Http404, HttpRequest
from django.urls import reverse

from tasks.selectors import environment_list
from tasks.services import UnknownEnvironment, environment_require


def environment_slug(request: HttpRequest) -> str:
    """Return the environment a request names: the posted ``env``, ``?env=``, or the default one."""
    return request.POST.get("env") or request.GET.get("env") or settings.STEPWISE_ENVIRONMENT


def environment_context(request: HttpRequest) -> dict[str, Any]:
    """Return the selected environment and every environment, for the tabs; 404 for an unknown one."""
    try:
        environment = environment_require(environment_slug(request))
    except UnknownEnvironment as exc:
        raise Http404(str(exc)) from None
    return {"environment": environment, "environments": environment_list()}


def environment_url(name: str, slug: str) -> str:
    """Return the URL of a console page showing one environment."""
    return f"{reverse(name)}?{urlencode({'env': slug})}"
