"""The SDK users import: ``task``, ``step``, ``Retry`` and ``AbortRun``.

Example::

    from stepwise.tasks.sdk import AbortRun, Retry, step, task

    @step()
    def charge(order):
        return payments.charge(order["id"], order["total"])

    @task(id="process-order", retry=Retry(max_attempts=3))
    def process_order(payload, ctx):
        receipt = charge(payload)
        return {"receipt": receipt}

    run = process_order.trigger({"id": "1", "total": 42}, idempotency_key="order-1")
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from stepwise.runs.engine.context import current_context
from stepwise.runs.engine.errors import AbortRun, PermanentError
from stepwise.runs.engine.executor import Executable
from stepwise.runs.engine.hooks import ErrorDecision, Hooks, InvalidHook, RunResult
from stepwise.runs.engine.redaction import redact_keys
from stepwise.runs.engine.retry import BeforeRetry, RetryPolicy, acall_retrying, call_retrying
from stepwise.runs.statuses import VersionPolicy
from stepwise.tasks.idempotency_keys import idempotency_keys
from stepwise.tasks.realtime import auth
from stepwise.tasks.redaction import redaction_of
from stepwise.tasks.registry import code_hash, task_register, version_policy_parse
from stepwise.tasks.waiting import send_event, wait  # noqa: E402

Retry = RetryPolicy

__all__ = [
    "AbortRun", "ErrorDecision", "PermanentError", "Retry", "RunHandle", "RunResult", "TaskDefinition", "current_run",
    "auth", "idempotency_keys", "metadata", "redact_keys", "send_event", "step", "task", "wait",
]


@dataclass(frozen=True)
class RunHandle:
    """What a trigger returns: the run's id, and whether an idempotency key matched an existing run."""

    id: str
    task_id: str
    status: str
    created: bool = True


@dataclass(frozen=True)
class ChildResult:
    """The outcome of a child run a parent waited for."""

    ok: bool
    status: str
    output: Any
    error: dict[str, Any] | None
    run_id: str

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChildResult:
        return cls(ok=data["ok"], status=data["status"], output=data["output"], error=data["error"],
                   run_id=data["run_id"])


