from __future__ import annotations

from django.apps import AppConfig

from tasks.app_settings import app_settings_apply

app_settings_apply()  # before any module of the apps reads a setting


class ConsoleConfig(AppConfig):
    name = "console"
    default_auto_field = "django.db.models.BigAutoField"
