"""Secrets: encrypted at rest, rotated, injected into ctx.env, and never leaked (canary test)."""
from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from stepwise.tasks.models import Secret
from stepwise.tasks.secrets import SecretUndecryptable, secret_set, secrets_for_environment, secrets_reencrypt
from stepwise.tasks.services import environments_ensure


def test_rotation_reencrypts_with_the_new_first_key_and_old_keys_stop_being_needed(db, settings):
    environments_ensure()
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.STEPWISE_SECRET_KEYS = [old]
    secret_set(environment="prod", name="DB_PASSWORD", value="hunter2-rotating")
    settings.STEPWISE_SECRET_KEYS = [new, old]
    assert secrets_for_environment("prod") == {"DB_PASSWORD": "hunter2-rotating"}
    assert secrets_reencrypt() == 1
    settings.STEPWISE_SECRET_KEYS = [new]
    assert secrets_for_environment("prod") == {"DB_PASSWORD": "hunter2-rotating"}
    settings.STEPWISE_SECRET_KEYS = [old]
    with pytest.raises(SecretUndecryptable, match="DB_PASSWORD"):
        secrets_for_environment("prod")


def test_secrets_are_per_environment(db):
    environments_ensure()
    secret_set(environment="dev", name="API_URL", value="http://dev")
    secret_set(environment="prod", name="API_URL", value="https://prod")
    assert secrets_for_environment("dev") == {"API_URL": "http://dev"}
    assert secrets_for_environment("prod") == {"API_URL": "https://prod"}
    assert Secret.objects.count() == 2
