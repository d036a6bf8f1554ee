"""The members page of one environment: who has which role there; its admins grant, change and remove roles."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods, require_POST

from stepwise.console.forms import MemberForm
from stepwise.console.views.access import audit, login_required
from stepwise.console.views.environments import environment_checked, environment_page, environment_url
from stepwise.console.views.feedback import action_done
from stepwise.tasks.access import Capability, InvalidRole, role_grant, role_list, role_revoke


def _page(request: HttpRequest, form: MemberForm, *, status: int = 200) -> HttpResponse:
    return environment_page(request, "console/members/list.html", nav="members", form=form, status=status,
                            capability=Capability.ADMIN, rows=lambda environment: role_list(environment=environment))


@login_required
@require_http_methods(["GET", "POST"])
def member_list_view(request: HttpRequest) -> HttpResponse:
    """Show an environment's members; a POST gives a user a role there (replacing the one they had)."""
    if request.method == "GET":
        return _page(request, MemberForm())
    slug = environment_checked(request, Capability.ADMIN)
    form = MemberForm(request.POST)
    if form.is_valid():
        try:
            grant = role_grant(environment=slug, **form.cleaned_data)
        except InvalidRole as exc:
            form.add_error(None, str(exc))
        else:
            audit(request, "role.grant", environment=slug, target=grant.username, data={"role": grant.role.value})
            return action_done(request, message=f"{grant.username} is now {grant.role} in {slug}.",
                               to=environment_url("console:members", slug))
    return _page(request, form, status=400)


@login_required
@require_POST
def member_remove_view(request: HttpRequest, username: str) -> HttpResponse:
    """Take away a user's role in an environment."""
    slug = environment_checked(request, Capability.ADMIN)
    back = environment_url("console:members", slug)
    try:
        had = role_revoke(username=username, environment=slug)
    except InvalidRole as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=404)
    if had is not None:
        audit(request, "role.revoke", environment=slug, target=username, data={"role": had.role.value})
    return action_done(request, message=f"{username} no longer has a role in {slug}.", to=back)
