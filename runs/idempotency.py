"""Idempotency keys: the effective key a trigger's key and scope give, and resetting a key.

The run keeps the key and scope as given (``idempotency_key``, ``idempotency_key_scope``) for
display; the unique constraint guards ``idempotency_key_effective``, the key combined with its
scope, which is freed (set to NULL) when the key's TTL passed and another run takes it, or when
the key is reset. Effective keys start with their scope, and the parts before the key hold no
``:``, so keys of different scopes never collide; one over 255 characters is hashed.
"""
from __future__ import annotations

import hashlib

from django.db import transaction
from django.utils import timezone

from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.events import event_append
from stepwise.runs.models import Run
from stepwise.runs.statuses import IdempotencyKeyScope

EFFECTIVE_MAX_LENGTH = 255
SCOPES = ", ".join(f"'{scope}'" for scope in IdempotencyKeyScope.values)


class InvalidIdempotencyKey(StepwiseError):
    """An idempotency key, its scope or its parent run is wrong; nothing was stored."""


class IdempotencyKeyNotFound(StepwiseError):
    """No run holds this idempotency key (never used, reset already, or taken over after its TTL)."""


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
            "triggers made inside a run (or a reset naming parent_run_id); use 'global' outside a run"
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


def _key_free(*, run_id: str, effective: str, actor: str) -> Run:
    """Free a run's effective key if it still holds it, mark it reset and record that on the run."""
    now = timezone.now()
    with transaction.atomic():
        changed = Run.objects.filter(id=run_id, idempotency_key_effective=effective).update(
            idempotency_key_effective=None, idempotency_key_reset_at=now, updated_at=now
        )
        if changed != 1:
            raise IdempotencyKeyNotFound(f"run {run_id} no longer holds its idempotency key (reset meanwhile)")
        run = Run.objects.get(id=run_id)
        event_append(run_id=run_id, type="idempotency_key.reset", data={
            "key": run.idempotency_key, "scope": run.idempotency_key_scope, **({"by": actor} if actor else {}),
        })
    return run


def idempotency_key_reset(
    *,
    task_id: str,
    key: str,
    scope: str | None = None,
    parent_run_id: str | None = None,
    parent_attempt: int | None = None,
    environment: str = "dev",
    actor: str = "",
) -> Run:
    """Free an idempotency key so the next trigger with it starts a new run; return the run that held it.

    That run keeps showing the key, marked reset. Raise IdempotencyKeyNotFound if no run holds it.
    """
    if not isinstance(key, str) or not 0 < len(key) <= 255:
        raise InvalidIdempotencyKey("the idempotency key must be a non-empty string of at most 255 characters")
    checked = scope_check(scope, parent_run_id=parent_run_id)
    if checked == IdempotencyKeyScope.ATTEMPT and parent_attempt is None:
        raise InvalidIdempotencyKey("an 'attempt' key names the parent run's attempt: give parent_attempt")
    effective = idempotency_key_effective(key=key, scope=checked, parent_run_id=parent_run_id,
                                          parent_attempt=parent_attempt)
    holder = (
        Run.objects.filter(task_id=task_id, environment_id=environment, idempotency_key_effective=effective)
        .values_list("id", flat=True)
        .first()
    )
    if holder is None:
        where = f" of parent run {parent_run_id}" if parent_run_id else ""
        raise IdempotencyKeyNotFound(
            f"no run of task '{task_id}' in environment '{environment}' holds the idempotency key {key!r} "
            f"(scope {checked.value}{where}): it was never used, was reset already, or expired and was taken over"
        )
    return _key_free(run_id=holder, effective=effective, actor=actor)


def run_idempotency_key_reset(*, run_id: str, actor: str = "") -> Run:
    """Free the idempotency key a run holds (the console's button); raise IdempotencyKeyNotFound if it holds none."""
    run = (
        Run.objects.filter(id=run_id)
        .only("idempotency_key", "idempotency_key_effective", "idempotency_key_reset_at")
        .first()
    )
    if run is None:
        raise IdempotencyKeyNotFound(f"no run with id '{run_id}'")
    if run.idempotency_key is None:
        raise IdempotencyKeyNotFound(f"run {run_id} was triggered without an idempotency key")
    if run.idempotency_key_effective is None:
        why = "it was reset already" if run.idempotency_key_reset_at else "its TTL passed and another run took it"
        raise IdempotencyKeyNotFound(f"run {run_id} no longer holds its idempotency key {run.idempotency_key!r}: {why}")
    return _key_free(run_id=run_id, effective=run.idempotency_key_effective, actor=actor)