@dataclass(eq=False)
class TaskDefinition:
    """A registered task. Call ``trigger`` to start a run; call it directly to run it inline."""

    id: str
    fn: Callable[..., Any]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    queue: str | None = None
    max_duration: float | None = None
    deploy_label: str = ""
    concurrency_limit: int | None = None
    total_limit: int | None = None
    rate_limit: tuple[int, float] | None = None
    cron: str | None = None
    timezone: str = "UTC"
    hooks: Hooks = field(default_factory=Hooks)
    version_policy: str = VersionPolicy.LATEST
    # A PII hook ``redact(value) -> value`` (README: PII redaction), applied after STEPWISE_REDACT.
    redact: Callable[[Any], Any] | None = None

    def __post_init__(self) -> None:
        functools.update_wrapper(self, self.fn)
        self.version_hash = code_hash(self.fn)

    @property
    def qualified_name(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"

    @property
    def queue_name(self) -> str:
        return self.queue or f"task/{self.id}"

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def _handle(self, run: Any, created: bool) -> RunHandle:
        return RunHandle(id=run.id, task_id=self.id, status=run.status, created=created)

    def executable(self) -> Executable:
        from stepwise.tasks.hooks import global_hooks

        return Executable(task_id=self.id, fn=self.fn, retry=self.retry, version_hash=self.version_hash,
                          hooks=global_hooks() + self.hooks, redact=redaction_of(self.redact))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def trigger(
        self,
        payload: Any = None,
        *,
        idempotency_key: str | None = None,
        idempotency_key_ttl: str | float | timedelta | None = None,
        idempotency_key_scope: str | None = None,
        tags: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
        queue: str | None = None,
        concurrency_key: str | None = None,
        priority: int = 0,
        delay: str | float | timedelta | None = None,
        delay_until: datetime | None = None,
        ttl: str | float | timedelta | None = None,
        max_duration: float | None = None,
        environment: str | None = None,
        traceparent: str | None = None,
        retry: RetryPolicy | dict[str, Any] | None = None,
        debounce: dict[str, Any] | None = None,
        throttle: dict[str, Any] | None = None,
    ) -> RunHandle:
        """Start a run of this task; with an idempotency key, return the existing run if there is one.

        Inside a run it starts a child run (in the run's environment unless told otherwise) once
        per run: the code around it may replay, the trigger returns the same child each time.
        ``idempotency_key_scope`` says what the key is unique within: "global" (the default: the
        task and environment), "run" (the parent run) or "attempt" (the parent run's attempt).

        Example::

            run = process_order.trigger({"orderId": "1"}, idempotency_key="order-1", tags=["vip"])
            child = send_receipt.trigger(order, idempotency_key="receipt", idempotency_key_scope="run")
        """
        from stepwise.runs.triggers import TriggerOptions, run_trigger

        options = dict(
            idempotency_key=idempotency_key,
            idempotency_key_ttl=idempotency_key_ttl,
            idempotency_key_scope=idempotency_key_scope,
            tags=list(tags),
            metadata=metadata or {},
            queue=queue,
            concurrency_key=concurrency_key,
            priority=priority,
            delay=delay,
            delay_until=delay_until,
            ttl=ttl,
            max_duration=max_duration,
            traceparent=traceparent,
            retry=retry.as_dict() if isinstance(retry, RetryPolicy) else retry,
            debounce=debounce,
            throttle=throttle,
        )
        ctx = current_context.get()
        if ctx is None:
            run, created = run_trigger(task_id=self.id, payload=payload,
                                       options=TriggerOptions(**options, environment=environment or "dev"))
            return self._handle(run, created)

        def child(key: str) -> dict[str, Any]:
            run, created = run_trigger(task_id=self.id, payload=payload, options=TriggerOptions(
                **options, call_key=key, environment=environment or ctx.environment, parent_run_id=ctx.run_id,
                parent_attempt=ctx.attempt,
            ))
            return asdict(self._handle(run, created))

        return RunHandle(**ctx.once(f"trigger:{self.id}", "trigger", child))

    def trigger_and_wait(self, payload: Any = None, *, timeout=None, **options: Any) -> ChildResult:
        """Trigger a child run from inside a task and wait for it without holding a worker.

        Example::

            result = transcode.trigger_and_wait({"url": url})
            if result.ok:
                use(result.output)
        """
        from stepwise.tasks.waiting import children_wait

        outcome = children_wait(self.id, [{"payload": payload, **options}], timeout=timeout)
        if not outcome.ok:
            return ChildResult(ok=False, status="TIMED_OUT", output=None, error=None, run_id="")
        return ChildResult.from_json(outcome.output[0])

    def batch_trigger_and_wait(self, items: Iterable[dict[str, Any]], *, timeout=None) -> list[ChildResult]:
        """Trigger child runs (``{"payload": ..., **options}`` each) and wait for all of them.

        Example::

            results = resize.batch_trigger_and_wait([{"payload": {"img": i}} for i in images])
        """
        from stepwise.tasks.waiting import children_wait

        items = list(items)
        outcome = children_wait(self.id, items, timeout=timeout)
        if not outcome.ok:
            return [ChildResult(ok=False, status="TIMED_OUT", output=None, error=None, run_id="") for _ in items]
        return [ChildResult.from_json(item) for item in outcome.output]

    async def atrigger_and_wait(self, payload: Any = None, **options: Any) -> ChildResult:
        """Async twin of ``trigger_and_wait``."""
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.trigger_and_wait)(payload, **options)

    async def abatch_trigger_and_wait(self, items: Iterable[dict[str, Any]], **options: Any) -> list[ChildResult]:
        """Async twin of ``batch_trigger_and_wait``."""
        from asgiref.sync import sync_to_async

        return await sync_to_async(self.batch_trigger_and_wait)(list(items), **options)

    def batch_trigger(self, items: Iterable[dict[str, Any]]) -> list[RunHandle]:
        """Start many runs at once, all or none; each item is ``{"payload": ..., **trigger options}``.

        Example::

            handles = resize.batch_trigger([{"payload": {"img": i}} for i in range(10)])
        """
        from stepwise.runs.triggers import run_batch_trigger

        items = list(items)
        ctx = current_context.get()
        if ctx is None:
            results = run_batch_trigger(task_id=self.id, items=items)
            return [self._handle(r, c) for r, c in results]

        def children(key: str) -> list[dict[str, Any]]:
            placed = [{"environment": ctx.environment, **item} for item in items]
            results = run_batch_trigger(task_id=self.id, items=placed, parent_run_id=ctx.run_id,
                                        parent_attempt=ctx.attempt, call_key=key)
            return [asdict(self._handle(r, c)) for r, c in results]

        return [RunHandle(**handle) for handle in ctx.once(f"batch_trigger:{self.id}", "trigger", children)]


