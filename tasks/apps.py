from __future__ import annotations

from importlib import import_module

from django.apps import AppConfig
from django.conf import settings
from django.core import checks
from django.utils.module_loading import autodiscover_modules, import_string

from stepwise.tasks.app_settings import app_settings_apply, secret_keys_check

app_settings_apply()  # before any module of the apps reads a setting


class TasksConfig(AppConfig):
    name = "stepwise.tasks"
    label = "stepwise_tasks"  # never "tasks": a project may have an app of that name
    verbose_name = "Stepwise tasks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        checks.register(secret_keys_check)
        # Importing a task module registers its @task functions; no database access here.
        for module in settings.STEPWISE_TASK_MODULES:
            import_module(module)
        autodiscover_modules("stepwise_tasks")  # each installed app's own tasks
        from stepwise.tasks.hooks import global_hooks

        global_hooks()  # a wrong hook name or path in settings stops the process with a clear message
        # Import the Django task backends now: Stepwise's lets every process (workers too) find Django tasks.
        for params in getattr(settings, "TASKS", {}).values():
            import_string(params["BACKEND"])
