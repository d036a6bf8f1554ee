"""Who follows runs live, and what they may read: an API key with the read scope, a public token, or a user."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stepwise.runs.realtime.tokens import (
    OutOfScope,
    PublicToken,
    PublicTokenRefused,
    is_public_token,
    public_token_verify,
)
from stepwise.runs.selectors import run_display_get
from stepwise.tasks.access import Capability, may
from stepwise.tasks.apikeys import api_key_authenticate
from stepwise.tasks.models import ApiKey
from stepwise.tasks.redaction import RunDisplay


@dataclass(frozen=True)
class Reader:
    """A verified credential of a realtime subscriber; ``may_read_run`` is the one question asked of it."""

    holder: Any  # an ApiKey, a PublicToken, or a console user

    @property
    def expires_at(self) -> datetime | None:
        """When the credential stops being valid (a public token's expiry); None for keys and users."""
        return self.holder.expires_at if isinstance(self.holder, PublicToken) else None

    @property
    def environment(self) -> str | None:
        """The one environment an API key or a public token reads; None for a user."""
        if isinstance(self.holder, PublicToken):
            return self.holder.environment
        return self.holder.environment_id if isinstance(self.holder, ApiKey) else None

    def may_read_run(self, *, environment: str, run_id: str, tags: list[str]) -> bool:
        """Tell whether the credential covers this run."""
        if isinstance(self.holder, PublicToken):
            return self.holder.environment == environment and self.holder.covers_run(run_id, tags)
        return may(self.holder, environment, Capability.READ)

    def run_display(self, run_id: str) -> RunDisplay:
        """Return how a run's events are shown to this reader (stream chunks may be hidden from a viewer)."""
        return run_display_get(run_id=run_id, viewer=self.holder) or RunDisplay()

    def may_read_tag(self, *, environment: str, tag: str) -> bool:
        """Tell whether the credential covers every run carrying ``tag`` in ``environment``."""
        if isinstance(self.holder, PublicToken):
            return self.holder.environment == environment and tag in self.holder.tags
        return may(self.holder, environment, Capability.READ)


class NoCredential(PublicTokenRefused):
    """A request without a usable bearer credential (HTTP 401)."""


def reader_from_authorization(header: str) -> Reader:
    """Return the reader an ``Authorization: Bearer ...`` header names; raise saying why it is refused.

    Raises PublicTokenRefused (401) for a missing, unknown, expired or revoked credential, and
    OutOfScope (403) for an API key without the read scope.
    """
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise NoCredential("send an API key or a public token as 'Authorization: Bearer <token>'")
    if is_public_token(secret):
        return Reader(public_token_verify(secret))
    key = api_key_authenticate(secret)
    if key is None:
        raise NoCredential("the API key is not valid (unknown or revoked)")
    if not may(key, key.environment_id, Capability.READ):
        raise OutOfScope("this API key may not read runs: it needs the 'read' scope")
    return Reader(key)
