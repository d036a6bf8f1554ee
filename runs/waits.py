"""Waitpoints and events: create, resolve, match, time out, and wake the waiting run."""
from __future__ import annotations

import hmac
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from stepwise.runs.attempts import attempt_end
from stepwise.runs.dispatch import dispatch_run_on_commit, queue_dispatch_on_commit
from stepwise.runs.engine.checkpoints import checkpoint_encode
from stepwise.runs.engine.errors import RunInterrupted, StepwiseError, error_summary
from stepwise.runs.engine.store import Claim
from stepwise.runs.engine.waits import WaitpointState, WaitSpec, event_name_check
from stepwise.runs.events import event_append, publish_run_event_on_commit
from stepwise.runs.models import (
    AttemptStatus,
    Event,
    Run,
    Step,
    Waitpoint,
    WaitpointChild,
    WaitpointKind,
    WaitpointStatus,
)
from stepwise.runs.statements import is_postgresql, waitpoints_fire
from stepwise.runs.states import run_transition
from stepwise.runs.statuses import ACTIVE_STATUSES, FINAL_STATUSES, RunStatus
from stepwise.runs.timers import timer_notify
from stepwise.runs.tracing.storage import spans_store
from stepwise.runs.triggers import TriggerOptions, run_trigger_in_transaction
from stepwise.tasks.services import UnknownEnvironment, environment_require


class WaitpointError(StepwiseError):
    """A waitpoint cannot be completed: unknown, already resolved, timed out, or its run is over."""


class WaitpointNotFound(WaitpointError):
    """No waitpoint has this id (in the caller's environment)."""


class WaitpointAlreadyResolved(WaitpointError):
    """The waitpoint was completed, timed out or canceled, or its run is over: it cannot change any more."""


def _state(wp: Waitpoint) -> WaitpointState:
    return WaitpointState(
        id=wp.id, status=wp.status, output=wp.output, created_at=wp.created_at, resolved_at=wp.completed_at
    )


def filter_matches(event_filter: dict[str, Any], payload: Any) -> bool:
    """Tell whether a payload holds every key/value of a filter (nested objects match recursively)."""
    if not isinstance(payload, dict):
        return not event_filter
    for key, expected in event_filter.items():
        if key not in payload:
            return False
        actual = payload[key]
        if isinstance(expected, dict):
            if not filter_matches(expected, actual):
                return False
        elif actual != expected:
            return False
    return True


def _wake(run_id: str) -> None:
    """Re-queue a WAITING run inside the caller's transaction (a run still executing picks the result up itself)."""
    run = Run.objects.select_for_update(no_key=True).filter(id=run_id).values("status", "priority").first()
    if run and run["status"] == RunStatus.WAITING:
        run_transition(
            run_id=run_id, to=RunStatus.QUEUED, expected_from=[RunStatus.WAITING], dispatched_at=timezone.now()
        )
        dispatch_run_on_commit(run_id, resume=True)


def _resolve(wp: Waitpoint, *, status: str, output: Any, by: str = "") -> Waitpoint:
    """Resolve a locked PENDING waitpoint, note it on the run, and wake the run."""
    now = timezone.now()
    Waitpoint.objects.filter(id=wp.id).update(status=status, output=output, completed_by=by, completed_at=now)
    wp.status, wp.output, wp.completed_by, wp.completed_at = status, output, by, now
    event_append(
        run_id=wp.run_id,
        type="wait.completed" if status == WaitpointStatus.COMPLETED else "wait.timed_out",
        data={"key": wp.key, "waitpoint": wp.id, "kind": wp.kind, **({"by": by} if by else {})},
    )
    _wake(wp.run_id)
    return wp


def _match_stored_event(wp: Waitpoint) -> Event | None:
    """Find the earliest stored event this waitpoint may take (sent since events_since, not taken by the run)."""
    taken = Waitpoint.objects.filter(run_id=wp.run_id, matched_event__isnull=False).values("matched_event_id")
    candidates = (
        Event.objects.filter(
            environment_id=wp.run.environment_id, name=wp.event_name, created_at__gte=wp.events_since
        )
        .exclude(id__in=taken)
        .order_by("created_at", "id")
    )
    for event in candidates.iterator():
        if filter_matches(wp.event_filter, event.payload):
            return event
    return None


