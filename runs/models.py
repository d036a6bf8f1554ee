"""Runs, attempts, steps and the per-run event log."""
from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from django.db import models
from django.db.models import Q
from django.utils import timezone

from stepwise.runs.ids import new_run_id, new_span_id, new_trace_id
from stepwise.runs.statuses import (  # noqa: F401  (the enums are part of the models' public surface)
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    AttemptStatus,
    IdempotencyKeyScope,
    RunStatus,
    SpanKind,
    SpanStatus,
    StepStatus,
    VersionPolicy,
    WaitpointKind,
    WaitpointStatus,
)


class RunQuerySet(models.QuerySet):
    def for_task(self, task_id: str) -> RunQuerySet:
        """Runs of one task."""
        return self.filter(task_id=task_id)

    def active(self) -> RunQuerySet:
        """Runs that have not reached a final status."""
        return self.filter(status__in=ACTIVE_STATUSES)

    def queued_in(self, queue_name: str, concurrency_key: str | None = None, *, environment: str) -> RunQuerySet:
        """QUEUED runs of an environment's queue (and concurrency key), best first: highest priority, then oldest."""
        qs = self.filter(environment_id=environment, queue=queue_name, status=RunStatus.QUEUED)
        if concurrency_key:
            qs = qs.filter(concurrency_key=concurrency_key)
        return qs.order_by("-priority", "id")

    def executing_in(self, queue_name: str, concurrency_key: str | None = None, *, environment: str) -> RunQuerySet:
        """Runs holding a slot of an environment's queue (and concurrency key)."""
        qs = self.filter(environment_id=environment, queue=queue_name, status=RunStatus.EXECUTING)
        if concurrency_key is not None:
            qs = qs.filter(concurrency_key=concurrency_key)
        return qs


