"""Secrets per environment: encrypted at rest with MultiFernet, decrypted only in workers."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.db import transaction

from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.engine.redaction import MASK
from stepwise.tasks.models import Secret, WebhookSecret
from stepwise.tasks.services import environment_exists

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MAX_VALUE_BYTES = 64 * 1024


class InvalidSecret(StepwiseError):
    """A secret's name or value is not acceptable; nothing was stored."""


class SecretNotFound(StepwiseError):
    """No secret has this name in this environment."""


class SecretUndecryptable(StepwiseError):
    """A stored secret was encrypted with a key no longer in STEPWISE_SECRET_KEYS."""


@dataclass(frozen=True)
class MaskedSecret:
    """What the console, API and CLI show of a saved secret: never its value."""

    name: str
    environment: str
    value: str
    updated_at: datetime


def secret_cipher() -> MultiFernet:
    """Return the cipher of secrets: the first key of STEPWISE_SECRET_KEYS encrypts, every key decrypts."""
    return MultiFernet([Fernet(k.encode()) for k in settings.STEPWISE_SECRET_KEYS])


def _decrypt(ciphertext: bytes, name: str) -> str:
    try:
        return secret_cipher().decrypt(bytes(ciphertext)).decode()
    except InvalidToken:
        raise SecretUndecryptable(f"secret '{name}' cannot be decrypted with the configured keys") from None


def _environment(slug: str) -> str:
    if not environment_exists(slug):
        raise InvalidSecret(f"unknown environment '{slug}'")
    return slug


def secret_name_validate(name: str) -> None:
    """Raise InvalidSecret unless the name is letters, digits and underscores, not starting with a digit."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidSecret("a secret name must be letters, digits and underscores, not starting with a digit")


def secret_set(*, environment: str, name: str, value: str) -> MaskedSecret:
    """Create or replace a secret; return it masked."""
    secret_name_validate(name)
    if not isinstance(value, str) or not value:
        raise InvalidSecret(f"secret '{name}' needs a non-empty string value")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise InvalidSecret(f"secret '{name}' is over {MAX_VALUE_BYTES} bytes")
    _environment(environment)
    ciphertext = secret_cipher().encrypt(value.encode())
    secret, _ = Secret.objects.update_or_create(
        environment_id=environment, name=name, defaults={"ciphertext": ciphertext}
    )
    return secret_masked(secret)


def secret_delete(*, environment: str, name: str) -> None:
    """Delete a secret, or raise SecretNotFound."""
    deleted, _ = Secret.objects.filter(environment_id=environment, name=name).delete()
    if not deleted:
        raise SecretNotFound(f"no secret '{name}' in environment '{environment}'")


def secrets_reencrypt() -> int:
    """Re-encrypt every secret and webhook secret with the first key; return how many rows changed."""
    cipher = secret_cipher()
    changed = 0
    with transaction.atomic():
        for model in (Secret, WebhookSecret):
            for row in model.objects.select_for_update().only("id", "ciphertext"):
                try:
                    rotated = cipher.rotate(bytes(row.ciphertext))
                except InvalidToken:
                    raise SecretUndecryptable(
                        f"{model.__name__} {row.id} cannot be decrypted with the configured keys"
                    ) from None
                model.objects.filter(id=row.id).update(ciphertext=rotated)
                changed += 1
    return changed


def secret_masked(secret: Secret) -> MaskedSecret:
    """Return the masked view of a stored secret."""
    return MaskedSecret(name=secret.name, environment=secret.environment_id, value=MASK, updated_at=secret.updated_at)


def secret_list(*, environment: str) -> list[MaskedSecret]:
    """Return the secrets of an environment, masked, by name."""
    return [secret_masked(s) for s in Secret.objects.filter(environment_id=environment).order_by("name")]


def secrets_for_environment(environment: str) -> dict[str, str]:
    """Return the decrypted secrets of an environment (called in the worker, never sent anywhere)."""
    return {s.name: _decrypt(s.ciphertext, s.name) for s in Secret.objects.filter(environment_id=environment)}


def secret_value_decrypt(ciphertext: bytes, *, label: str) -> str:
    """Decrypt one stored ciphertext (webhook secrets share the cipher)."""
    return _decrypt(ciphertext, label)
