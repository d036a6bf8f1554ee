"""Who may do what in an environment: roles of people, scopes of API keys, and the one function that decides.

A role applies to one environment through membership of one Django group per role and
environment, named ``stepwise:<environment>:<role>`` (``stepwise:prod:operator``). Superusers
are admins of every environment; ``is_staff`` only opens Django's admin. An API key holds an
environment and a set of scopes. Both come down to capabilities, and ``may`` is the question
the console, the REST API and the websockets all ask.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.db.models import Q

from stepwise.runs.engine.errors import StepwiseError
from stepwise.tasks.models import ApiKey, Environment


class Capability(StrEnum):
    """What an action needs; API key scopes are named after these."""

    READ = "read"  # runs, their payloads and outputs (unless payloads_hidden), tasks, waitpoints, queues, schedules
    TRIGGER = "trigger"  # start runs (the API, the Test form), send events
    OPERATE = "operate"  # cancel, replay, approve/reject/complete waitpoints, reset idempotency keys
    ADMIN = "admin"  # queues, schedules, secrets, API keys, webhook secrets, members, the audit log


class Role(StrEnum):
    """A person's role in one environment; each holds the capabilities of the one before it."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


ROLE_CAPABILITIES: dict[Role, frozenset[Capability]] = {
    Role.VIEWER: frozenset({Capability.READ}),
    Role.OPERATOR: frozenset({Capability.READ, Capability.TRIGGER, Capability.OPERATE}),
    Role.ADMIN: frozenset(Capability),
}
# Django permissions each role's groups carry, for the admin site and has_perm() in the user's own code;
# access itself is decided per environment by group membership.
ROLE_PERMISSIONS: dict[Role, tuple[str, ...]] = {
    Role.VIEWER: ("stepwise_runs.view_run", "stepwise_runs.view_waitpoint", "stepwise_tasks.view_queue",
                  "stepwise_tasks.view_schedule"),
    Role.OPERATOR: ("stepwise_runs.change_run", "stepwise_runs.change_waitpoint"),
    Role.ADMIN: ("stepwise_tasks.change_queue", "stepwise_tasks.add_schedule", "stepwise_tasks.change_schedule",
                 "stepwise_tasks.delete_schedule", "stepwise_tasks.view_secret", "stepwise_tasks.add_secret",
                 "stepwise_tasks.change_secret", "stepwise_tasks.delete_secret", "stepwise_tasks.view_apikey",
                 "stepwise_tasks.add_apikey", "stepwise_tasks.change_apikey", "stepwise_tasks.view_auditentry"),
}
SCOPES = tuple(c.value for c in Capability)
DEFAULT_SCOPES = (Capability.READ.value, Capability.TRIGGER.value)
GROUP_PREFIX = "stepwise"
_ROLE_ORDER = list(Role)
ROLE_NAMES = frozenset(r.value for r in Role)


class InvalidRole(StepwiseError):
    """A grant names an unknown user, role or environment; nothing changed."""


def role_group_name(environment: str, role: Role | str) -> str:
    """Return the name of the Django group that gives ``role`` in ``environment``."""
    return f"{GROUP_PREFIX}:{environment}:{role}"


def role_permissions(role: Role) -> list[str]:
    """Return the ``app.codename`` permissions a role's groups carry (its own and those of the roles below)."""
    return [p for r in _ROLE_ORDER[: _ROLE_ORDER.index(role) + 1] for p in ROLE_PERMISSIONS[r]]


def role_permissions_q(role: Role) -> Q:
    """Return the filter of ``Permission`` rows a role's groups carry."""
    wanted = Q(pk__in=[])
    for permission in role_permissions(role):
        app_label, codename = permission.split(".", 1)
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    return wanted


def _group_role(name: str) -> tuple[str, Role] | None:
    """Return the environment and role a group name gives (``stepwise:prod:operator``), or None."""
    parts = name.split(":")
    if len(parts) != 3 or parts[0] != GROUP_PREFIX or parts[2] not in ROLE_NAMES:
        return None
    return parts[1], Role(parts[2])


def _user_roles(user: Any) -> dict[str, Role]:
    """Return a user's best role per environment, read once per user object (one query)."""
    cached = getattr(user, "_stepwise_roles", None)
    if cached is None:
        cached = {}
        for name in user.groups.filter(name__startswith=f"{GROUP_PREFIX}:").values_list("name", flat=True):
            parsed = _group_role(name)
            if parsed is None:
                continue
            environment, role = parsed
            if environment not in cached or _ROLE_ORDER.index(role) > _ROLE_ORDER.index(cached[environment]):
                cached[environment] = role
        user._stepwise_roles = cached
    return cached