class Run(models.Model):
    """One triggered execution of a task."""

    id = models.CharField(primary_key=True, max_length=40, default=new_run_id, editable=False)
    task = models.ForeignKey("stepwise_tasks.Task", on_delete=models.PROTECT, related_name="runs", db_index=False)
    version = models.ForeignKey(
        "stepwise_tasks.TaskVersion", on_delete=models.PROTECT, related_name="runs", db_index=False
    )
    # Where the run may execute, fixed at trigger from its task's code (README: Deploying new code).
    version_policy = models.CharField(max_length=8, choices=VersionPolicy.choices, default=VersionPolicy.LATEST)
    # Set while the run, pinned and QUEUED, finds no running worker holding its version; cleared by a claim.
    version_wait_since = models.DateTimeField(null=True, blank=True)
    environment = models.ForeignKey(
        "stepwise_tasks.Environment", on_delete=models.PROTECT, related_name="runs", default="dev", db_index=False
    )
    status = models.CharField(max_length=16, choices=RunStatus.choices)
    payload = models.JSONField(default=dict)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    # The idempotency key and scope as the trigger gave them: kept for display after the key is freed.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)
    idempotency_key_scope = models.CharField(max_length=8, null=True, blank=True, choices=IdempotencyKeyScope.choices)
    # What the unique constraint guards: the key combined with its scope (stepwise.runs.idempotency); NULL once
    # the key is freed (its TTL passed and another run took it, or it was reset).
    idempotency_key_effective = models.CharField(max_length=255, null=True, blank=True)
    idempotency_expires_at = models.DateTimeField(null=True, blank=True)
    idempotency_key_reset_at = models.DateTimeField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Where the code stood at the last stored metadata change made outside a step: [the number
    # of steps called before it, its index among the changes since]. A replay skips changes up
    # to here, which the stored metadata holds already.
    metadata_cursor = models.JSONField(null=True, blank=True)
    # The trigger's retry policy, overriding the task's (RetryPolicy fields); null: the task's.
    retry = models.JSONField(null=True, blank=True)
    # The once-per-run hooks that ran and were stored (on_start, on_success...): never run again.
    hooks_done = models.JSONField(default=list, blank=True)
    queue = models.CharField(max_length=128)
    concurrency_key = models.CharField(max_length=255, blank=True, default="")
    priority = models.IntegerField(default=0)
    delay_until = models.DateTimeField(null=True, blank=True)
    ttl_expires_at = models.DateTimeField(null=True, blank=True)
    max_duration = models.FloatField(null=True, blank=True)
    parent_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, db_index=False, related_name="child_runs"
    )
    root_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, db_index=False, related_name="+"
    )
    parent_waitpoint = models.ForeignKey(
        "stepwise_runs.Waitpoint", null=True, blank=True, on_delete=models.SET_NULL, db_index=False,
        related_name="child_runs",
    )
    replayed_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, db_index=False, related_name="replays"
    )
    attempt_count = models.PositiveIntegerField(default=0)
    crash_count = models.PositiveIntegerField(default=0)
    lease_token = models.CharField(max_length=40, null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=128, blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    executed_seconds = models.FloatField(default=0)
    last_event_seq = models.PositiveIntegerField(default=0)
    # The run's root span: every attempt's spans join this trace under this span. The span itself
    # is this row (stepwise.runs.selectors.run_span_of): its parent is the caller's span, if any.
    trace_id = models.CharField(max_length=32, default=new_trace_id)
    span_id = models.CharField(max_length=16, default=new_span_id)
    parent_span_id = models.CharField(max_length=16, blank=True, default="", db_default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        constraints = [
            # The database, not a read, decides which of many concurrent duplicates wins.
            models.UniqueConstraint(
                fields=["task", "environment", "idempotency_key_effective"],
                condition=Q(idempotency_key_effective__isnull=False),
                name="uniq_run_idempotency_key",
            )
        ]
        indexes = [
            models.Index(fields=["queue", "status"], name="run_queue_status"),
            # The sweeper's timers, each read for one status: a run is in them only while it retries
            # or executes, so triggering and finishing a run write no entry into either.
            models.Index(fields=["next_attempt_at"], name="run_retry_due", condition=Q(status=RunStatus.RETRYING)),
            models.Index(fields=["lease_expires_at"], name="run_lease_expiry", condition=Q(status=RunStatus.EXECUTING)),
            models.Index(fields=["task", "-id"], name="run_task_id"),
            # The console's runs-list filters (the tag filter uses a GIN index made in 0002).
            models.Index(fields=["status", "-id"], name="run_status_id"),
            models.Index(fields=["version", "-id"], name="run_version_id"),
            models.Index(fields=["idempotency_key"], name="run_idempotency_key",
                         condition=Q(idempotency_key__isnull=False)),
            models.Index(fields=["environment", "-id"], name="run_environment_id"),
            # Links are rare: partial indexes cost a run that has none nothing on insert or update.
            models.Index(fields=["parent_run"], name="run_parent", condition=Q(parent_run__isnull=False)),
            models.Index(fields=["root_run"], name="run_root", condition=Q(root_run__isnull=False)),
            models.Index(fields=["parent_waitpoint"], name="run_parent_waitpoint",
                         condition=Q(parent_waitpoint__isnull=False)),
            models.Index(fields=["replayed_from"], name="run_replayed_from", condition=Q(replayed_from__isnull=False)),
            # The scheduler's pass over pinned runs: only those rows are in these indexes.
            models.Index(fields=["version"], name="run_pinned_queued",
                         condition=Q(status=RunStatus.QUEUED, version_policy=VersionPolicy.PIN)),
            models.Index(fields=["version_wait_since"], name="run_version_wait",
                         condition=Q(version_wait_since__isnull=False)),
            # Alerts look for runs that ended badly since their last pass; finished runs that
            # completed (most of them) are not in this index.
            models.Index(fields=["environment", "finished_at"], name="run_ended_badly",
                         condition=Q(status__in=[RunStatus.FAILED, RunStatus.CRASHED, RunStatus.TIMED_OUT])),
        ]

    def __str__(self) -> str:
        return self.id

    @property
    def is_finished(self) -> bool:
        return RunStatus(self.status).is_finished

    @property
    def idempotency_key_state(self) -> str | None:
        """Say what became of the run's idempotency key: "active", "expired", "reset", or None without one."""
        if self.idempotency_key is None:
            return None
        if self.idempotency_key_reset_at is not None:
            return "reset"
        if self.idempotency_expires_at is not None and self.idempotency_expires_at <= timezone.now():
            return "expired"
        return "active"

    @property
    def waiting_for_version(self) -> bool:
        """Whether the run is QUEUED while no running worker holds the version it is pinned to."""
        return self.status == RunStatus.QUEUED and self.version_wait_since is not None

    @property
    def pinned_hash(self) -> str | None:
        """The content hash of the only code this run may execute on (its hints go there), or None."""
        return self.version.content_hash if self.version_policy == VersionPolicy.PIN else None




def hot_run_link(related_name: str) -> models.ForeignKey:
    """Return the link to its run of a row the hot path inserts (a step, an event, a span).

    No database constraint: every such row is written by a statement that first updated its run
    (the fenced write in stepwise.runs.statements), and a run's rows are deleted with it (the
    ORM's cascade, retention's explicit deletes). A constraint checked each insert at commit, per row.
    """
    return models.ForeignKey(
        Run, on_delete=models.CASCADE, related_name=related_name, db_index=False, db_constraint=False
    )


class Attempt(models.Model):
    """One try at executing a run."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="attempts", db_index=False)
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=AttemptStatus.choices)
    worker_id = models.CharField(max_length=128)
    lease_token = models.CharField(max_length=40)
    version = models.ForeignKey(
        "stepwise_tasks.TaskVersion", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    error = models.JSONField(null=True, blank=True)
    retry_delay = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # The attempt's span, when this row holds it instead of a span row (stepwise.runs.selectors.spans_held).
    span_id = models.CharField(max_length=16, blank=True, default="", db_default="")

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="uniq_attempt_number")
        ]




class Step(models.Model):
    """The recorded result of one durable step inside a run."""

    run = hot_run_link("steps")
    position = models.PositiveIntegerField()
    key = models.CharField(max_length=255)
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, default="step")
    status = models.CharField(max_length=16, choices=StepStatus.choices)
    output = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    attempt_number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    # The span of the step, when it is stored here rather than as a Span row: a step that completed
    # with nothing on its span but what the engine puts there (stepwise.runs.selectors.run_spans).
    # A database default too: a worker of the previous release, still running while this one
    # migrates, inserts steps without these columns.
    span_id = models.CharField(max_length=16, blank=True, default="", db_default="")
    parent_span_id = models.CharField(max_length=16, blank=True, default="", db_default="")

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "key"], name="uniq_step_key"),
            models.UniqueConstraint(fields=["run", "position"], name="uniq_step_position"),
        ]

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000


class RunEvent(models.Model):
    """One entry of a run's append-only, gap-free event sequence."""

    run = hot_run_link("events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=64)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="uniq_run_event_seq")]

    def as_message(self) -> dict:
        return event_message(self.run_id, self.seq, self.type, self.data, self.created_at)


class NewEvent(NamedTuple):
    """An event the hot path is about to append: what a RunEvent instance would hold, at a tuple's cost.

    The statement that appends it numbers it (``RunEvent.seq``); building a model instance
    for each step's event would cost its init signals and field loop for nothing.
    """

    type: str
    data: dict[str, Any]
    created_at: datetime


def event_message(run_id: str, seq: int | None, type_: str, data: dict[str, Any], at: datetime) -> dict[str, Any]:
    """Return a stored event as its run's listeners receive it."""
    return {"run_id": run_id, "seq": seq, "type": type_, "data": data, "at": at.isoformat()}


def new_waitpoint_id() -> str:
    from stepwise.runs.ids import new_id

    return new_id("wp")


def new_event_id() -> str:
    from stepwise.runs.ids import new_id

    return new_id("evt")


class Event(models.Model):
    """An event sent to the platform; waits match it by name and filter."""

    id = models.CharField(primary_key=True, max_length=40, default=new_event_id, editable=False)
    environment = models.ForeignKey(
        "stepwise_tasks.Environment", on_delete=models.PROTECT, default="dev", db_index=False
    )
    name = models.CharField(max_length=255)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when a run sent the event: the run's call, so a replay finds it instead of sending again.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["environment", "name", "created_at"], name="event_name_time")]
        constraints = [
            models.UniqueConstraint(fields=["idempotency_key"], name="uniq_event_idempotency_key",
                                    condition=models.Q(idempotency_key__isnull=False)),
        ]


class Waitpoint(models.Model):
    """Something a run waits for; completing it re-queues the run."""

    id = models.CharField(primary_key=True, max_length=40, default=new_waitpoint_id, editable=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="waitpoints", db_index=False)
    key = models.CharField(max_length=255)
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=WaitpointKind.choices)
    status = models.CharField(max_length=16, choices=WaitpointStatus.choices, default=WaitpointStatus.PENDING)
    resume_at = models.DateTimeField(null=True, blank=True)
    event_name = models.CharField(max_length=255, blank=True, default="")
    event_filter = models.JSONField(default=dict, blank=True)
    events_since = models.DateTimeField(null=True, blank=True)
    matched_event = models.ForeignKey(
        Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", db_index=False
    )
    description = models.CharField(max_length=500, blank=True, default="")
    output = models.JSONField(null=True, blank=True)
    completed_by = models.CharField(max_length=150, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="uniq_waitpoint_key")]
        indexes = [
            models.Index(fields=["status", "resume_at"], name="waitpoint_due"),
            models.Index(fields=["status", "kind", "event_name"], name="waitpoint_event"),
            models.Index(fields=["matched_event"], name="waitpoint_matched_event",
                         condition=Q(matched_event__isnull=False)),
        ]




class WaitpointChild(models.Model):
    """A run a CHILDREN waitpoint waits for: one the wait triggered, or an existing run its idempotency key named."""

    waitpoint = models.ForeignKey(Waitpoint, on_delete=models.CASCADE, related_name="child_links", db_index=False)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="waited_by")
    position = models.PositiveIntegerField()  # the item's place in the wait's batch: results come in this order

    class Meta:
        constraints = [models.UniqueConstraint(fields=["waitpoint", "position"], name="uniq_waitpoint_child")]


