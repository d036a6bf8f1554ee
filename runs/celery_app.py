"""The project's Celery app: the one Stepwise sends its hints through and runs its workers on.

A Django project makes its Celery app in its own package and imports it from that package's
``__init__.py`` (Celery's "First steps with Django"): the first app made with Django's settings
becomes Celery's default app, in every thread. ``STEPWISE_CELERY_APP`` names the app instead, as
``celery -A`` does (``"proj"``, ``"proj.celery:app"``), for a project whose package cannot import it.
"""
from __future__ import annotations

import importlib

from celery import Celery, current_app
from celery.app.utils import find_app
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class CeleryAppMissing(ImproperlyConfigured):
    """The project made no Celery app, so there is none to send hints through or to run workers on."""


def celery_app() -> Celery:
    """Return the project's Celery app: the one STEPWISE_CELERY_APP names, else Celery's default app."""
    # Read with a default: ``celery -A stepwise.runs.celery_app:app`` gets here before the apps load theirs.
    name = getattr(settings, "STEPWISE_CELERY_APP", "")
    if name:
        return find_app(name, imp=importlib.import_module)
    app = current_app._get_current_object()
    if _made_up_by_celery(app):
        raise CeleryAppMissing(
            "No Celery app: create your project's app in proj/celery.py and import it in proj/__init__.py "
            "(from .celery import app as celery_app), as Celery's Django guide does, or name it in the "
            "STEPWISE_CELERY_APP setting (e.g. 'proj.celery:app')."
        )
    return app


def _made_up_by_celery(app: Celery) -> bool:
    # Asked for an app before any was made, Celery makes up one named "default", without Django's fix-up:
    # it knows nothing of the project's broker.
    return app.main == "default" and not app.fixups


def __getattr__(name: str) -> Celery:
    # ``celery -A stepwise.runs.celery_app:app worker`` starts a worker on the project's app whatever the project
    # calls its package: the benchmark starts its worker processes so.
    if name == "app":
        return celery_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
