"""The API keys page of one environment: create (the full key shows once), list by prefix, revoke."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods, require_POST

from stepwise.console.forms import ApiKeyForm
from stepwise.console.views.access import audit, login_required
from stepwise.console.views.environments import environment_checked, environment_page, environment_url
from stepwise.console.views.feedback import action_done
from stepwise.tasks.access import Capability
from stepwise.tasks.apikeys import (
    ApiKeyNotFound,
    InvalidApiKey,
    ScopeNotAllowed,
    api_key_create,
    api_key_list,
    api_key_revoke,
)


def _page(request: HttpRequest, form: ApiKeyForm, *, status: int = 200) -> HttpResponse:
    return environment_page(request, "console/apikeys/list.html", nav="apikeys", form=form, status=status,
                            capability=Capability.ADMIN,
                            rows=lambda environment: api_key_list(environment=environment))


@login_required
@require_http_methods(["GET", "POST"])
def api_key_list_view(request: HttpRequest) -> HttpResponse:
    """Show an environment's API keys; a POST creates one and answers with its full secret, this once."""
    if request.method == "GET":
        return _page(request, ApiKeyForm())
    slug = environment_checked(request, Capability.ADMIN)
    form = ApiKeyForm(request.POST)
    if form.is_valid():
        try:
            created = api_key_create(environment=slug, name=form.cleaned_data["name"],
                                     scopes=form.cleaned_data["scopes"] or None, granted_by=request.user)
        except (InvalidApiKey, ScopeNotAllowed) as exc:
            form.add_error(None, str(exc))
        else:
            audit(request, "api_key.create", environment=slug, target=f"{created.key.id} {created.key.prefix}…",
                  data={"name": created.key.name, "scopes": created.key.scopes})
            # No redirect: the secret is in this answer only, never in a session, a cookie or a later page.
            response = render(request, "console/apikeys/created.html",
                              {"nav": "apikeys", "created": created, "environment": created.key.environment,
                               "back": environment_url("console:api-keys", slug)}, status=201)
            response["Cache-Control"] = "no-store"
            return response
    return _page(request, form, status=400)


@login_required
@require_POST
def api_key_revoke_view(request: HttpRequest, key_id: int) -> HttpResponse:
    """Revoke an API key: calls made with it are refused from now on."""
    slug = environment_checked(request, Capability.ADMIN)
    back = environment_url("console:api-keys", slug)
    try:
        key = api_key_revoke(environment=slug, key_id=key_id)
    except ApiKeyNotFound as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=404)
    audit(request, "api_key.revoke", environment=slug, target=f"{key.id} {key.prefix}…", data={"name": key.name})
    return action_done(request, message=f"Revoked API key {key.name} ({key.prefix}…).", to=back)
