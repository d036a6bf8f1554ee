"""The audit log: who changed what, when, through which door (console, API, CLI) and with which key or session.

Entries are only ever added: the model refuses ``save()`` of an existing entry and ``delete()``,
its QuerySet refuses ``update()`` and ``delete()``, and on PostgreSQL a trigger refuses UPDATE
and DELETE of its rows from any client.
"""
from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

from stepwise.tasks.models import AuditEntry

VIA_CONSOLE = "console"
VIA_API = "api"
VIA_CLI = "cli"


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a person (console session, API session, CLI) or an API key."""

    name: str
    via: str
    user_id: int | None = None
    api_key_id: int | None = None


def actor_of_user(user: Any, *, via: str = VIA_CONSOLE) -> Actor:
    """Return a signed-in user as the audit log names them."""
    return Actor(name=user.get_username(), via=via, user_id=user.pk)


def actor_of_cli() -> Actor:
    """Return whoever runs a management command: the operating system's user."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        name = "unknown"
    return Actor(name=f"cli:{name}"[:150], via=VIA_CLI)


def audit_record(*, actor: Actor, action: str, environment: str = "", target: Any = "",
                 data: dict[str, Any] | None = None) -> AuditEntry:
    """Append one entry: ``action`` is ``<thing>.<verb>`` (``queue.pause``), ``target`` what it was done to."""
    return AuditEntry.objects.create(
        environment=environment or "", actor=actor.name[:150], user_id=actor.user_id, api_key_id=actor.api_key_id,
        via=actor.via, action=action, target=str(target)[:255], data=data or {},
    )


def audit_list(*, environment: str | None = None, before: int | None = None, limit: int = 100) -> list[AuditEntry]:
    """Return entries newest first, of one environment or of all."""
    qs = AuditEntry.objects.all()
    if environment is not None:
        qs = qs.filter(environment=environment)
    if before is not None:
        qs = qs.filter(id__lt=before)
    return list(qs.order_by("-id")[:limit])