class TriggerGate(models.Model):
    """The state of one debounce or throttle key of a task in an environment.

    Debounce: ``run`` is the DELAYED run that triggers with the key collapse into, ``first_at``
    when the first of them came (``max_delay`` counts from there). Throttle: ``open_at`` is when
    the key lets the next trigger through.
    """

    kind = models.CharField(max_length=8)  # debounce | throttle
    task = models.ForeignKey("stepwise_tasks.Task", on_delete=models.CASCADE, related_name="+", db_index=False)
    environment = models.ForeignKey("stepwise_tasks.Environment", on_delete=models.CASCADE, related_name="+",
                                    db_index=False)
    key = models.CharField(max_length=255)
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    first_at = models.DateTimeField(null=True, blank=True)
    open_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["kind", "task", "environment", "key"], name="uniq_trigger_gate")]


class Span(models.Model):
    """An OpenTelemetry span belonging to a run; its events hold the log lines."""

    run = hot_run_link("spans")
    trace_id = models.CharField(max_length=32)
    span_id = models.CharField(max_length=16)
    parent_span_id = models.CharField(max_length=16, blank=True, default="")
    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=16, choices=SpanKind.choices)
    status = models.CharField(max_length=8, choices=SpanStatus.choices, default=SpanStatus.UNSET)
    status_message = models.TextField(blank=True, default="")
    attributes = models.JSONField(default=dict, blank=True)
    events = models.JSONField(default=list, blank=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at", "id"]
        constraints = [models.UniqueConstraint(fields=["trace_id", "span_id"], name="uniq_span_id")]
        indexes = [models.Index(fields=["run", "started_at"], name="span_run_started")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"

    @property
    def duration_ms(self) -> float | None:
        if self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds() * 1000


class SchedulerBeat(models.Model):
    """When a running scheduler last finished a pass: its health, read by probes and metrics."""

    scheduler = models.CharField(primary_key=True, max_length=128)
    started_at = models.DateTimeField()
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.scheduler} at {self.beat_at:%H:%M:%S}"
