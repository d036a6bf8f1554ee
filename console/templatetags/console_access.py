"""Template tags asking what the signed-in user may do, so pages hide what their role does not allow."""
from __future__ import annotations

from django import template

from stepwise.tasks.access import may, may_anywhere, payloads_hidden

register = template.Library()


@register.simple_tag(takes_context=True)
def may_do(context, capability: str, environment: str) -> bool:
    """``{% may_do "operate" run.environment_id as can_operate %}``."""
    return may(context["request"].user, environment, capability)


@register.simple_tag(takes_context=True)
def may_do_anywhere(context, capability: str) -> bool:
    """``{% may_do_anywhere "admin" as is_admin_somewhere %}``."""
    return may_anywhere(context["request"].user, capability)


@register.simple_tag(takes_context=True)
def payloads_hidden_from_me(context, environment: str) -> bool:
    """``{% payloads_hidden_from_me run.environment_id as hidden %}``: the run's values are hidden from this user."""
    return payloads_hidden(context["request"].user, environment)
