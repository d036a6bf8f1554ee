from __future__ import annotations

from django.apps import AppConfig

from tasks.app_settings import app_settings_apply

app_settings_apply()  # before any module of the apps reads a setting


class RunsConfig(AppConfig):
    name = "runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        import runs.worker  # noqa: F401  (the engine's Celery task and worker signals, in any Celery app)

        if settings.STEPWISE_TRACING:
            from runs.tracing.setup import tracing_setup

            tracing_setup()
