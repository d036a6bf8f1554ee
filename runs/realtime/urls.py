"""Endpoints under /api/ that are plain views: streams (they outlive a django-ninja operation) and token callbacks."""
from __future__ import annotations

from django.urls import path

from stepwise.runs.realtime import callbacks, sse

urlpatterns = [
    path("runs/stream", sse.runs_stream, name="runs-stream"),
    path("runs/<str:run_id>/events/stream", sse.run_events_stream, name="run-events-stream"),
    path("waitpoints/<str:waitpoint_id>/callback/<str:signature>", callbacks.waitpoint_callback,
         name="waitpoint-callback"),
]
