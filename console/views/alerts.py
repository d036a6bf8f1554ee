"""The alerts page of one environment: its rules, a form for a new one, and the latest notifications."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_http_methods, require_POST

from stepwise.console.alert_forms import CONDITION_LABELS, AlertRuleForm
from stepwise.console.views.access import audit, login_required
from stepwise.console.views.environments import environment_checked, environment_page, environment_url
from stepwise.console.views.feedback import action_done
from stepwise.runs.alerts import alert_test_send
from stepwise.tasks.access import Capability
from stepwise.tasks.alerts import (
    AlertRuleNotFound,
    InvalidAlertRule,
    alert_delivery_list,
    alert_rule_create,
    alert_rule_delete,
    alert_rule_get,
    alert_rule_list,
)


def _page(request: HttpRequest, form: AlertRuleForm, *, status: int = 200, **extra) -> HttpResponse:
    return environment_page(
        request, "console/alerts/list.html", nav="alerts", form=form, status=status, capability=Capability.ADMIN,
        rows=lambda environment: {"rules": alert_rule_list(environment=environment),
                                  "deliveries": alert_delivery_list(environment=environment, limit=20)},
        condition_labels=CONDITION_LABELS, **extra,
    )


@login_required
@require_http_methods(["GET", "POST"])
def alert_list_view(request: HttpRequest) -> HttpResponse:
    """Show an environment's alert rules and latest notifications; a POST creates a rule."""
    if request.method == "GET":
        return _page(request, AlertRuleForm())
    slug = environment_checked(request, Capability.ADMIN)
    form = AlertRuleForm(request.POST)
    if form.is_valid():
        try:
            saved = alert_rule_create(environment=slug, **form.rule_fields())
        except InvalidAlertRule as exc:
            form.add_error(None, str(exc))
        else:
            audit(request, "alert.create", environment=slug, target=saved.rule.id,
                  data={"name": saved.rule.name, "conditions": saved.rule.conditions})
            if saved.webhook_secret is None:
                return action_done(request, message=f"Alert rule {saved.rule.name} created.",
                                   to=environment_url("console:alerts", slug))
            # The signing secret is shown on this answer only: never stored in clear, never in a flash message.
            return _page(request, AlertRuleForm(), status=201, created=saved)
    return _page(request, form, status=400)


@login_required
@require_POST
def alert_delete_view(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Delete a rule with its incidents and undelivered notifications."""
    slug = environment_checked(request, Capability.ADMIN)
    back = environment_url("console:alerts", slug)
    try:
        alert_rule_delete(environment=slug, rule_id=rule_id)
    except AlertRuleNotFound as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=404)
    audit(request, "alert.delete", environment=slug, target=rule_id)
    return action_done(request, message="Alert rule deleted.", to=back)


@login_required
@require_POST
def alert_test_view(request: HttpRequest, rule_id: int) -> HttpResponse:
    """Send a test notification to each channel of a rule."""
    slug = environment_checked(request, Capability.ADMIN)
    back = environment_url("console:alerts", slug)
    try:
        rule = alert_rule_get(environment=slug, rule_id=rule_id)
    except AlertRuleNotFound as exc:
        return action_done(request, message=str(exc), to=back, ok=False, status=404)
    queued = alert_test_send(rule)
    audit(request, "alert.test", environment=slug, target=rule_id)
    return action_done(request, message=f"Test notification queued on {queued} channel{'s' if queued != 1 else ''}: "
                                        "it goes out within seconds (see Latest notifications).", to=back)