def task(
    *,
    id: str,
    retry: RetryPolicy | None = None,
    queue: str | None = None,
    max_duration: float | str | None = None,
    concurrency_limit: int | None = None,
    total_limit: int | None = None,
    rate_limit: str | None = None,
    cron: str | None = None,
    timezone: str = "UTC",
    version_policy: str | None = None,
    redact: Callable[[Any], Any] | None = None,
    **hooks: Callable[..., Any] | list[Callable[..., Any]],
) -> Callable[[Callable[..., Any]], TaskDefinition]:
    """Register a function ``fn(payload, ctx)`` as a durable task.

    ``queue`` names its queue (default ``task/<id>``); ``concurrency_limit`` is that queue's
    limit (per concurrency key when runs carry one), ``total_limit`` its cap across keys and
    ``rate_limit`` its starts per period (``"10/s"``, ``"1000/1h"``, evenly spaced), set when the
    queue is first created (later changes through the API, CLI or console win).
    ``cron`` and ``timezone`` declare a schedule in the STEPWISE_ENVIRONMENT environment.
    ``version_policy`` says where its runs execute once workers hold other code: ``"pin"`` only
    on a worker with the version the run was triggered on, ``"latest"`` on any worker (default:
    STEPWISE_VERSION_POLICY; see "Deploying new code" in the README). ``redact`` is a PII hook
    ``redact(value) -> value`` (e.g. ``redact_keys("email")``) applied after STEPWISE_REDACT to what
    is stored of its logs, spans, events and errors and to what is shown of its payload, output,
    metadata and step results (README: PII redaction).

    Hooks (a callable or a list of them, after the global ones of STEPWISE_HOOKS): ``init`` /
    ``cleanup`` ``(payload, ctx)`` around every attempt, ``middleware`` ``(payload, ctx)``
    returning a context manager entered around the attempt's code, ``on_start(payload, ctx)``
    once per run, ``on_success(payload, output, ctx)``, ``on_failure(payload, error, ctx)``,
    ``on_cancel(payload, ctx)`` and ``on_complete(payload, result, ctx)`` when the run ends,
    and ``catch_error(payload, ctx, error)`` returning an ``ErrorDecision`` (or None).

    Example::

        @task(id="send-welcome", retry=Retry(max_attempts=5), max_duration="10m", concurrency_limit=5)
        def send_welcome(payload, ctx):
            ...

        @task(id="hourly-report", cron="0 * * * *", timezone="Europe/Paris")
        def hourly_report(payload, ctx):
            ...  # payload: {"schedule_id", "timestamp", "last_timestamp", "timezone", ...}

        @task(id="close-month", version_policy="pin")
        def close_month(payload, ctx):
            ...
    """
    from django.conf import settings

    from stepwise.runs.engine.durations import duration_seconds
    from stepwise.tasks.queues import rate_parse

    rate = rate_parse(rate_limit)
    task_hooks = Hooks.of(hooks, where=f"task '{id}'")
    if redact is not None and not callable(redact):
        raise InvalidHook(f"task '{id}': redact must be a function redact(value) -> value, not {redact!r}")
    policy = version_policy_parse(
        settings.STEPWISE_VERSION_POLICY if version_policy is None else version_policy, where=f"@task(id={id!r})"
    )

    def decorate(fn: Callable[..., Any]) -> TaskDefinition:
        definition = TaskDefinition(
            id=id,
            fn=fn,
            retry=retry or RetryPolicy(),
            queue=queue,
            max_duration=None if max_duration is None else duration_seconds(max_duration),
            deploy_label=settings.STEPWISE_DEPLOY_LABEL,
            concurrency_limit=concurrency_limit,
            total_limit=total_limit,
            rate_limit=rate,
            cron=cron,
            timezone=timezone,
            hooks=task_hooks,
            version_policy=policy,
            redact=redact,
        )
        task_register(definition)
        return definition

    return decorate


