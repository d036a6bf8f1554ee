"""Public access tokens: signed, expiring, read-only credentials scoped to runs and tags of one environment.

A token is ``pt_`` followed by Django's signed value of its claims (HMAC-SHA256 with
SECRET_KEY, checked in constant time, SECRET_KEY_FALLBACKS honoured): nothing is stored, so
a token ends when it expires, when the API key that made it is revoked, or when SECRET_KEY
changes. Hand one to a browser to let it follow exactly the runs it names.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core import signing
from django.utils import timezone

from stepwise.runs.engine.durations import InvalidDuration, duration_seconds
from stepwise.runs.engine.errors import StepwiseError
from stepwise.tasks.models import ApiKey

PREFIX = "pt_"
SALT = "stepwise.public-token"
DEFAULT_EXPIRES_IN = 15 * 60
MAX_EXPIRES_IN = 7 * 24 * 3600
MAX_SCOPE_ITEMS = 100
SCOPE_KINDS = ("runs", "tags")
MAX_TOKEN_LENGTH = 8192


class InvalidPublicTokenRequest(StepwiseError):
    """The scopes or the lifetime asked of a new public token are not valid; no token was made."""


class PublicTokenRefused(StepwiseError):
    """A public token is malformed, altered, expired or revoked (HTTP 401)."""


class OutOfScope(StepwiseError):
    """A credential is valid but does not cover what it asked to read (HTTP 403)."""


@dataclass(frozen=True)
class PublicToken:
    """What a verified public token lets its holder read: runs by id and runs by tag, in one environment."""

    environment: str
    runs: frozenset[str]
    tags: frozenset[str]
    expires_at: datetime
    api_key_id: int | None = None

    def covers_run(self, run_id: str, tags: list[str] | tuple[str, ...]) -> bool:
        """Tell whether the token names this run, or one of its tags."""
        return run_id in self.runs or not self.tags.isdisjoint(tags)

    def scopes(self) -> dict[str, list[str]]:
        return {"runs": sorted(self.runs), "tags": sorted(self.tags)}


def _scope_items(scopes: Any) -> dict[str, list[str]]:
    if not isinstance(scopes, dict) or not scopes:
        raise InvalidPublicTokenRequest('scopes must be an object such as {"runs": ["run_..."], "tags": ["user-42"]}')
    unknown = sorted(set(scopes) - set(SCOPE_KINDS))
    if unknown:
        raise InvalidPublicTokenRequest(f"unknown scope kind '{unknown[0]}' (kinds: {', '.join(SCOPE_KINDS)})")
    items: dict[str, list[str]] = {}
    for kind in SCOPE_KINDS:
        values = scopes.get(kind) or []
        if not isinstance(values, list | tuple) or not all(isinstance(v, str) and v and len(v) <= 255
                                                          for v in values):
            raise InvalidPublicTokenRequest(f"scopes.{kind} must be a list of non-empty strings (255 at most)")
        items[kind] = sorted(set(values))
    total = sum(len(v) for v in items.values())
    if total == 0:
        raise InvalidPublicTokenRequest("a public token needs at least one run or tag in its scopes")
    if total > MAX_SCOPE_ITEMS:
        raise InvalidPublicTokenRequest(f"a public token may name at most {MAX_SCOPE_ITEMS} runs and tags, got {total}")
    return items


def _lifetime(expires_in: Any) -> float:
    try:
        seconds = duration_seconds(DEFAULT_EXPIRES_IN if expires_in is None else expires_in)
    except InvalidDuration as exc:
        raise InvalidPublicTokenRequest(f"expires_in: {exc}") from None
    if not 0 < seconds <= MAX_EXPIRES_IN:
        raise InvalidPublicTokenRequest(
            f"expires_in must be between 1 second and {MAX_EXPIRES_IN // 86400} days, got {seconds:g}s"
        )
    return seconds


def public_token_create(
    *, environment: str, scopes: Any, expires_in: Any = None, api_key_id: int | None = None
) -> tuple[str, PublicToken]:
    """Sign a read-only token for the runs and tags in ``scopes``; return its text and what it grants.

    Example: ``public_token_create(environment="prod", scopes={"runs": [run.id]}, expires_in="1h")``
    """
    items = _scope_items(scopes)
    expires_at = (timezone.now() + timedelta(seconds=_lifetime(expires_in))).replace(microsecond=0)
    claims = {"e": environment, "r": items["runs"], "t": items["tags"], "x": int(expires_at.timestamp())}
    if api_key_id is not None:
        claims["k"] = api_key_id
    text = PREFIX + signing.dumps(claims, salt=SALT, compress=True)
    token = PublicToken(environment=environment, runs=frozenset(items["runs"]), tags=frozenset(items["tags"]),
                        expires_at=expires_at, api_key_id=api_key_id)
    return text, token


def is_public_token(text: str) -> bool:
    """Tell whether a bearer credential is a public token (as opposed to an API key)."""
    return text.startswith(PREFIX)


def public_token_verify(text: str) -> PublicToken:
    """Return what a public token grants; raise PublicTokenRefused saying why it is not accepted."""
    if not is_public_token(text) or len(text) > MAX_TOKEN_LENGTH:
        raise PublicTokenRefused("not a public token (they start with 'pt_')")
    try:
        claims = signing.loads(text[len(PREFIX):], salt=SALT)
    except signing.BadSignature:
        raise PublicTokenRefused("the public token's signature does not match: it was altered, "
                                 "or the server's SECRET_KEY changed since it was made") from None
    expires_at = datetime.fromtimestamp(claims["x"], UTC)
    if expires_at <= timezone.now():
        raise PublicTokenRefused(f"the public token expired at {expires_at.isoformat()}; ask for a new one")
    key_id = claims.get("k")
    if key_id is not None and not _api_key_live(key_id):
        raise PublicTokenRefused("the API key that made this public token was revoked")
    return PublicToken(environment=claims["e"], runs=frozenset(claims["r"]), tags=frozenset(claims["t"]),
                       expires_at=expires_at, api_key_id=key_id)


def _api_key_live(key_id: int) -> bool:
    return ApiKey.objects.filter(id=key_id, revoked_at__isnull=True).exists()