def _lock_if_ours(claim: Claim) -> Run:
    run = (
        Run.objects.select_for_update(no_key=True)
        .filter(id=claim.run_id, lease_token=claim.lease_token, status=RunStatus.EXECUTING)
        .first()
    )
    if run is None:
        raise RunInterrupted(f"run {claim.run_id} is no longer held by attempt {claim.attempt_number}")
    return run


def waitpoint_get(claim: Claim, *, key: str | None = None, waitpoint_id: str | None = None) -> WaitpointState | None:
    """Return one of the run's waitpoints by key or id."""
    qs = Waitpoint.objects.filter(run_id=claim.run_id)
    wp = qs.filter(key=key).first() if key is not None else qs.filter(id=waitpoint_id).first()
    return _state(wp) if wp else None


def waits_resolved_unrecorded(run_id: str) -> dict[str, WaitpointState]:
    """Return the run's resolved waitpoints, by key, whose wait no step records yet (what a claim brings)."""
    recorded = Step.objects.filter(run_id=run_id, key=OuterRef("key"))
    resolved = Waitpoint.objects.filter(run_id=run_id).exclude(status=WaitpointStatus.PENDING)
    return {wp.key: _state(wp) for wp in resolved.filter(~Exists(recorded))}


def waitpoint_create(claim: Claim, *, key: str, position: int, spec: WaitSpec) -> WaitpointState:
    """Create a waitpoint for the claimed run, with its child runs; match a stored event at once."""
    with transaction.atomic():
        run = _lock_if_ours(claim)
        if spec.kind == WaitpointKind.EVENT:
            _lock_event_name(spec.event_name)
        since = run.created_at
        if spec.lookback_seconds is not None:
            since = min(since, timezone.now() - timedelta(seconds=spec.lookback_seconds))
        wp = Waitpoint.objects.create(
            run_id=claim.run_id,
            key=key,
            position=position,
            kind=spec.kind,
            resume_at=spec.resume_at,
            event_name=spec.event_name,
            event_filter=spec.event_filter,
            events_since=since if spec.kind == WaitpointKind.EVENT else None,
            description=spec.description,
        )
        wp.run = run
        timer_notify(spec.resume_at)
        event_append(
            run_id=claim.run_id,
            type="wait.started",
            data={
                "key": key,
                "waitpoint": wp.id,
                "kind": spec.kind,
                "position": position,
                "attempt": claim.attempt_number,
                **({"resume_at": spec.resume_at.isoformat()} if spec.resume_at else {}),
                **({"event": spec.event_name} if spec.event_name else {}),
            },
        )
        children = []
        for child in spec.children:
            extra = {k: v for k, v in child.options.items() if k != "environment"}
            options = TriggerOptions(**extra, parent_run_id=claim.run_id, parent_attempt=claim.attempt_number,
                                     environment=claim.environment)
            found, _ = run_trigger_in_transaction(
                task_id=child.task_id, payload=child.payload, options=options, parent_waitpoint_id=wp.id
            )
            children.append(found)
        if children:
            _children_link(wp, children)
        if spec.kind == WaitpointKind.EVENT:
            event = _match_stored_event(wp)
            if event is not None:
                Waitpoint.objects.filter(id=wp.id).update(matched_event=event)
                _resolve(wp, status=WaitpointStatus.COMPLETED, output=event.payload)
    return _state(wp)


def run_suspend(claim: Claim, *, waitpoint_id: str, elapsed: float, spans: list[dict[str, Any]] = ()) -> bool:
    """Move the run to WAITING unless the waitpoint was resolved meanwhile; the worker is then free."""
    with transaction.atomic():
        wp = Waitpoint.objects.select_for_update(no_key=True).get(id=waitpoint_id)
        run = _lock_if_ours(claim)
        if spans:  # handed over by the attempt: stored whether or not the run now waits
            spans_store(list(spans))
        if wp.status != WaitpointStatus.PENDING:
            return False
        run_transition(
            run_id=claim.run_id,
            to=RunStatus.WAITING,
            expected_from=[RunStatus.EXECUTING],
            expected_token=claim.lease_token,
            event_data={"waitpoint": waitpoint_id, "attempt": claim.attempt_number},
            lease_token=None,
            lease_expires_at=None,
            executed_seconds=F("executed_seconds") + elapsed,
        )
        attempt_end(run_id=claim.run_id, number=claim.attempt_number, status=AttemptStatus.SUSPENDED)
        queue_dispatch_on_commit(run.queue, run_id=claim.run_id)
    return True


