"""API keys per environment: shown once, stored as a sha256 hash, revocable."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from stepwise.runs.engine.errors import StepwiseError
from stepwise.tasks.access import DEFAULT_SCOPES, SCOPES, Capability, capabilities, may
from stepwise.tasks.models import ApiKey
from stepwise.tasks.services import environment_exists

KEY_PREFIX = "sk_"


class InvalidApiKey(StepwiseError):
    """An API key request is wrong (unknown environment, empty name); nothing was stored."""


class ApiKeyNotFound(StepwiseError):
    """No API key has this id in this environment."""


class ScopeNotAllowed(StepwiseError):
    """A key may not be given a scope its creator does not hold in the key's environment."""


@dataclass(frozen=True)
class CreatedApiKey:
    """A new key: ``secret`` is the only time the full key is ever shown."""

    key: ApiKey
    secret: str


def _hash(secret: str) -> str:
    # The key carries 256 random bits, so a fast hash is as safe as a slow one here.
    return hashlib.sha256(secret.encode()).hexdigest()


def _scopes_checked(scopes: Iterable[str] | None, environment: str, granted_by: Any) -> list[str]:
    wanted = list(DEFAULT_SCOPES) if scopes is None else [str(s) for s in scopes]
    unknown = sorted(set(wanted) - set(SCOPES))
    if unknown or not wanted:
        raise InvalidApiKey(f"unknown scope(s) {', '.join(unknown) or '(none given)'}: "
                            f"choose from {', '.join(SCOPES)}")
    if granted_by is not None:
        if not may(granted_by, environment, Capability.ADMIN):
            raise ScopeNotAllowed(f"only an admin of environment '{environment}' may create its API keys")
        held = capabilities(granted_by, environment)
        beyond = [s for s in wanted if s not in held]
        if beyond:
            raise ScopeNotAllowed(f"a key may not get scope(s) its creator lacks: {', '.join(beyond)}")
    return [s for s in SCOPES if s in wanted]


def api_key_create(*, environment: str, name: str, scopes: Iterable[str] | None = None,
                   granted_by: Any = None) -> CreatedApiKey:
    """Create a key ``sk_<env>_<random>`` for an environment; return it with its one-time secret.

    ``scopes`` default to read and trigger. ``granted_by`` (a user or an API key) must be an admin
    of the environment and hold every scope given; None is the CLI, run by whoever owns the host.
    """
    if not environment_exists(environment):
        raise InvalidApiKey(f"unknown environment '{environment}'")
    if not isinstance(name, str) or not 0 < len(name.strip()) <= 128:
        raise InvalidApiKey("an API key needs a name of 1 to 128 characters")
    checked = _scopes_checked(scopes, environment, granted_by)
    secret = f"{KEY_PREFIX}{environment}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(
        environment_id=environment,
        name=name.strip(),
        prefix=secret[: len(KEY_PREFIX) + len(environment) + 7],
        key_hash=_hash(secret),
        scopes=checked,
    )
    return CreatedApiKey(key=key, secret=secret)


def api_key_revoke(*, environment: str, key_id: int) -> ApiKey:
    """Revoke a key; later calls with it are refused."""
    key = ApiKey.objects.filter(environment_id=environment, id=key_id).first()
    if key is None:
        raise ApiKeyNotFound(f"no API key {key_id} in environment '{environment}'")
    if key.revoked_at is None:
        ApiKey.objects.filter(id=key.id, revoked_at__isnull=True).update(revoked_at=timezone.now())
        key.refresh_from_db()
    return key


def api_key_authenticate(secret: str) -> ApiKey | None:
    """Return the live key a bearer secret names, or None."""
    if not isinstance(secret, str) or not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        return None
    digest = _hash(secret)
    key = ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True).first()
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    ApiKey.objects.filter(id=key.id).update(last_used_at=timezone.now())
    return key


def api_key_list(*, environment: str) -> QuerySet[ApiKey]:
    """Return the keys of an environment, newest first (prefix only, never the secret)."""
    return ApiKey.objects.filter(environment_id=environment).order_by("-created_at")