def step(
    name: str | None = None, *, retry: RetryPolicy | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make every call of a function a durable step (key: ``name`` or the function's name).

    Outside a run the function is simply called. With ``retry``, a retryable error makes the
    step run again inside the same attempt (after the policy's delay, a log line saying why)
    instead of failing the attempt; once the policy gives up, the attempt fails as usual and
    the task's own retry policy decides what follows.

    Example::

        @step(retry=Retry(max_attempts=5, min_timeout=0.5))
        def ship(order):
            return carrier.ship(order["id"])
    """

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        step_name = name or fn.__name__

        def before_retry(ctx: Any) -> BeforeRetry:
            def note(failures: int, delay: float, exc: BaseException) -> None:
                ctx.check_interrupted()  # a timed-out or canceled run does not try again
                ctx.logger.warning(f"step {step_name} failed ({type(exc).__name__}: {exc}); "
                                   f"try {failures + 1} of {retry.max_attempts} in {delay:.2f}s")
            return note

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                ctx = current_context.get()
                if ctx is None:
                    return await fn(*args, **kwargs)
                if retry is None:
                    return await ctx.step(step_name, fn, *args, **kwargs)

                async def body() -> Any:
                    return await acall_retrying(fn, args, kwargs, retry, before_retry(ctx))

                return await ctx.step(step_name, body)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            ctx = current_context.get()
            if ctx is None:
                return fn(*args, **kwargs)
            if retry is None:
                return ctx.step(step_name, fn, *args, **kwargs)
            return ctx.step(step_name, call_retrying, fn, args, kwargs, retry, before_retry(ctx))

        return wrapper

    return decorate


def current_run():
    """Return the RunContext of the run executing in this thread, or None.

    Example::

        ctx = current_run()
        if ctx: print(ctx.run_id, ctx.attempt)
    """
    return current_context.get()


class _CurrentRunMetadata:
    """``metadata``: the metadata of the run executing here, for code that has no ``ctx`` (a step's helper).

    It is ``ctx.metadata`` of the current run (see ``stepwise.runs.engine.metadata.RunMetadata``);
    outside a run every use raises a RuntimeError saying so.

    Example::

        from stepwise.tasks.sdk import metadata

        def resize(image):
            metadata.set("progress", 0.5)
    """

    def _current(self) -> Any:
        ctx = current_context.get()
        if ctx is None:
            raise RuntimeError("metadata is only available inside a run (in a task or a step it calls)")
        return ctx.metadata

    def __getattr__(self, name: str) -> Any:
        return getattr(self._current(), name)

    def __getitem__(self, key: str) -> Any:
        return self._current()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._current()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._current()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._current()


metadata = _CurrentRunMetadata()