def _lock_pending(waitpoint_id: str, *, environment: str | None, kinds: tuple[str, ...], refusal: str) -> Waitpoint:
    """Lock a PENDING waitpoint of a run not finished; raise saying why not (``refusal``: other kinds)."""
    qs = Waitpoint.objects.select_for_update(no_key=True).select_related("run").filter(id=waitpoint_id)
    if environment is not None:
        qs = qs.filter(run__environment_id=environment)
    wp = qs.first()
    if wp is None:
        where = f" in environment '{environment}'" if environment is not None else ""
        raise WaitpointNotFound(f"no waitpoint with id '{waitpoint_id}'{where}")
    if wp.kind not in kinds:
        kind = wp.get_kind_display().lower()
        raise WaitpointError(f"waitpoint {waitpoint_id} waits for {kind}; {refusal}")
    if wp.status == WaitpointStatus.TIMED_OUT:
        raise WaitpointAlreadyResolved(
            f"waitpoint {waitpoint_id} timed out at {wp.completed_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    if wp.status != WaitpointStatus.PENDING:
        raise WaitpointAlreadyResolved(f"waitpoint {waitpoint_id} is already {wp.status.lower()}")
    if wp.run.status in FINAL_STATUSES:
        raise WaitpointAlreadyResolved(
            f"waitpoint {waitpoint_id} belongs to run {wp.run_id}, which is {wp.run.status}"
        )
    return wp


def _complete_token(waitpoint_id: str, *, output: Any, by: str, environment: str | None) -> Waitpoint:
    output = checkpoint_encode(
        output, where="the waitpoint output", max_bytes=settings.STEPWISE_MAX_PAYLOAD_BYTES
    )
    with transaction.atomic():
        wp = _lock_pending(waitpoint_id, environment=environment, kinds=(WaitpointKind.TOKEN,),
                           refusal="only tokens can be completed")
        return _resolve(wp, status=WaitpointStatus.COMPLETED, output=output, by=by)


def waitpoint_time_out(*, waitpoint_id: str, by: str = "", environment: str | None = None) -> Waitpoint:
    """Time a pending token or event wait out now: its run resumes with ``ok`` False, as at its timeout."""
    with transaction.atomic():
        wp = _lock_pending(waitpoint_id, environment=environment, kinds=(WaitpointKind.TOKEN, WaitpointKind.EVENT),
                           refusal="only token and event waits can be timed out (skip a timer instead)")
        return _resolve(wp, status=WaitpointStatus.TIMED_OUT, output=None, by=by)


def waitpoint_skip(*, waitpoint_id: str, by: str = "", environment: str | None = None) -> Waitpoint:
    """Resolve a pending wait now as if it was over: a timer resumes early, a token or an event resumes
    with ``{"skipped": true}``. Child runs cannot be skipped (their results are the wait's output)."""
    with transaction.atomic():
        wp = _lock_pending(
            waitpoint_id, environment=environment,
            kinds=(WaitpointKind.DURATION, WaitpointKind.DATE, WaitpointKind.TOKEN, WaitpointKind.EVENT),
            refusal="a wait for child runs cannot be skipped: cancel the children instead",
        )
        output = {"skipped": True}
        if wp.kind in (WaitpointKind.DURATION, WaitpointKind.DATE):
            output["resumed_at"] = timezone.now().isoformat()
        return _resolve(wp, status=WaitpointStatus.COMPLETED, output=output, by=by)


CALLBACK_SALT = "stepwise.waitpoint-callback"


class CallbackRefused(WaitpointError):
    """A callback URL's signature does not match its waitpoint (HTTP 401)."""


def waitpoint_callback_signature(waitpoint_id: str, *, secret: str | None = None) -> str:
    """Return the signature that makes a token's callback URL its own credential (HMAC-SHA256, SECRET_KEY)."""
    return salted_hmac(CALLBACK_SALT, waitpoint_id, secret=secret, algorithm="sha256").hexdigest()


def waitpoint_callback_url(waitpoint_id: str) -> str:
    """Return the URL an outside service POSTs JSON to, to complete a token (no API key: the URL is the key)."""
    signature = waitpoint_callback_signature(waitpoint_id)
    return f"{settings.STEPWISE_PUBLIC_URL.rstrip('/')}/api/waitpoints/{waitpoint_id}/callback/{signature}"


def waitpoint_callback_complete(*, waitpoint_id: str, signature: str, output: Any) -> Waitpoint:
    """Complete a token through its callback URL: once, before it times out, with the URL's signature."""
    candidates = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]  # a rotated SECRET_KEY keeps old URLs
    if not any(hmac.compare_digest(waitpoint_callback_signature(waitpoint_id, secret=key), signature)
               for key in candidates):
        raise CallbackRefused("the callback URL's signature does not match: use the url wait.create_token returned")
    return _complete_token(waitpoint_id, output=output, by="callback", environment=None)


