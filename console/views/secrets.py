"""The secrets page of one environment: names, masked values, set and delete. Values are never rendered."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods, require_POST

from stepwise.console.forms import SecretForm
from stepwise.console.views.access import audit, login_required
from stepwise.console.views.environments import environment_checked, environment_page, environment_url
from stepwise.console.views.feedback import action_done
from stepwise.tasks.access import Capability
from stepwise.tasks.secrets import InvalidSecret, SecretNotFound, secret_delete, secret_list, secret_set


def _page(request: HttpRequest, form: SecretForm, *, status: int = 200) -> HttpResponse:
    return environment_page(request, "console/secrets/list.html", nav="secrets", form=form, status=status,
                            capability=Capability.ADMIN,
                            rows=lambda environment: secret_list(environment=environment))


@login_required
@require_http_methods(["GET", "POST"])
def secret_list_view(request: HttpRequest) -> HttpResponse:
    """Show an environment's secrets, masked; a POST creates or overwrites one."""
    if request.method == "GET":
        return _page(request, SecretForm())
    slug = environment_checked(request, Capability.ADMIN)
    form = SecretForm(request.POST)
    if form.is_valid():
        try:
            secret = secret_set(environment=slug, **form.cleaned_data)
        except InvalidSecret as exc:
            form.add_error(None, str(exc))
        else:
            audit(request, "secret.set", environment=slug, target=secret.name)
            return action_done(request, message=f"Saved secret {secret.name} in {slug}.",
                               to=environment_url("console:secrets", slug))
    # The form renders again without the value: a password input never echoes it.
    return _page(request, form, status=400)


@login_required
@require_POST
def secret_delete_view(request: HttpRequest, name: str) -> HttpResponse:
    """Delete a secret; runs that start afterwards no longer see it."""
    slug = environment_checked(request, Capability.ADMIN)
    back = environment_url("console:secrets", slug)
    try:
        secret_delete(environment=slug, name=name)
    except SecretNotFound as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=404)
    audit(request, "secret.delete", environment=slug, target=name)
    return action_done(request, message=f"Deleted secret {name} from {slug}.", to=back)
