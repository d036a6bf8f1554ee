"""The streaming endpoints under /api/: plain async views (a stream outlives a django-ninja operation)."""
from __future__ import annotations

from django.urls import path

from runs.realtime import sse

urlpatterns = [
    path("runs/stream", sse.tagged_runs_stream, name="runs-stream"),
    path("runs/<str:run_id>/events/stream", sse.run_events_stream, name="run-events-stream"),
]
