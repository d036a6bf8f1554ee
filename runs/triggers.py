"""Triggers: validate a run's payload and options, and create it (alone, in a batch, or as a child)."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from stepwise.runs.dispatch import dispatch_run_on_commit
from stepwise.runs.engine.checkpoints import checkpoint_encode, json_parse
from stepwise.runs.engine.durations import InvalidDuration, duration_seconds
from stepwise.runs.engine.errors import InvalidJson, StepwiseError
from stepwise.runs.engine.retry import RetryPolicy
from stepwise.runs.events import event_append, stored_events_publish
from stepwise.runs.idempotency import (
    InvalidIdempotencyKey,
    call_key_effective,
    idempotency_key_effective,
    parent_attempt_get,
    scope_check,
)
from stepwise.runs.ids import new_id
from stepwise.runs.models import NewEvent, Run, RunEvent, TriggerGate
from stepwise.runs.statements import is_postgresql, run_insert
from stepwise.runs.statuses import IdempotencyKeyScope, RunStatus
from stepwise.runs.timers import timer_notify
from stepwise.runs.tracing.propagation import InvalidTraceparent, traceparent_current, traceparent_parse
from stepwise.tasks.models import Queue
from stepwise.tasks.registry import task_all, task_get
from stepwise.tasks.services import UnknownEnvironment, environment_require, task_version_ensure


class InvalidTrigger(StepwiseError):
    """A trigger's payload or options are wrong; nothing was stored."""


@dataclass(frozen=True)
class TriggerOptions:
    """Options of one trigger; every field is optional."""

    idempotency_key: str | None = None
    # "global" (the default), "run" or "attempt": what the key is unique within (stepwise.runs.idempotency).
    idempotency_key_scope: str | None = None
    idempotency_key_ttl: str | float | timedelta | None = None
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    concurrency_key: str | None = None
    priority: int = 0
    delay: str | float | timedelta | None = None
    delay_until: datetime | None = None
    ttl: str | float | timedelta | None = None
    max_duration: float | None = None
    environment: str = "dev"
    parent_run_id: str | None = None
    parent_attempt: int | None = None  # the parent's attempt, which an "attempt" key is combined with
    # Set by the SDK inside a run: the call's own key, deduplicating a child when no idempotency key is given.
    call_key: str | None = None
    replayed_from_id: str | None = None
    # A W3C traceparent: the run's spans join the caller's trace. Without one, a run triggered
    # inside a span (a step of a parent run, a traced request) joins that span's trace.
    traceparent: str | None = None
    # This run's retry policy instead of the task's: {"max_attempts": 5, "min_timeout": 2, ...}.
    retry: dict[str, Any] | None = None
    # {"key": "user-42", "delay": "5s", "max_delay": "30m", "mode": "leading"|"trailing"}: triggers
    # with the key within the delay collapse into one run (see stepwise.runs.triggers.Debounce).
    debounce: dict[str, Any] | None = None
    # {"key": "user-42", "period": "1m"}: at most one run per key per period; the rest are refused.
    throttle: dict[str, Any] | None = None


