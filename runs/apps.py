from __future__ import annotations

from django.apps import AppConfig

from stepwise.tasks.app_settings import app_settings_apply

app_settings_apply()  # before any module of the apps reads a setting


class RunsConfig(AppConfig):
    name = "stepwise.runs"
    label = "stepwise_runs"  # never "runs": a project may have an app of that name
    verbose_name = "Stepwise runs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        import stepwise.runs.worker  # noqa: F401  (the engine's Celery task and worker signals, in any Celery app)
        from stepwise.runs.broker_client import redis_client_reuse_install

        redis_client_reuse_install()

        if settings.STEPWISE_TRACING:
            from stepwise.runs.tracing.setup import tracing_setup

            tracing_setup()
