"""A task declaring its schedule in code (imported by the schedule tests only)."""
from __future__ import annotations

from stepwise.tasks.sdk import task


@task(id="test-hourly-paris", cron="0 * * * *", timezone="Europe/Paris")
def hourly_paris(payload, ctx):
    return payload
