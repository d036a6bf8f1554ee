"""The Celery application: carries "run this now" hints from triggers to workers."""
from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepwise.console.settings")

app = Celery("stepwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
# The engine's Celery tasks and worker signals (stepwise.runs.worker) load with the runs app, in any Celery app.
