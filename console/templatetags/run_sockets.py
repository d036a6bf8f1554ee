"""Where the live pages open their websockets: below the console's root, under whatever prefix it is included at."""
from __future__ import annotations

from django import template
from django.urls import reverse

from stepwise.runs.routing import RUNS_SOCKETS

register = template.Library()


@register.simple_tag
def runs_socket_path(run_id: str = "") -> str:
    """Return the path of the runs list's websocket, or of one run's when ``run_id`` is given."""
    return f"{reverse('console:runs')}{RUNS_SOCKETS}{f'{run_id}/' if run_id else ''}"
