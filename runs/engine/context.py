"""The run context: what a task sees, and the replay of recorded steps."""
from __future__ import annotations

import contextvars
import inspect
import logging
import threading
from collections import Counter
from collections.abc import AsyncIterable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from opentelemetry.trace import Span

from stepwise.runs.engine.checkpoints import checkpoint_encode
from stepwise.runs.engine.errors import (
    NonDeterminismError,
    RunInterrupted,
    StepFailedError,
    error_describe,
    is_permanent,
)
from stepwise.runs.engine.metadata import Cursor, RunMetadata
from stepwise.runs.engine.redaction import redactor_for, sensitive_add
from stepwise.runs.engine.spans import step_span, step_span_ids, step_span_stored, wait_span_record
from stepwise.runs.engine.store import Claim, RecordedStep, RunInfo, RunStore
from stepwise.runs.engine.waits import RunSuspended, WaitResult, WaitSpec

T = TypeVar("T")

current_context: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "stepwise_run_context", default=None
)
# The key of the step whose code runs now, and how many SDK calls it made so far: a call made
# inside a step belongs to that step (it runs again only if the step does) and is not recorded.
_inside_step: contextvars.ContextVar[tuple[str, Counter[str]] | None] = contextvars.ContextVar(
    "stepwise_inside_step", default=None
)


class RedactingLogger(logging.LoggerAdapter):
    """A task's logger: messages are formatted first, then secret values are masked."""

    def __init__(self, logger: logging.Logger, ctx: RunContext) -> None:
        super().__init__(logger, {})
        self._ctx = ctx

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            kwargs.pop("exc_info", None)  # a traceback may quote a secret
            self.logger.log(level, self._ctx.redact(text), **kwargs)


# The LogRecord attribute that carries ``ctx.logger``'s keyword arguments to the run-log handler.
ATTRIBUTES = "stepwise_attributes"


class RunLogger(logging.LoggerAdapter):
    """``ctx.logger``: keyword arguments become the log line's attributes.

    Example::

        ctx.logger.info("charged card", amount=42, currency="EUR")
    """

    _RESERVED = frozenset({"exc_info", "stack_info", "stacklevel", "extra"})

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        attributes = {k: kwargs.pop(k) for k in list(kwargs) if k not in self._RESERVED}
        extra = dict(kwargs.get("extra") or {})
        extra[ATTRIBUTES] = {**extra.get(ATTRIBUTES, {}), **attributes}
        kwargs["extra"] = extra
        return msg, kwargs


def _now() -> datetime:
    return datetime.now(UTC)


