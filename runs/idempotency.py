"""Idempotency keys: the effective key a trigger's key and scope give.

The run keeps the key and scope as given (``idempotency_key``, ``idempotency_key_scope``) for
display; the unique constraint guards ``idempotency_key_effective``, the key combined with its
scope, which is freed (set to NULL) when the key's TTL passed and another run takes it.
Effective keys start with their scope, and the parts before the key hold no ``:``, so keys of
different scopes never collide; one over 255 characters is hashed.
"""
from __future__ import annotations

import hashlib

from runs.engine.errors import StepwiseError
from runs.models import Run
from runs.statuses import IdempotencyKeyScope

EFFECTIVE_MAX_LENGTH = 255
SCOPES = ", ".join(f"'{scope}'" for scope in IdempotencyKeyScope.values)


class InvalidIdempotencyKey(StepwiseError):
    """An idempotency key, its scope or its parent run is wrong; nothing was stored."""


def scope_check(scope: str | None, *, parent_run_id: str | None) -> IdempotencyKeyScope:
    """Return the scope a key gets (global when none is given); raise InvalidIdempotencyKey.

    A "run" or "attempt" key is combined with the parent run, so it is refused outside a run:
    treated as global it would deduplicate across every caller, the opposite of what was asked.
    """
    if scope is None:
        return IdempotencyKeyScope.GLOBAL
    if scope not in IdempotencyKeyScope.values:
        raise InvalidIdempotencyKey(f"idempotency_key_scope must be one of {SCOPES}, got {scope!r}")
    if scope != IdempotencyKeyScope.GLOBAL and not parent_run_id:
        raise InvalidIdempotencyKey(
            f"idempotency_key_scope '{scope}' combines the key with the parent run, so it is only for "
            "triggers made inside a run; use 'global' outside a run"
        )
    return IdempotencyKeyScope(scope)


def _bounded(text: str) -> str:
    if len(text) <= EFFECTIVE_MAX_LENGTH:
        return text
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def idempotency_key_effective(
    *, key: str, scope: IdempotencyKeyScope, parent_run_id: str | None = None, parent_attempt: int | None = None
) -> str:
    """Return the key the unique constraint guards for a key given with a scope.

    Example: ``idempotency_key_effective(key="k", scope=IdempotencyKeyScope.RUN, parent_run_id="run_1")``
    gives ``"run:run_1:k"``.
    """
    if scope == IdempotencyKeyScope.GLOBAL:
        return _bounded(f"global:{key}")
    if scope == IdempotencyKeyScope.RUN:
        return _bounded(f"run:{parent_run_id}:{key}")
    return _bounded(f"attempt:{parent_run_id}:{parent_attempt}:{key}")


def call_key_effective(call_key: str) -> str:
    """Return the effective key of an SDK call made inside a run without a key of its own.

    It finds the child of a call whose record an attempt lost (it crashed right after the
    trigger); the child shows no idempotency key, as none was given.
    """
    return _bounded(f"call:{call_key}")


def parent_attempt_get(parent_run_id: str) -> int:
    """Return the attempt the parent run is in, for an "attempt" key triggered without it."""
    attempt = Run.objects.filter(id=parent_run_id).values_list("attempt_count", flat=True).first()
    if attempt is None:
        raise InvalidIdempotencyKey(f"no parent run with id '{parent_run_id}'")
    return attempt