def _decision(data: dict[str, Any] | None, *, approved: bool) -> dict[str, Any]:
    if data is not None and not isinstance(data, dict):
        raise WaitpointError(f"an approval's data must be a JSON object, not {type(data).__name__}")
    return {**(data or {}), "approved": approved}


def waitpoint_complete(
    *, waitpoint_id: str, output: Any = None, by: str = "api", environment: str | None = None
) -> Waitpoint:
    """Complete a token waitpoint with an output; the run resumes with it.

    With ``environment``, a waitpoint of another environment is not found.
    """
    return _complete_token(waitpoint_id, output=output, by=by, environment=environment)


def waitpoint_approve(
    *, waitpoint_id: str, data: dict[str, Any] | None = None, by: str = "", environment: str | None = None
) -> Waitpoint:
    """Approve a token waitpoint; its run resumes with ``{"approved": True, **data}``."""
    output = _decision(data, approved=True)
    return _complete_token(waitpoint_id, output=output, by=by, environment=environment)


def waitpoint_reject(
    *, waitpoint_id: str, data: dict[str, Any] | None = None, by: str = "", environment: str | None = None
) -> Waitpoint:
    """Reject a token waitpoint; its run resumes with ``{"approved": False, **data}``."""
    output = _decision(data, approved=False)
    return _complete_token(waitpoint_id, output=output, by=by, environment=environment)


