"""What the broker holds: how many hints wait in our Celery queue (Redis only)."""
from __future__ import annotations

import logging

from celery import current_app as app
from django.conf import settings

logger = logging.getLogger(__name__)
# kombu's Redis transport keeps one list per priority step, named "<queue>\x06\x16<step>".
_PRIORITY_STEPS = (0, 3, 6, 9)
_SEPARATOR = "\x06\x16"


def broker_backlog() -> int | None:
    """Return how many messages wait in the default Celery queue, or None if it cannot tell."""
    if not settings.REDIS_URL:
        return None
    queue = app.conf.task_default_queue
    keys = [queue if step == 0 else f"{queue}{_SEPARATOR}{step}" for step in _PRIORITY_STEPS]
    try:
        with app.connection_for_write() as conn:
            client = conn.default_channel.client
            return sum(client.llen(key) for key in keys)
    except Exception:
        logger.warning("could not read the broker backlog")
        return None
