from __future__ import annotations

from django.apps import AppConfig

from stepwise.tasks.app_settings import app_settings_apply

app_settings_apply()  # before any module of the apps reads a setting


class ConsoleConfig(AppConfig):
    name = "stepwise.console"
    label = "stepwise_console"
    verbose_name = "Stepwise console"
    default_auto_field = "django.db.models.BigAutoField"