def _lock_event_name(name: str) -> None:
    """Serialise event sends and event waits of one name, so neither misses the other."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"stepwise-event:{name}"])


def event_send(
    *, name: str, payload: Any = None, environment: str = "dev", idempotency_key: str | None = None
) -> tuple[Event, int]:
    """Store an event and resume every pending wait it matches; return (event, matched waits).

    With an ``idempotency_key`` an event sent before under that key is returned, with the
    waits it resumed then, and nothing is sent again.
    """
    event_name_check(name)
    payload = checkpoint_encode(
        {} if payload is None else payload, where="the event payload", max_bytes=settings.STEPWISE_MAX_PAYLOAD_BYTES
    )
    try:
        environment_require(environment)
    except UnknownEnvironment as exc:
        raise WaitpointError(str(exc)) from None
    matched = 0
    with transaction.atomic():
        _lock_event_name(name)
        if idempotency_key is not None:
            sent = Event.objects.filter(idempotency_key=idempotency_key).first()
            if sent is not None:
                return sent, Waitpoint.objects.filter(matched_event=sent).count()
        event = Event.objects.create(name=name, payload=payload, environment_id=environment,
                                     idempotency_key=idempotency_key)
        pending = (
            Waitpoint.objects.select_for_update(of=("self",), no_key=True)
            .select_related("run")
            .filter(status=WaitpointStatus.PENDING, kind=WaitpointKind.EVENT, event_name=name,
                    run__environment_id=environment, events_since__lte=event.created_at)
            .order_by("created_at")
        )
        if connection.vendor == "postgresql":
            # Only waits whose filter the payload may hold are locked and fetched (jsonb <@), not
            # every wait on the name; filter_matches below still decides, with list equality.
            pending = pending.filter(Q(event_filter={}) | Q(event_filter__contained_by=payload))
        for wp in pending:
            if filter_matches(wp.event_filter, payload):
                Waitpoint.objects.filter(id=wp.id).update(matched_event=event)
                _resolve(wp, status=WaitpointStatus.COMPLETED, output=payload)
                matched += 1
    return event, matched


def waitpoints_fire_due(now) -> int:
    """Complete due timers and time out waits whose timeout passed; wake their runs."""
    if is_postgresql():
        fired = 0
        while True:  # batches of a thousand, one statement each
            batch = waitpoints_fire(now=now)
            for event in batch.events:
                publish_run_event_on_commit(event)
            for run_id in batch.woken:
                dispatch_run_on_commit(run_id, resume=True)
            fired += batch.resolved
            if batch.resolved < 1000:
                return fired
    fired = 0
    with transaction.atomic():
        due = list(
            Waitpoint.objects.select_for_update(skip_locked=True, no_key=True)
            .filter(status=WaitpointStatus.PENDING, resume_at__lte=now)
            .order_by("resume_at")[:200]
        )
        for wp in due:
            if wp.kind in (WaitpointKind.DURATION, WaitpointKind.DATE):
                _resolve(wp, status=WaitpointStatus.COMPLETED, output={"resumed_at": now.isoformat()})
            else:
                _resolve(wp, status=WaitpointStatus.TIMED_OUT, output=None)
            fired += 1
    return fired


def _children_link(wp: Waitpoint, children: list[Run]) -> None:
    """Note the runs a wait waits for, in its items' order, and resolve it now if they all ended.

    A child is usually new; an idempotency key may name a run that exists already (another
    parent's, or one that has finished): the wait waits for that run, or takes its result. Such
    a run's end takes the path that resolves waitpoints (its ``parent_waitpoint``), unless it has
    one already; a run executing meanwhile is caught by the scheduler's ``children_waits_settle``.
    """
    WaitpointChild.objects.bulk_create(
        [WaitpointChild(waitpoint=wp, run=run, position=index) for index, run in enumerate(children)]
    )
    adopted = [run.id for run in children if run.parent_waitpoint_id is None]
    if adopted:
        Run.objects.filter(id__in=adopted, parent_waitpoint__isnull=True).update(parent_waitpoint=wp)
    _children_resolve_if_ended(wp)


def _children_resolve_if_ended(wp: Waitpoint) -> bool:
    """Resolve a pending CHILDREN waitpoint whose runs have all ended, with their results in item order."""
    children = [link.run for link in wp.child_links.select_related("run").order_by("position")]
    if not children or any(child.status not in FINAL_STATUSES for child in children):
        return False
    results = [
        {"run_id": c.id, "ok": c.status == RunStatus.COMPLETED, "status": c.status, "output": c.output,
         "error": error_summary(c.error) if c.error else None}
        for c in children
    ]
    _resolve(wp, status=WaitpointStatus.COMPLETED, output=results)
    return True


def waitpoints_on_run_finished(run_id: str) -> None:
    """When a run ends, resolve each wait for it whose runs have all ended."""
    waiting = (
        Waitpoint.objects.select_for_update(no_key=True)
        .filter(child_links__run_id=run_id, status=WaitpointStatus.PENDING)
        .order_by("id")
    )
    for wp in waiting:
        _children_resolve_if_ended(wp)


def children_waits_settle(limit: int = 100) -> int:
    """Resolve pending waits for runs that have all ended but whose end resolved nothing (the scheduler's net).

    A run that a wait adopted while the run was executing ends through the path that does not
    look for waits; this finds those waits within a pass.
    """
    active = WaitpointChild.objects.filter(waitpoint=OuterRef("pk"), run__status__in=ACTIVE_STATUSES)
    candidates = list(
        Waitpoint.objects.filter(kind=WaitpointKind.CHILDREN, status=WaitpointStatus.PENDING)
        .filter(Exists(WaitpointChild.objects.filter(waitpoint=OuterRef("pk"))))
        .exclude(Exists(active))
        .values_list("id", flat=True)[:limit]
    )
    settled = 0
    for wp_id in candidates:
        with transaction.atomic():
            wp = Waitpoint.objects.select_for_update(no_key=True, skip_locked=True).filter(
                id=wp_id, status=WaitpointStatus.PENDING).first()
            if wp is not None and _children_resolve_if_ended(wp):
                settled += 1
    return settled


def waitpoints_cancel_for_run(run_id: str) -> None:
    """Cancel a canceled run's pending waitpoints."""
    Waitpoint.objects.filter(run_id=run_id, status=WaitpointStatus.PENDING).update(
        status=WaitpointStatus.CANCELED, completed_at=timezone.now()
    )
