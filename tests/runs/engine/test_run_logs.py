"""A run's log lines are captured however the process's logging was configured after it started."""
from __future__ import annotations

import logging
import logging.config

import pytest
from django.conf import settings

from stepwise.runs.engine.logs import RunLogHandler
from stepwise.runs.models import RunEvent
from stepwise.runs.triggers import run_trigger
from stepwise.runs.worker import run_attempt

pytestmark = pytest.mark.django_db(transaction=True)


def test_log_lines_are_kept_after_the_root_logger_was_reconfigured(processes):
    # What Celery's worker does to the root logger under manage.py up, or a second django.setup().
    logging.config.dictConfig(settings.LOGGING)
    assert not any(isinstance(h, RunLogHandler) for h in logging.getLogger().handlers)
    run, _ = run_trigger(task_id="test-chatty-steps", payload={"steps": 2, "sleep": 0})

    assert run_attempt(run.id).result == "completed"

    logs = list(RunEvent.objects.filter(run_id=run.id, type="log").order_by("seq").values_list("data", flat=True))
    assert [entry["message"] for entry in logs] == ["step 0 of attempt 1", "step 1 of attempt 1"]
