"""Websocket routes of runs."""
from __future__ import annotations

from django.urls import path

from runs.consumers import RunEventsConsumer, RunsListConsumer

websocket_urlpatterns = [
    path("ws/runs/", RunsListConsumer.as_asgi()),
    path("ws/runs/<str:run_id>/", RunEventsConsumer.as_asgi()),
]
