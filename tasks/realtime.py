"""The ``auth`` API of the SDK: public tokens a browser uses to follow runs live.

Example::

    from stepwise.tasks.sdk import auth

    token = auth.create_public_token(scopes={"runs": [run.id]}, expires_in="1h")
    # hand `token` to the page; it subscribes with static/stepwise/realtime.js
"""
from __future__ import annotations

from typing import Any

from stepwise.runs.engine.context import current_context
from stepwise.runs.realtime.tokens import public_token_create


class Auth:
    """Credentials for the realtime endpoints."""

    def create_public_token(self, *, scopes: dict[str, list[str]], expires_in: Any = None,
                            environment: str | None = None) -> str:
        """Return a signed, expiring, read-only token for the runs and tags in ``scopes``.

        The environment is the run's inside a task, else ``environment`` (default ``dev``).

        Example: ``auth.create_public_token(scopes={"tags": ["user-42"]}, expires_in="15m")``
        """
        ctx = current_context.get()
        chosen = environment or (ctx.environment if ctx is not None else "dev")
        return public_token_create(environment=chosen, scopes=scopes, expires_in=expires_in)[0]


auth = Auth()
