"""What the broker holds: how many hints wait in our Celery queue (Redis only)."""
from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from celery import Celery
from django.conf import settings

from stepwise.runs.celery_app import celery_app

logger = logging.getLogger(__name__)
# kombu's Redis transport keeps one list per priority step (its default steps, or the
# transport's "priority_steps" option), named "<queue>\x06\x16<step>" (step 0: "<queue>").
_DEFAULT_PRIORITY_STEPS = (0, 3, 6, 9)
_SEPARATOR = "\x06\x16"


def priority_lists(queue: str, steps: Iterable[int] = range(10)) -> list[str]:
    """Return the Redis lists kombu keeps for a queue, one per priority step (ten by default, as configured)."""
    return [queue if step == 0 else f"{queue}{_SEPARATOR}{step}" for step in steps]


def broker_backlog() -> int | None:
    """Return how many messages wait in the default Celery queue, or None if it cannot tell."""
    waiting = broker_waiting()
    return None if waiting is None else sum(waiting.values())


def broker_waiting(queue: str | None = None) -> dict[int, int] | None:
    """Return how many messages wait in a Celery queue (the app's default one) per broker priority, or None.

    A worker takes a message of the lowest priority number first. None when it cannot tell:
    no Redis broker, or Redis did not answer.
    """
    if not settings.REDIS_URL:
        return None
    app = celery_app()
    queue = queue or _default_queue(app)
    steps = list((app.conf.broker_transport_options or {}).get("priority_steps") or _DEFAULT_PRIORITY_STEPS)
    try:
        with _broker_client(app) as client:
            pipe = client.pipeline(transaction=False)  # one round trip for the lists of every priority
            for key in priority_lists(queue, steps):
                pipe.llen(key)
            return dict(zip(steps, pipe.execute(), strict=True))
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
        with _broker_client(app) as client:
            missing = bool(client.set(marker, "1", nx=True))
    except Exception:  # the broker is down: nothing can be re-sent now anyway
        return False
    lost, _marker_seen = missing and _marker_seen, True
    return lost


_marker_seen = False


@contextmanager
def _broker_client(app: Celery) -> Iterator[Any]:
    """Yield a Redis client on one of the app's pooled broker connections.

    The scheduler looks every pass: a connection made and closed each time cost it more CPU than
    the rest of an idle pass. A connection the broker dropped is made again by the client.
    """
    with app.pool.acquire(block=True) as conn:
        yield conn.default_channel.client


def _default_queue(app: Celery) -> str:
    # The CELERY_-prefixed key shadows task_default_queue once Django's settings are loaded (and the bench
    # and chaos commands set it for their private queue); a project may set neither.
    return app.conf.get("CELERY_TASK_DEFAULT_QUEUE") or app.conf.task_default_queue
