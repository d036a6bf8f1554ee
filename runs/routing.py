"""Websocket routes of runs, beside the console's pages: under the prefix a project includes the console at."""
from __future__ import annotations

from django.urls import URLPattern, path

from stepwise.runs.consumers import RunEventsConsumer, RunsListConsumer

# Below the console's root, as its pages are: the console at "stepwise/" has its sockets at "stepwise/ws/runs/".
RUNS_SOCKETS = "ws/runs/"


def websocket_urlpatterns_under(prefix: str) -> list[URLPattern]:
    """Return the websocket routes of runs under ``prefix``, the one the project's urls.py includes the console at.

    Example, in the project's asgi.py, beside ``path("stepwise/", include("stepwise.console.urls"))`` in urls.py::

        URLRouter(websocket_urlpatterns_under("stepwise/"))
    """
    prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    return [
        path(f"{prefix}{RUNS_SOCKETS}", RunsListConsumer.as_asgi()),
        path(f"{prefix}{RUNS_SOCKETS}<str:run_id>/", RunEventsConsumer.as_asgi()),
    ]


# The console at the root, as this repository's own project serves it.
websocket_urlpatterns = websocket_urlpatterns_under("")