def capabilities(actor: Any, environment: str) -> frozenset[Capability]:
    """Return what a user or an API key may do in an environment."""
    if isinstance(actor, ApiKey):
        if actor.environment_id != environment or actor.revoked_at is not None:
            return frozenset()
        return frozenset(Capability(s) for s in actor.scopes if s in SCOPES)
    # Anything else (a realtime public token, whose scopes stepwise.runs.realtime.readers checks) has no
    # capability here.
    if actor is None or not getattr(actor, "is_authenticated", False) or not actor.is_active:
        return frozenset()
    if actor.is_superuser:
        return ROLE_CAPABILITIES[Role.ADMIN]
    role = _user_roles(actor).get(environment)
    return ROLE_CAPABILITIES[role] if role else frozenset()


def may(actor: Any, environment: str, capability: Capability | str) -> bool:
    """Tell whether a user or an API key may do what ``capability`` covers in ``environment``."""
    return Capability(capability) in capabilities(actor, environment)


def payloads_hidden(actor: Any, environment: str) -> bool:
    """Tell whether run payloads, outputs and step results of ``environment`` are hidden from ``actor``.

    Hidden in the environments STEPWISE_PAYLOADS_HIDDEN_FROM_VIEWERS lists, from whoever may not
    operate or administer runs there: a viewer, an API key without those scopes, a public token.
    ``None`` is Stepwise itself (a worker, the server's own CLI): it always reads what is stored.
    """
    if actor is None or environment not in settings.STEPWISE_PAYLOADS_HIDDEN_FROM_VIEWERS:
        return False
    return not capabilities(actor, environment) & {Capability.OPERATE, Capability.ADMIN}


def environments_where(actor: Any, capability: Capability | str) -> list[str] | None:
    """Return the environments in which a user or an API key has a capability; None means all (superusers)."""
    capability = Capability(capability)
    if isinstance(actor, ApiKey):
        return [actor.environment_id] if may(actor, actor.environment_id, capability) else []
    if actor is None or not actor.is_authenticated or not actor.is_active:
        return []
    if actor.is_superuser:
        return None
    return sorted(env for env in _user_roles(actor) if may(actor, env, capability))


def may_anywhere(actor: Any, capability: Capability | str) -> bool:
    """Tell whether a user or an API key has a capability in at least one environment."""
    return environments_where(actor, capability) != []


@dataclass(frozen=True)
class Grant:
    """One person's role in one environment."""

    username: str
    environment: str
    role: Role


def role_group_ensure(environment: str, role: Role) -> Group:
    """Return the group of a role in an environment, creating it with its permissions."""
    group, created = Group.objects.get_or_create(name=role_group_name(environment, role))
    if created:
        group.permissions.set(Permission.objects.filter(role_permissions_q(role)))
    return group


def _parse(username: str, role: str, environment: str) -> tuple[Any, Role]:
    if role not in ROLE_NAMES:
        raise InvalidRole(f"unknown role '{role}' (roles: {', '.join(r.value for r in Role)})")
    if not Environment.objects.filter(slug=environment).exists():
        raise InvalidRole(f"unknown environment '{environment}'")
    user = get_user_model().objects.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    if user is None:
        raise InvalidRole(f"no user named '{username}'")
    return user, Role(role)


def role_grant(*, username: str, role: str, environment: str) -> Grant:
    """Give a user a role in an environment, replacing the role they had there."""
    user, role = _parse(username, role, environment)
    with transaction.atomic():
        user.groups.remove(*Group.objects.filter(name__in=[role_group_name(environment, r) for r in Role]))
        user.groups.add(role_group_ensure(environment, role))
    return Grant(username=username, environment=environment, role=role)


def role_revoke(*, username: str, environment: str) -> Grant | None:
    """Take away a user's role in an environment; return what they had (None if nothing)."""
    user, _ = _parse(username, Role.VIEWER, environment)
    had = _user_roles(user).get(environment)
    user.groups.remove(*Group.objects.filter(name__in=[role_group_name(environment, r) for r in Role]))
    return Grant(username=username, environment=environment, role=had) if had else None


def role_list(*, environment: str | None = None) -> list[Grant]:
    """Return every grant, by environment then user (superusers are admins everywhere and not listed)."""
    prefix = f"{GROUP_PREFIX}:{environment}:" if environment else f"{GROUP_PREFIX}:"
    grants = []
    for group in Group.objects.filter(name__startswith=prefix).prefetch_related("user_set"):
        parsed = _group_role(group.name)
        if parsed is None:
            continue
        environment_of, role = parsed
        grants += [Grant(username=u.get_username(), environment=environment_of, role=role)
                   for u in group.user_set.all()]
    return sorted(grants, key=lambda g: (g.environment, g.username))
