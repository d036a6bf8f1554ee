"""Give a test user a role the way the Django admin does: membership of the role's group of one environment."""
from __future__ import annotations

from django.contrib.auth.models import Group, Permission


def grant(user, environment: str, role: str) -> None:
    """Add ``user`` to the group ``stepwise:<environment>:<role>``.

    The group carries ``runs.view_run`` as the role groups do, so a test also shows that the
    permission alone (what let anyone do anything before roles) no longer decides.
    """
    group, _ = Group.objects.get_or_create(name=f"stepwise:{environment}:{role}")
    group.permissions.add(Permission.objects.get(content_type__app_label="stepwise_runs", codename="view_run"))
    user.groups.add(group)