class RunContext:
    """Passed to every task as ``ctx``: the run's identity and its durable step API.

    Example::

        @task(id="hello")
        def hello(payload, ctx):
            greeting = ctx.step("greet", make_greeting, payload["name"])
            return {"greeting": greeting, "attempt": ctx.attempt}
    """

    def __init__(
        self,
        *,
        store: RunStore,
        claim: Claim,
        max_output_bytes: int | None = None,
        max_metadata_bytes: int = 64 * 1024,
        env_loader: Callable[[str], dict[str, str]] | None = None,
    ) -> None:
        self._store = store
        self._env_loader = env_loader
        self._env: dict[str, str] | None = None
        self._claim = claim
        self._max_output_bytes = max_output_bytes
        self._recorded = {step.position: step for step in claim.steps}
        self._name_calls: Counter[str] = Counter()
        self._position = 0
        self._lock = threading.Lock()
        self.interrupted: str | None = None
        self.init: Any = None  # what the task's ``init`` hook returned this attempt
        self.elapsed: Callable[[], float] = lambda: 0.0
        self.before_suspend: Callable[[], None] = lambda: None
        self.logger = RunLogger(logging.getLogger(f"stepwise.run.{claim.task_id}"), {})
        # Called after each metadata change is noted: the heartbeat then stores it within a second.
        self.on_metadata: Callable[[], None] = lambda: None
        self._metadata = RunMetadata(
            claim.metadata, cursor=claim.metadata_cursor, max_bytes=max_metadata_bytes,
            place=lambda: None if _inside_step.get() is not None else self._position,
            on_change=self._metadata_changed,
        )

    # Identity of the run, read-only for the task.
    @property
    def run_id(self) -> str:
        return self._claim.run_id

    @property
    def task_id(self) -> str:
        return self._claim.task_id

    @property
    def attempt(self) -> int:
        return self._claim.attempt_number

    @property
    def payload(self) -> Any:
        return self._claim.payload

    @property
    def tags(self) -> list[str]:
        return list(self._claim.tags)

    @property
    def metadata(self) -> RunMetadata:
        """The run's metadata: read it like a dict, change it with ``set``, ``increment``… (see RunMetadata)."""
        return self._metadata

    def _metadata_changed(self, metadata: dict[str, Any], cursor: Cursor | None) -> None:
        self.check_interrupted()
        self._store.metadata_note(self._claim, metadata=metadata, cursor=cursor)
        self.on_metadata()

    @property
    def environment(self) -> str:
        return self._claim.environment

    @property
    def run(self) -> RunInfo:
        """The run as triggered: ``ctx.run.idempotency_key`` and ``ctx.run.idempotency_key_scope``."""
        claim = self._claim
        return RunInfo(id=claim.run_id, idempotency_key=claim.idempotency_key,
                       idempotency_key_scope=claim.idempotency_key_scope)

    @property
    def env(self) -> dict[str, str]:
        """The environment's secrets, decrypted in this worker on first use."""
        if self._env is None:
            self._env = dict(self._env_loader(self._claim.environment)) if self._env_loader else {}
            # Secret values are masked everywhere the run writes: spans, logs, events, errors.
            sensitive_add(self.run_id, *[v for v in self._env.values() if v])
        return dict(self._env)

    def redact(self, value: Any) -> Any:
        """Return ``value`` with the run's secret values (and values of secret-named keys) masked."""
        return redactor_for(self.run_id).value(value)

    def describe_error(self, exc: BaseException) -> dict[str, Any]:
        """Return the stored form of an exception with secret values masked."""
        return self.redact(error_describe(exc))

    @property
    def claim(self) -> Claim:
        return self._claim

    @property
    def steps_called(self) -> int:
        return self._position

    @property
    def store(self) -> RunStore:
        return self._store

    def sensitive(self, value: T) -> T:
        """Mark ``value`` as secret: it is masked in this run's spans, logs and events; returns it unchanged.

        Example::

            api_key = ctx.sensitive(fetch_api_key())
        """
        sensitive_add(self.run_id, value)
        return value

    def step(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` as a durable step named ``name``; replay it if recorded.

        Returns an awaitable when ``fn`` is a coroutine function.

        Example::

            receipt = ctx.step("charge", charge_card, order["id"], amount=42)
        """
        if inspect.iscoroutinefunction(fn):
            return self._astep(name, fn, args, kwargs)
        return self._step(name, fn, args, kwargs)

    def _next_call(self, name: str) -> tuple[str, int, RecordedStep | None]:
        with self._lock:
            self._name_calls[name] += 1
            calls = self._name_calls[name]
            self._position += 1
            position = self._position
        key = name if calls == 1 else f"{name}#{calls}"
        recorded = self._recorded.get(position)
        if recorded is not None and recorded.key != key:
            raise NonDeterminismError(
                f"non-deterministic step order at position {position}: the run recorded step "
                f"'{recorded.key}' but the code now calls '{key}'"
            )
        return key, position, recorded

    def _replay(self, recorded: RecordedStep) -> Any:
        if recorded.status == "FAILED":
            raise StepFailedError(recorded.key, recorded.error or {})
        return recorded.output

    def check_interrupted(self) -> None:
        """Raise RunInterrupted if the heartbeat learned the run may not go on."""
        if self.interrupted:
            raise RunInterrupted(self.interrupted)

    def _begin(self, key: str, name: str, position: int) -> datetime:
        self.check_interrupted()
        self._store.step_begin(self._claim, key=key, name=name, position=position)
        return _now()

    def _finish(self, key: str, name: str, position: int, started: datetime, result: Any, span: Span) -> Any:
        value = checkpoint_encode(
            result, where=f"the result of step '{key}'", max_bytes=self._max_output_bytes
        )
        span_id, parent_span_id = step_span_ids(span, self._claim)
        self._store.step_record(
            self._claim,
            RecordedStep(position, key, name, "COMPLETED", value, None, "step", started, _now(),
                         span_id, parent_span_id),
        )
        if span_id:
            step_span_stored(span)
        return value

    def _record_failure(self, key: str, name: str, position: int, started: datetime, exc: BaseException) -> None:
        # Only permanent errors are recorded: a retryable one runs the step again next attempt.
        if is_permanent(exc) and not isinstance(exc, RunInterrupted | NonDeterminismError):
            error = self.describe_error(exc)
            self._store.step_record(
                self._claim,
                RecordedStep(position, key, name, "FAILED", None, error, "step", started, _now()),
            )

    def _step(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        key, position, recorded = self._next_call(name)
        with step_span(self._claim, key=key, name=name, position=position, replayed=recorded is not None) as span:
            if recorded is not None:
                return self._replay(recorded)
            started = self._begin(key, name, position)
            inside = _inside_step.set((key, Counter()))
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                self._record_failure(key, name, position, started, exc)
                raise
            finally:
                _inside_step.reset(inside)
            return self._finish(key, name, position, started, result, span)

    async def _astep(self, name: str, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        key, position, recorded = self._next_call(name)
        with step_span(self._claim, key=key, name=name, position=position, replayed=recorded is not None) as span:
            if recorded is not None:
                return self._replay(recorded)
            started = await sync_to_async(self._begin)(key, name, position)
            inside = _inside_step.set((key, Counter()))
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                await sync_to_async(self._record_failure)(key, name, position, started, exc)
                raise
            finally:
                _inside_step.reset(inside)
            return await sync_to_async(self._finish)(key, name, position, started, result, span)

    def once(self, name: str, kind: str, call: Callable[[str], T]) -> T:
        """Make an SDK call that writes (a trigger, an event) happen once per run, however often the code replays.

        ``call`` gets a key unique to this call of this run (an idempotency key: it finds what
        an attempt that crashed right after the write had done) and returns a JSON value,
        which is recorded like a step of ``kind``; a replay returns the recorded value. Inside
        a step's code the call belongs to the step: it is made again only if the step runs
        again, with the same key, and is not recorded on its own.
        """
        inside = _inside_step.get()
        if inside is not None:
            step_key, calls = inside
            calls[name] += 1
            return call(f"{self.run_id}:{step_key}:{name}#{calls[name]}")
        key, position, recorded = self._next_call(name)
        if recorded is not None:
            return self._replay(recorded)
        self.check_interrupted()
        started = _now()
        value = checkpoint_encode(call(f"{self.run_id}:{key}"), where=f"the result of '{key}'")
        self._store.step_record(
            self._claim, RecordedStep(position, key, name, "COMPLETED", value, None, kind, started, _now())
        )
        return value

    def wait(self, name: str, spec: WaitSpec) -> WaitResult:
        """Wait durably for ``spec``: return its result if resolved, else suspend the run."""
        key, position, recorded = self._next_call(name)
        if recorded is not None:
            return WaitResult.from_json(self._replay(recorded))
        self.check_interrupted()
        started = _now()
        if spec.waitpoint_id:
            state = self._store.waitpoint_get(self._claim, waitpoint_id=spec.waitpoint_id)
            if state is None:
                raise ValueError(f"no waitpoint '{spec.waitpoint_id}' belongs to this run")
        else:
            # A run resumed by this wait: the claim brought the resolved waitpoint along.
            state = self._claim.resolved_waits.get(key) or self._store.waitpoint_get(self._claim, key=key)
            if state is None:
                state = self._store.waitpoint_create(self._claim, key=key, position=position, spec=spec)
        if state.status == "PENDING":
            # If the wait resolves meanwhile the attempt goes on: its span has ended already.
            self.before_suspend()
            if self._store.run_suspend(self._claim, waitpoint_id=state.id, elapsed=self.elapsed()):
                raise RunSuspended(state.id)
            state = self._store.waitpoint_get(self._claim, waitpoint_id=state.id)
        result = WaitResult.from_state(state)
        wait_span_record(self._claim, key=key, waitpoint_id=state.id, status=state.status,
                         started=state.created_at, ended=state.resolved_at)
        # The waitpoint keeps the result durably: its step rides with the attempt's next write.
        self._store.step_note(
            self._claim,
            RecordedStep(position, key, name, "COMPLETED", result.as_json(), None, "wait", started, _now()),
        )
        return result

    def create_token(self, name: str, spec: WaitSpec) -> str:
        """Create a token waitpoint durably and return its id (the same id on every replay)."""
        key, position, recorded = self._next_call(name)
        if recorded is not None:
            return self._replay(recorded)["id"]
        self.check_interrupted()
        state = self._store.waitpoint_get(self._claim, key=key) or self._store.waitpoint_create(
            self._claim, key=key, position=position, spec=spec
        )
        now = _now()
        self._store.step_record(
            self._claim, RecordedStep(position, key, name, "COMPLETED", {"id": state.id}, None, "token", now, now)
        )
        return state.id

    def stream(self, name: str, source: Iterable[Any] | AsyncIterable[Any]) -> Any:
        """Send each item of ``source`` to the run's subscribers as a chunk of stream ``name``; return them all.

        Chunks must be JSON; each is stored as it comes (a late subscriber replays them) under
        the attempt's lease. A finished stream is recorded like a step: a later attempt does not
        iterate ``source`` again and gets the stored chunks back. Returns an awaitable for an
        async iterable.

        Example::

            tokens = ctx.stream("tokens", llm.complete(prompt, stream=True))
            answer = "".join(tokens)
        """
        if isinstance(source, AsyncIterable):
            return self._astream(name, source)
        writer = self._stream_open(name)
        if writer.recorded is not None:
            return self._stream_replay(writer)
        for item in source:
            writer.append(item)
        return writer.finish()

    async def _astream(self, name: str, source: AsyncIterable[Any]) -> list[Any]:
        writer = self._stream_open(name)
        if writer.recorded is not None:
            return await sync_to_async(self._stream_replay)(writer)
        async for item in source:
            await sync_to_async(writer.append)(item)
        return await sync_to_async(writer.finish)()

    def stream_append(self, name: str, chunk: Any) -> None:
        """Send one chunk to the subscribers of stream ``name``; a replay of the run does not send it again.

        Example: ``ctx.stream_append("progress", {"done": 3, "of": 10})``
        """
        writer = self._stream_open(name)
        if writer.recorded is None:
            writer.append(chunk, last=True)

    def _stream_open(self, name: str) -> _StreamWriter:
        if not isinstance(name, str) or not name or len(name) > 100:
            raise ValueError("a stream needs a name of 1 to 100 characters, e.g. ctx.stream(\"tokens\", ...)")
        inside = _inside_step.get()
        if inside is not None:  # part of the step: sent again only if the step runs again, never recorded
            step_key, calls = inside
            calls[f"stream:{name}"] += 1
            count = calls[f"stream:{name}"]
            key = f"{step_key}:stream:{name}" + (f"#{count}" if count > 1 else "")
            return _StreamWriter(self, name, key, None, None)
        key, position, recorded = self._next_call(f"stream:{name}")
        if recorded is None:
            self.check_interrupted()
        return _StreamWriter(self, name, key, position, recorded)

    def _stream_replay(self, writer: _StreamWriter) -> list[Any]:
        recorded = self._replay(writer.recorded)
        return self._store.stream_read(self._claim, key=writer.key, attempt=recorded["attempt"])

    def check_all_replayed(self) -> None:
        """Raise if the task returned before reaching steps the run had recorded."""
        missing = [s for pos, s in sorted(self._recorded.items()) if pos > self._position]
        if missing:
            raise NonDeterminismError(
                f"non-deterministic step order at position {missing[0].position}: the run recorded "
                f"step '{missing[0].key}' but the code now returns without calling it"
            )


class _StreamWriter:
    """One call of ``ctx.stream`` (or ``stream_append``): numbers its chunks and stores each as it comes."""

    def __init__(self, ctx: RunContext, name: str, key: str, position: int | None,
                 recorded: RecordedStep | None) -> None:
        self.ctx = ctx
        self.name = name
        self.key = key
        self.position = position  # None inside a step: the step records the outcome
        self.recorded = recorded
        self.chunks: list[Any] = []
        self.started = _now()

    def append(self, item: Any, *, last: bool = False) -> None:
        self.ctx.check_interrupted()
        chunk = checkpoint_encode(item, where=f"chunk {len(self.chunks)} of stream '{self.name}'")
        index = len(self.chunks)
        self.chunks.append(chunk)
        self.ctx.store.stream_write(self.ctx.claim, stream=self.name, key=self.key, first_index=index,
                                    chunks=[chunk], step=self._step() if last else None)

    def finish(self) -> list[Any]:
        """Mark the stream complete (recording its step outside a step's code); return its chunks."""
        self.ctx.check_interrupted()
        self.ctx.store.stream_write(self.ctx.claim, stream=self.name, key=self.key, first_index=len(self.chunks),
                                    chunks=[], completed=True, step=self._step())
        return list(self.chunks)

    def _step(self) -> RecordedStep | None:
        if self.position is None:
            return None
        output = {"stream": self.name, "chunks": len(self.chunks), "attempt": self.ctx.attempt}
        return RecordedStep(self.position, self.key, f"stream:{self.name}", "COMPLETED", output, None, "stream",
                            self.started, _now())