class Throttled(InvalidTrigger):
    """A throttle key let a run through less than its period ago: this trigger is refused."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Debounce:
    """Triggers with ``key`` within ``delay`` of each other collapse into one run, started ``delay`` after the last.

    ``max_delay`` bounds the wait from the first trigger, however often triggers keep coming.
    ``mode`` "leading" (the default) keeps the first trigger's payload, tags and metadata;
    "trailing" takes the latest one's.
    """

    key: str
    delay: float
    max_delay: float | None = None
    mode: str = "leading"


@dataclass(frozen=True)
class Throttle:
    """At most one run per ``key`` every ``period`` seconds; a trigger in between is refused (Throttled)."""

    key: str
    period: float


def _gate_key(value: Any, what: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 255:
        raise InvalidTrigger(f"{what}: key must be a non-empty string of at most 255 characters")
    return value


def _gate_options(value: Any, what: str, known: set[str]) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidTrigger(f"{what} must be an object with a key, not {type(value).__name__}")
    unknown = sorted(set(value) - known)
    if unknown:
        raise InvalidTrigger(f"{what}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return value


def _debounce_parse(value: Any) -> Debounce | None:
    options = _gate_options(value, "debounce", {"key", "delay", "max_delay", "mode"})
    if options is None:
        return None
    key = _gate_key(options.get("key"), "debounce")
    delay = _seconds(options.get("delay"), "debounce.delay")
    if delay is None or delay <= 0:
        raise InvalidTrigger("debounce: delay must be a positive duration, e.g. \"5s\"")
    max_delay = _seconds(options.get("max_delay"), "debounce.max_delay")
    if max_delay is not None and max_delay < delay:
        raise InvalidTrigger("debounce: max_delay must be at least the delay")
    mode = options.get("mode", "leading")
    if mode not in ("leading", "trailing"):
        raise InvalidTrigger(f"debounce: mode must be 'leading' or 'trailing', not {mode!r}")
    return Debounce(key=key, delay=delay, max_delay=max_delay, mode=mode)


def _throttle_parse(value: Any) -> Throttle | None:
    options = _gate_options(value, "throttle", {"key", "period"})
    if options is None:
        return None
    key = _gate_key(options.get("key"), "throttle")
    period = _seconds(options.get("period"), "throttle.period")
    if period is None or period <= 0:
        raise InvalidTrigger("throttle: period must be a positive duration, e.g. \"1m\"")
    return Throttle(key=key, period=period)


def _seconds(value, name: str) -> float | None:
    if value is None:
        return None
    try:
        return duration_seconds(value)
    except InvalidDuration as exc:
        raise InvalidTrigger(f"{name}: {exc}") from None


def _queue_checked(definition: Any, options: TriggerOptions) -> str:
    """Return the queue a run goes to: its task's, or one its trigger names that exists in its environment.

    A made-up name would make a queue without a row, so no pause and no limit would ever hold for it.
    """
    name = options.queue
    if not name or name == definition.queue_name:
        return definition.queue_name
    declaring = next((d for d in task_all() if d.queue_name == name), None)
    if declaring is not None:
        task_version_ensure(declaring)  # its queue rows exist, with their limits, once per process
        return name
    # Not declared in code: one query, only for triggers that name another queue.
    if not isinstance(name, str) or not Queue.objects.filter(environment_id=options.environment, name=name).exists():
        raise InvalidTrigger(f"no queue named '{name}' in environment '{options.environment}': a run may only go "
                             f"to its task's queue ('{definition.queue_name}') or to one that exists")
    return name


def _validated_fields(task_id: str, payload: Any, options: TriggerOptions) -> dict[str, Any]:
    """Check payload and options and return the Run fields they give; raise InvalidTrigger."""
    definition = task_get(task_id)
    version = task_version_ensure(definition)
    if payload is None:
        payload = {}
    try:
        environment_require(options.environment)
    except UnknownEnvironment as exc:
        raise InvalidTrigger(str(exc)) from None
    try:
        payload = checkpoint_encode(payload, where="the payload", max_bytes=settings.STEPWISE_MAX_PAYLOAD_BYTES)
    except StepwiseError as exc:
        raise InvalidTrigger(str(exc)) from None
    tags = options.tags
    if not isinstance(tags, list) or not all(isinstance(t, str) and 0 < len(t) <= 128 for t in tags):
        raise InvalidTrigger("tags must be a list of non-empty strings of at most 128 characters")
    if len(tags) > 10:
        raise InvalidTrigger(f"a run may have at most 10 tags, got {len(tags)}")
    if not isinstance(options.metadata, dict):
        raise InvalidTrigger("metadata must be a JSON object")
    try:
        metadata = checkpoint_encode(options.metadata, where="metadata",
                                     max_bytes=settings.STEPWISE_MAX_METADATA_BYTES)
    except StepwiseError as exc:
        raise InvalidTrigger(str(exc)) from None
    if isinstance(options.priority, bool) or not isinstance(options.priority, int):
        raise InvalidTrigger("priority must be an integer")
    key_fields = _idempotency_fields(options)
    now = timezone.now()
    delay = _seconds(options.delay, "delay")
    delay_until = options.delay_until
    if delay is not None and delay_until is not None:
        raise InvalidTrigger("give either delay or delay_until, not both")
    if delay is not None and delay > 0:
        delay_until = now + timedelta(seconds=delay)
    if delay_until is not None and timezone.is_naive(delay_until):
        raise InvalidTrigger("delay_until must carry a time zone")
    ttl = _seconds(options.ttl, "ttl")
    key_ttl = _seconds(options.idempotency_key_ttl, "idempotency_key_ttl")
    max_duration = _seconds(options.max_duration, "max_duration") or definition.max_duration
    if max_duration is not None and max_duration <= 0:
        raise InvalidTrigger("max_duration must be positive")
    delayed = delay_until is not None and delay_until > now
    try:
        trace_parent = traceparent_parse(options.traceparent) if options.traceparent else traceparent_current()
    except InvalidTraceparent as exc:
        raise InvalidTrigger(str(exc)) from None
    return {
        "retry": _retry_policy(options.retry),
        "task_id": task_id,
        "version": version,
        "version_policy": definition.version_policy,
        "environment_id": options.environment,
        "status": RunStatus.DELAYED if delayed else RunStatus.QUEUED,
        "payload": payload,
        **key_fields,
        "idempotency_expires_at": (
            now + timedelta(seconds=key_ttl or settings.STEPWISE_IDEMPOTENCY_TTL_SECONDS)
            if key_fields["idempotency_key"] else None
        ),
        "tags": tags,
        "metadata": metadata,
        "queue": _queue_checked(definition, options),
        "concurrency_key": options.concurrency_key or "",
        "priority": options.priority,
        "delay_until": delay_until if delayed else None,
        "ttl_expires_at": now + timedelta(seconds=ttl) if ttl else None,
        "max_duration": max_duration,
        "parent_run_id": options.parent_run_id,
        "replayed_from_id": options.replayed_from_id,
        "dispatched_at": None if delayed else now,
        **({"trace_id": trace_parent.trace_id, "parent_span_id": trace_parent.span_id} if trace_parent else {}),
    }


def _retry_policy(retry: Any) -> dict[str, Any] | None:
    """Check a trigger's retry override and return it complete (every RetryPolicy field)."""
    if retry is None:
        return None
    if not isinstance(retry, dict):
        raise InvalidTrigger("retry must be an object of retry policy fields")
    known = set(RetryPolicy.__dataclass_fields__)
    unknown = sorted(set(retry) - known)
    if unknown:
        raise InvalidTrigger(f"retry: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    for name, value in retry.items():
        expected = bool if name == "jitter" else int if name == "max_attempts" else int | float
        if isinstance(value, bool) != (name == "jitter") or not isinstance(value, expected):
            raise InvalidTrigger(f"retry: {name} must be {'true or false' if name == 'jitter' else 'a number'}")
    try:
        return RetryPolicy(**retry).as_dict()
    except ValueError as exc:
        raise InvalidTrigger(f"retry: {exc}") from None


def _idempotency_fields(options: TriggerOptions) -> dict[str, Any]:
    """Return the Run fields of a trigger's idempotency key: as given, and as the constraint guards it."""
    key, scope = options.idempotency_key, options.idempotency_key_scope
    if key is None:
        if scope is not None:
            raise InvalidTrigger("idempotency_key_scope needs an idempotency_key")
        effective = call_key_effective(options.call_key) if options.call_key else None
        return {"idempotency_key": None, "idempotency_key_scope": None, "idempotency_key_effective": effective}
    if not isinstance(key, str) or not 0 < len(key) <= 255:
        raise InvalidTrigger("idempotency_key must be a non-empty string of at most 255 characters")
    try:
        checked = scope_check(scope, parent_run_id=options.parent_run_id)
        attempt = options.parent_attempt
        if checked == IdempotencyKeyScope.ATTEMPT and attempt is None:
            attempt = parent_attempt_get(options.parent_run_id)
    except InvalidIdempotencyKey as exc:
        raise InvalidTrigger(str(exc)) from None
    effective = idempotency_key_effective(key=key, scope=checked, parent_run_id=options.parent_run_id,
                                          parent_attempt=attempt)
    return {"idempotency_key": key, "idempotency_key_scope": checked.value, "idempotency_key_effective": effective}


def _existing_for_key(fields: dict[str, Any]) -> Run | None:
    return Run.objects.filter(
        task_id=fields["task_id"],
        environment_id=fields["environment_id"],
        idempotency_key_effective=fields["idempotency_key_effective"],
    ).first()


def _create(fields: dict[str, Any]) -> tuple[Run, bool]:
    """Insert one run inside the caller's transaction; an idempotency key may return an existing run."""
    fields = dict(fields)
    if fields["parent_run_id"]:
        parent_root = Run.objects.filter(id=fields["parent_run_id"]).values_list("root_run_id", flat=True).first()
        fields["root_run_id"] = parent_root or fields["parent_run_id"]
    run = _run_unsaved({**fields, "last_event_seq": 1})
    run.created_at = run.updated_at = timezone.now()
    event = NewEvent(
        "run.created",
        {"status": run.status, "task": run.task_id, "version": fields["version"].label, "tags": run.tags},
        run.created_at,
    )
    if not _insert(run, event):
        existing = _existing_for_key(fields)
        if existing is not None:
            if existing.idempotency_expires_at is None or existing.idempotency_expires_at > timezone.now():
                return existing, False
            # The key's TTL has passed: free it so the new run can take it. The old run keeps the
            # key as given, shown as expired.
            Run.objects.filter(id=existing.id, idempotency_key_effective=existing.idempotency_key_effective).update(
                idempotency_key_effective=None
            )
        # (No holder: the key was reset between the insert and the read.)
        if not _insert(run, event):
            winner = _existing_for_key(fields)
            if winner is None:
                raise IntegrityError(f"run {run.id} could not be stored")
            return winner, False
    stored_events_publish(run.id, 1, [event])
    if run.status == RunStatus.QUEUED:
        dispatch_run_on_commit(run.id, version=run.pinned_hash, priority=run.priority)
    else:
        timer_notify(run.delay_until)
    return run, True


@functools.cache
def _run_columns() -> tuple[tuple[tuple[str, str, Any, Any], ...], frozenset[str]]:
    """Return (name, attname, default maker, foreign key or None) of each of Run's columns in order, and every name."""
    slots = tuple(
        (f.name, f.attname, f.get_default, f if f.is_relation else None) for f in Run._meta.concrete_fields
    )
    return slots, frozenset(name for slot in slots for name in slot[:2])


def _run_unsaved(fields: dict[str, Any]) -> Run:
    """Return ``Run(**fields)``, built the way rows loaded from the database are, in two thirds of the time.

    ``Run(**fields)`` looks every field up by name, calls its default and sets a foreign key through
    its descriptor; a trigger paid a tenth of its Python for that. Here each column's value is
    picked once and the instance is made from them in column order (Django's positional path); a
    related object given by name stays cached on the instance, as the descriptor leaves it.
    """
    slots, names = _run_columns()
    if not names.issuperset(fields):
        raise TypeError(f"Run has no field {', '.join(sorted(set(fields) - names))}")
    values, related = [], []
    for name, attname, default, relation in slots:
        if name in fields:
            value = fields[name]
            if relation is not None:  # a related object: the column holds its key
                related.append((relation, value))
                value = None if value is None else getattr(value, relation.target_field.attname)
        elif attname in fields:
            value = fields[attname]
        else:
            value = default()
        values.append(value)
    run = Run(*values)
    for relation, value in related:
        relation.set_cached_value(run, value)
    return run


def _insert(run: Run, event: NewEvent) -> bool:
    """Store a run and its first event; False if its idempotency key is taken.

    The run's root span is the run's own row (stepwise.runs.selectors.run_span_of): no row of its own.
    """
    if is_postgresql():
        return run_insert(run=run, event=event)
    try:
        with transaction.atomic():
            run.save(force_insert=True)
    except IntegrityError:
        if run.idempotency_key_effective is None:
            raise
        return False
    RunEvent.objects.create(run_id=run.id, seq=1, type=event.type, data=event.data, created_at=event.created_at)
    return True


def run_trigger(*, task_id: str, payload: Any, options: TriggerOptions | None = None) -> tuple[Run, bool]:
    """Create a run (or return the one its idempotency key names); return (run, created).

    On PostgreSQL the run and its first event are one statement, which needs no transaction
    around it; elsewhere they are written in one transaction.
    """
    if is_postgresql():
        return run_trigger_in_transaction(task_id=task_id, payload=payload, options=options)
    with transaction.atomic():
        return run_trigger_in_transaction(task_id=task_id, payload=payload, options=options)


def run_trigger_in_transaction(
    *, task_id: str, payload: Any, options: TriggerOptions | None = None, parent_waitpoint_id: str | None = None
) -> tuple[Run, bool]:
    """Create a run inside the caller's transaction (a parent's waitpoint and its children commit together)."""
    options = options or TriggerOptions()
    debounce, throttle = _debounce_parse(options.debounce), _throttle_parse(options.throttle)
    if debounce is not None:
        if options.idempotency_key or options.delay is not None or options.delay_until is not None:
            raise InvalidTrigger("debounce decides when the run starts and which run a trigger joins: "
                                 "give it without idempotency_key, delay or delay_until")
        options = replace(options, delay=debounce.delay)
    fields = _validated_fields(task_id, payload, options)
    fields["parent_waitpoint_id"] = parent_waitpoint_id
    if debounce is None and throttle is None:
        return _create(fields)
    with transaction.atomic():  # the gate's row stays locked until the run it lets through is stored
        if throttle is not None:
            _throttle_pass(fields, throttle)
        if debounce is not None:
            return _debounced(fields, debounce)
        return _create(fields)


def _gate(kind: str, fields: dict[str, Any], key: str) -> TriggerGate:
    lookup = {"kind": kind, "task_id": fields["task_id"], "environment_id": fields["environment_id"], "key": key}
    TriggerGate.objects.get_or_create(**lookup)
    return TriggerGate.objects.select_for_update().get(**lookup)


def _throttle_pass(fields: dict[str, Any], throttle: Throttle) -> None:
    gate = _gate("throttle", fields, throttle.key)
    now = timezone.now()
    if gate.open_at is not None and gate.open_at > now:
        wait = (gate.open_at - now).total_seconds()
        raise Throttled(
            f"throttled: task '{fields['task_id']}' lets one run with throttle key '{throttle.key}' through every "
            f"{throttle.period:g}s; the next may start in {wait:.1f}s", retry_after=wait,
        )
    gate.open_at = now + timedelta(seconds=throttle.period)
    gate.save(update_fields=["open_at"])


def _debounced(fields: dict[str, Any], debounce: Debounce) -> tuple[Run, bool]:
    """Join the key's waiting run (pushing its start back), or start a new one the next triggers join."""
    gate = _gate("debounce", fields, debounce.key)
    now = timezone.now()
    if gate.run_id is not None:
        start = now + timedelta(seconds=debounce.delay)
        if debounce.max_delay is not None and gate.first_at is not None:
            start = min(start, gate.first_at + timedelta(seconds=debounce.max_delay))
        changes: dict[str, Any] = {"delay_until": start, "updated_at": now}
        if debounce.mode == "trailing":
            changes.update(payload=fields["payload"], tags=fields["tags"], metadata=fields["metadata"])
        # Only while it waits: once the scheduler queued it, the next trigger starts a new run.
        if Run.objects.filter(id=gate.run_id, status=RunStatus.DELAYED).update(**changes):
            event_append(run_id=gate.run_id, type="run.debounced",
                         data={"key": debounce.key, "delay_until": start.isoformat(), "mode": debounce.mode})
            return Run.objects.get(id=gate.run_id), False
    run, created = _create(fields)
    gate.run, gate.first_at = run, now
    gate.save(update_fields=["run", "first_at"])
    return run, created


def trigger_options_from(item: dict[str, Any]) -> TriggerOptions:
    """Build TriggerOptions from a plain dict (API, CLI, batch item), naming unknown keys."""
    known = set(TriggerOptions.__dataclass_fields__) - {"parent_run_id", "parent_attempt", "call_key",
                                                         "replayed_from_id"}
    unknown = set(item) - known
    if unknown:
        raise InvalidTrigger(f"unknown trigger option(s): {', '.join(sorted(unknown))}")
    return TriggerOptions(**item)


def run_batch_trigger(
    *,
    task_id: str,
    items: list[dict[str, Any]],
    parent_run_id: str | None = None,
    parent_attempt: int | None = None,
    call_key: str | None = None,
) -> list[tuple[Run, bool]]:
    """Create many runs of one task in one transaction: all or none (children of ``parent_run_id`` if given).

    With ``call_key`` (the SDK's, inside a run) item ``i`` without an idempotency key of its own is
    deduplicated on ``{call_key}/{i}``.
    """
    if not items:
        raise InvalidTrigger("a batch needs at least one item")
    if len(items) > 1000:
        raise InvalidTrigger(f"a batch may hold at most 1000 items, got {len(items)}")
    prepared = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or "payload" not in item:
            raise InvalidTrigger(f"batch item {index} must be an object with a 'payload'")
        options = {k: v for k, v in item.items() if k != "payload"}
        try:
            parsed = replace(trigger_options_from(options), parent_run_id=parent_run_id, parent_attempt=parent_attempt,
                             call_key=f"{call_key}/{index}" if call_key else None)
            prepared.append(_validated_fields(task_id, item["payload"], parsed))
        except InvalidTrigger as exc:
            raise InvalidTrigger(f"batch item {index}: {exc}") from None
    # Every run of the batch carries its id as a tag, so the runs list and the API filter by batch.
    batch_tag = f"batch:{new_id('batch')}"
    for fields in prepared:
        fields["tags"] = [*fields["tags"], batch_tag]
    with transaction.atomic():
        return [_create(fields) for fields in prepared]


def payload_parse(text: str) -> Any:
    """Parse a JSON payload given as text, with an error that says what is wrong."""
    try:
        return json_parse(text, what="payload")
    except InvalidJson as exc:
        raise InvalidTrigger(str(exc)) from None
