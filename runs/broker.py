"""What the broker holds: how many hints wait in our Celery queue (Redis only)."""
from __future__ import annotations

import logging

from celery import Celery
from django.conf import settings

from stepwise.runs.celery_app import celery_app

logger = logging.getLogger(__name__)
# kombu's Redis transport keeps one list per priority step (its default steps, or the
# transport's "priority_steps" option), named "<queue>\x06\x16<step>" (step 0: "<queue>").
_DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
_SEPARATOR = "\x06\x16"


def broker_backlog() -> int | None:
    """Return how many messages wait in the default Celery queue, or None if it cannot tell."""
    if not settings.REDIS_URL:
        return None
    app = celery_app()
    queue = _default_queue(app)
    steps = (app.conf.broker_transport_options or {}).get("priority_steps") or _DEFAULT_PRIORITY_STEPS
    keys = [queue if step == 0 else f"{queue}{_SEPARATOR}{step}" for step in steps]
    try:
        with app.connection_for_write() as conn:
            client = conn.default_channel.client
            return sum(client.llen(key) for key in keys)
    except Exception:
        logger.warning("could not read the broker backlog")
        return None


def broker_lost_messages() -> bool:
    """Tell whether the broker lost the messages it held since the last look: it restarted empty, or was flushed.

    A marker key lives in the broker beside the hints, so it shares their fate: when it is gone,
    so are they. This process's first look only sets it (it cannot tell what came before).
    """
    global _marker_seen
    if not settings.REDIS_URL:
        return False
    app = celery_app()
    marker = f"stepwise:broker-marker:{_default_queue(app)}"
    try:
        with app.connection_for_write() as conn:
            missing = bool(conn.default_channel.client.set(marker, "1", nx=True))
    except Exception:  # the broker is down: nothing can be re-sent now anyway
        return False
    lost, _marker_seen = missing and _marker_seen, True
    return lost


_marker_seen = False


def _default_queue(app: Celery) -> str:
    # The CELERY_-prefixed key shadows task_default_queue once Django's settings are loaded (and the bench
    # and chaos commands set it for their private queue); a project may set neither.
    return app.conf.get("CELERY_TASK_DEFAULT_QUEUE") or app.conf.task_default_queue
