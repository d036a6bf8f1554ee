from __future__ import annotations

from django.apps import AppConfig


class StepwiseConfig(AppConfig):
    """Carries the console's templates and static files in an installed Stepwise (``stepwise/templates``)."""

    name = "stepwise"
    verbose_name = "Stepwise"
