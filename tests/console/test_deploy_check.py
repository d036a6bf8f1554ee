"""Production settings pass Django's deployment checks."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.processes import ROOT


def test_check_deploy_is_clean_with_production_settings():
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "x" * 20 + "a-long-random-production-key-9f8e7d6c5b4a",
           "ALLOWED_HOSTS": "stepwise.example.com"}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": ""}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0 and "SECRET_KEY must be set" in result.stderr


def _settings_of(env: dict[str, str], expression: str) -> subprocess.CompletedProcess:
    code = f"from django.conf import settings; print(repr(({expression})))"
    return subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _without(*names: str, **extra: str) -> dict[str, str]:
    """Return this environment less ``names``, on the project's settings (not the test suite's)."""
    return {**{k: v for k, v in os.environ.items() if k not in names},
            "DJANGO_SETTINGS_MODULE": "stepwise.console.settings", **extra}


def test_debug_is_off_unless_asked_for():
    assert _settings_of(_without("DEBUG"), "settings.DEBUG").stdout.strip() == "False"
    assert _settings_of(_without("DEBUG", DEBUG="1"), "settings.DEBUG").stdout.strip() == "True"


def test_production_settings_refuse_to_start_without_secrets_keys_and_never_derive_them():
    result = _settings_of(_without("DEBUG", STEPWISE_SECRET_KEYS=""), "settings.STEPWISE_SECRET_KEYS")
    assert result.returncode != 0 and "STEPWISE_SECRET_KEYS must be set" in result.stderr
    assert "ImproperlyConfigured" in result.stderr


def test_the_embedded_default_generates_its_keys_once_and_reuses_them(tmp_path):
    env = _without("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "STEPWISE_SECRET_KEYS", "DEBUG",
                   STEPWISE_SQLITE_PATH=str(tmp_path / "db.sqlite3"))
    expression = "settings.SECRET_KEY, settings.STEPWISE_SECRET_KEYS[0]"
    first = _settings_of(env, expression)
    again = _settings_of(env, expression)
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout
    secret_key, secrets_key = (tmp_path / ".stepwise-secret-key").read_text().strip(), \
        (tmp_path / ".stepwise-secrets-key").read_text().strip()
    assert repr((secret_key, secrets_key)) == first.stdout.strip()
    assert len(secret_key) >= 50 and secrets_key != secret_key
    assert (tmp_path / ".stepwise-secret-key").stat().st_mode & 0o777 == 0o600
    other = tmp_path / "other"
    elsewhere = _settings_of({**env, "STEPWISE_SQLITE_PATH": str(other / "db.sqlite3")}, expression)
    assert elsewhere.returncode == 0 and elsewhere.stdout != first.stdout  # random, not a constant
