"""Reads on runs, shared by the CLI, the API and the console."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import Count, Prefetch, Q, QuerySet

from stepwise.runs.engine.spans import attempt_span_attributes, step_span_attributes
from stepwise.runs.ids import encode_millis
from stepwise.runs.models import Attempt, Run, RunEvent, Span, SpanKind, SpanStatus, Step, Waitpoint, WaitpointStatus
from stepwise.runs.statuses import FINAL_STATUSES, run_span_result
from stepwise.tasks.models import TaskVersion
from stepwise.tasks.redaction import RunDisplay, run_display, run_shown, step_shown

# Every reader that shows runs takes the ``viewer`` it shows them to (a user, an API key, a public
# token): what is hidden from whom is decided in stepwise.tasks.access.payloads_hidden. None is Stepwise itself
# (the local CLI, run by whoever runs the server): it sees what is stored, PII redacted.


def run_get(*, run_id: str, viewer: Any = None) -> Run | None:
    """Return a run with its task and version, or None; what is shown of it is redacted (README: PII redaction)."""
    run = Run.objects.select_related("task", "version").filter(id=run_id).first()
    return None if run is None else run_shown(run, viewer=viewer)


def run_list(*, task_id: str | None = None, status: str | None = None, limit: int = 50) -> QuerySet[Run]:
    """Return the newest runs, optionally of one task or status."""
    qs = Run.objects.select_related("version").order_by("-id")
    if task_id:
        qs = qs.for_task(task_id)
    if status:
        qs = qs.filter(status=status)
    return qs[:limit]


def run_events_after(*, run_id: str, after: int = 0, limit: int = 1000) -> list[RunEvent]:
    """Return a run's stored events with seq greater than ``after``, in order."""
    return list(RunEvent.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")[:limit])


def run_stream_chunks(*, run_id: str, key: str, attempt: int) -> list[Any]:
    """Return the chunks one attempt sent on one stream of a run (``ctx.stream``), in order."""
    data = (RunEvent.objects.filter(run_id=run_id, type="stream.chunk", data__key=key, data__attempt=attempt)
            .order_by("seq").values_list("data", flat=True))
    return [d.get("chunk") for d in data]


def run_streams(*, run_id: str, limit: int = 2000, hidden: bool = False) -> list[dict[str, Any]]:
    """Return a run's streams by name, each with its chunks in order (the newest attempt's, per call).

    Chunks are events, redacted before they were stored; ``hidden`` (from the viewer's RunDisplay) hides them.
    """
    hiding = RunDisplay(hidden=hidden)
    streams: dict[str, dict[str, Any]] = {}
    attempts: dict[str, int] = {}
    events = (RunEvent.objects.filter(run_id=run_id, type__in=("stream.chunk", "stream.completed"))
              .order_by("seq").values_list("type", "data")[:limit])
    for type_, data in events:
        stream = streams.setdefault(data["stream"], {"name": data["stream"], "chunks": [], "completed": False})
        if attempts.setdefault(data["key"], data["attempt"]) < data["attempt"]:
            # A newer attempt sent this call's stream again from its start: its chunks replace the old ones.
            attempts[data["key"]] = data["attempt"]
            stream["chunks"] = [c for c in stream["chunks"] if c["key"] != data["key"]]
        if type_ == "stream.completed":
            stream["completed"] = True
        else:
            stream["chunks"].append({"key": data["key"], "chunk": hiding.value(data.get("chunk"))})
    return list(streams.values())


def waitpoint_list(
    *,
    status: str | None = WaitpointStatus.PENDING,
    kind: str | None = None,
    environment: str | None = None,
    run_id: str | None = None,
    after: str | None = None,
    limit: int = 200,
    environments: list[str] | None = None,
) -> list[Waitpoint]:
    """Return waitpoints oldest first, pending ones unless another status (or None: all) is given.

    Waitpoint ids are time-ordered, so ``after`` (the last id of a page) starts the next page.
    """
    qs = Waitpoint.objects.select_related("run").order_by("id")
    if status:
        qs = qs.filter(status=status)
    if kind:
        qs = qs.filter(kind=kind)
    if environment is not None:
        qs = qs.filter(run__environment_id=environment)
    if environments is not None:
        qs = qs.filter(run__environment_id__in=environments)
    if run_id:
        qs = qs.filter(run_id=run_id)
    if after:
        qs = qs.filter(id__gt=after)
    return list(qs[:limit])


def waitpoint_detail_get(*, waitpoint_id: str, environment: str | None = None) -> Waitpoint | None:
    """Return one waitpoint with its run, optionally only within one environment."""
    qs = Waitpoint.objects.select_related("run").filter(id=waitpoint_id)
    if environment is not None:
        qs = qs.filter(run__environment_id=environment)
    return qs.first()


# What a run's root span is made of: its own row holds all of it.
RUN_SPAN_FIELDS = ("id", "task_id", "queue", "tags", "status", "trace_id", "span_id", "parent_span_id", "created_at",
                   "finished_at")


def run_spans(*, run_id: str) -> list[Span]:
    """Return a run's spans by start time (the root span first): its Span rows, and the spans its own rows hold.

    The run's root span is its run row (``run_span_of``). A step or an attempt that completed with
    a plain span (nothing on it but what the engine sets) stores the span's ids in its own row
    instead of a Span row (stepwise.runs.engine.spans.step_span_ids, attempt_span_end); it comes
    back here as the span it was.
    """
    run = Run.objects.only(*RUN_SPAN_FIELDS).filter(id=run_id).first()
    if run is None:
        return []
    stored = list(Span.objects.filter(run_id=run_id).order_by("started_at", "id"))
    steps = list(Step.objects.filter(run_id=run_id).exclude(span_id="").only(
        "run_id", "span_id", "parent_span_id", "key", "name", "position", "attempt_number", "started_at",
        "finished_at",
    ))
    attempts = list(Attempt.objects.filter(run_id=run_id).exclude(span_id="").select_related("version").only(
        "run_id", "span_id", "number", "worker_id", "started_at", "finished_at", "version__content_hash",
    ))
    return spans_held(run, stored, steps, attempts)


def run_span_of(run: Run) -> Span:
    """Return a run's root span as its row holds it (unsaved): open until the run reaches a final status.

    Runs triggered before the span moved into the run row have a Span row of their own instead.
    """
    final = run.status in FINAL_STATUSES
    status, message = run_span_result(run.status) if final else (SpanStatus.UNSET, "")
    return Span(
        run=run, trace_id=run.trace_id, span_id=run.span_id, parent_span_id=run.parent_span_id,
        name=f"run {run.task_id}", kind=SpanKind.RUN, status=status, status_message=message,
        attributes={"stepwise.run_id": run.id, "stepwise.task_id": run.task_id, "stepwise.queue": run.queue,
                    "stepwise.tags": list(run.tags)},
        events=[], started_at=run.created_at, ended_at=run.finished_at if final else None,
    )


def spans_held(run: Run, stored: list[Span], steps: list[Step], attempts: list[Attempt] = ()) -> list[Span]:
    """Return a run's stored spans with those its rows hold (its root span, its attempts', steps'), by start time.

    Each held span is unsaved (no ``pk``). An attempt's or a step's is named as the engine names
    it, OK, with the engine's attributes, from its row's start to its finish, as the span was
    when its attempt or step recorded it. ``attempts`` may include attempts that hold no span.
    """
    own = [] if any(span.kind == SpanKind.RUN for span in stored) else [run_span_of(run)]
    held = own + [
        Span(run_id=run.id, trace_id=run.trace_id, span_id=attempt.span_id, parent_span_id=run.span_id,
             name=f"attempt {attempt.number}", kind=SpanKind.ATTEMPT, status=SpanStatus.OK, attributes={
                 **attempt_span_attributes(task_id=run.task_id, number=attempt.number, worker_id=attempt.worker_id,
                                           version_hash=attempt.version.content_hash),
                 "stepwise.attempt.result": "completed",
             }, events=[], started_at=attempt.started_at, ended_at=attempt.finished_at)
        for attempt in attempts if attempt.span_id
    ] + [
        Span(run_id=step.run_id, trace_id=run.trace_id, span_id=step.span_id, parent_span_id=step.parent_span_id,
             name=f"step {step.key}", kind=SpanKind.STEP, status=SpanStatus.OK,
             attributes=step_span_attributes(key=step.key, name=step.name, position=step.position, replayed=False,
                                             attempt=step.attempt_number),
             events=[], started_at=step.started_at, ended_at=step.finished_at)
        for step in steps if step.span_id
    ]
    if not held:
        return stored
    return sorted(held + stored, key=lambda span: span.started_at)  # stable: the root span first on a tie


@dataclass(frozen=True)
class RunFilters:
    """The runs-list filters; every field is optional."""

    task: str = ""
    status: str = ""
    tag: str = ""
    version: str = ""
    created_after: datetime | None = None
    created_before: datetime | None = None
    idempotency_key: str = ""
    run_id: str = ""
    environment: str = ""
    queue: str = ""
    batch: str = ""  # a batch_trigger's id: its runs carry the tag "batch:<id>"
    schedule: str = ""  # a schedule's id: the runs it triggered carry the tag "schedule:<id>"
    # The environments the viewer may see (None: every one); the console sets it from the user's roles.
    environments: tuple[str, ...] | None = None

    def as_query(self) -> dict[str, str]:
        """Return the non-empty filters as query-string values."""
        values = {k: getattr(self, k) for k in ("task", "status", "tag", "version", "idempotency_key", "run_id",
                                                "environment", "queue", "batch", "schedule")}
        for name in ("created_after", "created_before"):
            moment = getattr(self, name)
            if moment is not None:
                values[name] = moment.strftime("%Y-%m-%dT%H:%M")
        return {k: v for k, v in values.items() if v}

    def required_tags(self) -> list[str]:
        """Return the tags a run must carry: the tag filter's, its batch's and its schedule's."""
        return [t for t in (self.tag, self.batch and f"batch:{self.batch}",
                            self.schedule and f"schedule:{self.schedule}") if t]


@dataclass(frozen=True)
class RunPage:
    """One keyset page of runs, newest first, with the cursors of its neighbours."""

    runs: list[Run]
    newer_cursor: str | None
    older_cursor: str | None


def _id_bound(moment: datetime) -> str:
    """Return the smallest run id that can have been created at ``moment`` (ids are time-ordered)."""
    return f"run_{encode_millis(int(moment.timestamp() * 1000))}"


def runs_filtered(filters: RunFilters) -> QuerySet[Run]:
    """Return runs matching the filters; every filter is backed by an index."""
    qs = Run.objects.select_related("version")
    if filters.environment:
        qs = qs.filter(environment_id=filters.environment)
    if filters.environments is not None:
        qs = qs.filter(environment_id__in=filters.environments)
    if filters.task:
        qs = qs.for_task(filters.task)
    if filters.status:
        qs = qs.filter(status=filters.status)
    tags = filters.required_tags()
    if tags:
        if connection.vendor == "postgresql":
            qs = qs.filter(tags__contains=tags)  # jsonb @>, served by the GIN index
        else:
            for tag in tags:
                qs = qs.filter(tags__icontains=json.dumps(tag))
    if filters.queue:
        qs = qs.filter(queue=filters.queue)
    if filters.version:
        versions = TaskVersion.objects.filter(
            Q(content_hash__startswith=filters.version) | Q(deploy_label=filters.version)
        ).values("id")
        qs = qs.filter(version_id__in=versions)
    if filters.idempotency_key:
        qs = qs.filter(idempotency_key=filters.idempotency_key)
    if filters.run_id:
        # A prefix as a key range, so the primary-key index serves it ("~" sorts after every id character).
        prefix = filters.run_id.strip().lower()
        qs = qs.filter(id__gte=prefix, id__lt=prefix + "~")
    # Time bounds become id bounds, so the primary-key index serves them.
    if filters.created_after:
        qs = qs.filter(id__gte=_id_bound(filters.created_after))
    if filters.created_before:
        qs = qs.filter(id__lt=_id_bound(filters.created_before))
    return qs


def run_page(*, filters: RunFilters, before: str = "", after: str = "", size: int = 50) -> RunPage:
    """Return one page of runs in one query: before a cursor (older), after one (newer), or the newest."""
    qs = runs_filtered(filters)
    if after:
        rows = list(qs.filter(id__gt=after).order_by("id")[: size + 1])
        has_more_newer = len(rows) > size
        runs = list(reversed(rows[:size]))
        return RunPage(
            runs=runs,
            newer_cursor=runs[0].id if runs and has_more_newer else None,
            older_cursor=runs[-1].id if runs else None,
        )
    if before:
        qs = qs.filter(id__lt=before)
    rows = list(qs.order_by("-id")[: size + 1])
    runs = rows[:size]
    return RunPage(
        runs=runs,
        newer_cursor=runs[0].id if runs and before else None,
        older_cursor=runs[-1].id if len(rows) > size else None,
    )


def run_status_counts(*, filters: RunFilters) -> dict[str, int]:
    """Return how many runs match the filters (all but the status filter) per status, in one query."""
    qs = runs_filtered(replace(filters, status=""))
    return dict(qs.order_by().values_list("status").annotate(n=Count("id")).values_list("status", "n"))


def runs_newer_than(*, filters: RunFilters, newest_id: str, limit: int = 50) -> list[Run]:
    """Return runs matching the filters created after ``newest_id``, newest first."""
    return list(runs_filtered(filters).filter(id__gt=newest_id).order_by("-id")[:limit])


def run_statuses(*, run_ids: list[str], environments: list[str] | None = None) -> list[Run]:
    """Return the current status and timing of each of these runs (at most 500), of some environments or all."""
    qs = Run.objects.filter(id__in=run_ids[:500])
    if environments is not None:
        qs = qs.filter(environment_id__in=environments)
    return list(qs.only("id", "status", "started_at", "finished_at", "attempt_count"))


def run_detail(*, run_id: str, viewer: Any = None) -> Run | None:
    """Return a run with what its detail page shows beside the timeline, in one query."""
    run = Run.objects.select_related("task", "version", "replayed_from", "parent_run").filter(id=run_id).first()
    return None if run is None else run_shown(run, viewer=viewer)


def run_display_get(*, run_id: str, viewer: Any = None) -> RunDisplay | None:
    """Return how a run's values are shown to ``viewer`` (one small query), or None if there is no such run."""
    run = Run.objects.filter(id=run_id).only("task_id", "environment_id").first()
    return None if run is None else run_display(run, viewer=viewer)


def run_step(*, run_id: str, position: int, viewer: Any = None) -> Step | None:
    """Return one recorded step of a run, its result and error as ``viewer`` may see them."""
    step = Step.objects.select_related("run").filter(run_id=run_id, position=position).first()
    return None if step is None else step_shown(step, run_display(step.run, viewer=viewer))


def run_pending_waits(*, run_id: str) -> list[Waitpoint]:
    """Return every pending waitpoint of a run (approvals, event waits, timers, child runs), oldest first."""
    return waitpoint_list(run_id=run_id)


def run_checkpoint_state(*, run_id: str, as_of_position: int | None = None, viewer: Any = None) -> dict[str, Any]:
    """Return the recorded step results of a run by key, in order, as of a step position (all without one)."""
    display = run_display_get(run_id=run_id, viewer=viewer)
    if display is None:
        return {}
    hiding = RunDisplay(hidden=display.hidden)  # results hidden one by one; the hook goes over the whole state
    qs = Step.objects.filter(run_id=run_id).order_by("position")
    if as_of_position is not None:
        qs = qs.filter(position__lte=as_of_position)
    state: dict[str, Any] = {}
    for key, status, output, error in qs.values_list("key", "status", "output", "error"):
        summary = {k: (error or {}).get(k) for k in ("type", "message")}
        state[key] = hiding.value(output) if status == "COMPLETED" else {"error": summary}
    return display.detail(state)


def run_detail_get(*, run_id: str, environment: str | None = None, viewer: Any = None) -> Run | None:
    """Return a run with its attempts and steps prefetched, optionally only within one environment."""
    attempts = Prefetch("attempts", queryset=Attempt.objects.select_related("version"))
    qs = Run.objects.select_related("version").prefetch_related(attempts, "steps").filter(id=run_id)
    if environment is not None:
        qs = qs.filter(environment_id=environment)
    run = qs.first()
    return None if run is None else run_shown(run, run.steps.all(), viewer=viewer)


def run_api_page(*, filters: RunFilters, cursor: str | None = None, limit: int = 50) -> tuple[list[Run], str | None]:
    """Return one page of runs, newest first, and the cursor of the next (older) page.

    Run ids are time-ordered, so the cursor is simply the last id of the page.
    """
    page = run_page(filters=filters, before=cursor or "", size=limit)
    return page.runs, page.older_cursor
