"""The Celery application: carries "run this now" hints from triggers to workers."""
from __future__ import annotations

import os

from celery import Celery
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")

app = Celery("stepwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["runs"], related_name="worker")


@worker_ready.connect
def _wake_thread_pool(sender=None, **kwargs) -> None:
    """Tick the threads pool's event loop often, so a freed thread takes the next message at once.

    The threads pool otherwise notices a finished task only on the next network event,
    seconds later (celery/celery#6941); the embedded default runs that pool.
    """
    from celery.concurrency.thread import TaskPool as ThreadTaskPool

    if sender is not None and isinstance(getattr(sender, "pool", None), ThreadTaskPool):
        sender.timer.call_repeatedly(0.05, _noop)


def _noop() -> None:
    """Do nothing: the timer entry itself is what wakes the loop."""


@celeryd_after_setup.connect
def _serve_own_versions(sender=None, instance=None, **kwargs) -> None:
    """Before the first hint: consume the queues of the versions of task code this worker holds, and announce them."""
    from runs.worker import worker_versions_serve

    worker_versions_serve(instance.app)


@worker_shutdown.connect
def _leave(sender=None, **kwargs) -> None:
    """Say that this worker's versions are no longer running here."""
    from runs.worker import worker_versions_leave

    worker_versions_leave()
