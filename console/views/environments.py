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

from tasks.selectors import environment_list
from tasks.services import UnknownEnvironment, environment_require


def environment_slug(request: HttpRequest) -> str:
    """Return the environment a request names: the posted ``env``, ``?env=``, or the default one."""
    return request.POST.get("env") or request.GET.get("env") or settings.STEPWISE_ENVIRONMENT


def environment_context(request: HttpRequest) -> dict[str, Any]:
    """Return the selected environment and every environment, for the tabs; 404 for an unknown one."""
    try:
        slug = environment_require(environment_slug(request))
    except UnknownEnvironment as exc:
        raise Http404(str(exc)) from None
    environments = environment_list()
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
    form: Form,
    status: int = 200,
    **extra: Any,
) -> HttpResponse:
    """Render a per-environment page: its tabs, ``rows(environment)`` and its form."""
    context = environment_context(request)
    context.update(extra, nav=nav, rows=rows(context["environment"].slug), form=form)
    return render(request, template, context, status=status)
