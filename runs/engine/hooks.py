"""Lifecycle hooks of a task: what runs around an attempt and when a run starts or ends."""
from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, fields
from typing import Any

from asgiref.sync import async_to_sync

from stepwise.runs.engine.context import RunContext
from stepwise.runs.engine.errors import PermanentError, StepwiseError
from stepwise.runs.engine.spans import engine_span
from stepwise.runs.engine.store import RunStore

logger = logging.getLogger(__name__)

Hook = Callable[..., Any]


class InvalidHook(StepwiseError, ValueError):
    """A hook is named wrongly or is not callable."""


class InvalidErrorDecision(PermanentError):
    """``catch_error`` returned something that is not an ErrorDecision, or a negative retry delay."""


@dataclass(frozen=True)
class Hooks:
    """The hooks of a task, global ones first; each a tuple of callables.

    ``init(payload, ctx)`` and ``cleanup(payload, ctx)`` run around every attempt (a resume
    after a wait is an attempt too); ``middleware(payload, ctx)`` returns a context manager
    entered around init, the task and cleanup. ``on_start(payload, ctx)`` runs once per run,
    before its first attempt's code; ``on_success(payload, output, ctx)``,
    ``on_failure(payload, error, ctx)``, ``on_cancel(payload, ctx)`` and
    ``on_complete(payload, result, ctx)`` once when the run ends. ``catch_error(payload, ctx,
    error)`` decides what a failed attempt does (see ErrorDecision).
    """

    init: tuple[Hook, ...] = ()
    cleanup: tuple[Hook, ...] = ()
    middleware: tuple[Hook, ...] = ()
    on_start: tuple[Hook, ...] = ()
    on_success: tuple[Hook, ...] = ()
    on_failure: tuple[Hook, ...] = ()
    on_cancel: tuple[Hook, ...] = ()
    on_complete: tuple[Hook, ...] = ()
    catch_error: tuple[Hook, ...] = ()

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def of(cls, named: dict[str, Hook | Iterable[Hook] | None], *, where: str) -> Hooks:
        """Build Hooks from ``{name: callable or list of callables}``; raise InvalidHook naming a wrong one."""
        unknown = sorted(set(named) - set(cls.names()))
        if unknown:
            raise InvalidHook(f"{where}: unknown hook name(s) {', '.join(map(repr, unknown))}; "
                              f"the hooks are {', '.join(cls.names())}")
        built = {}
        for name, value in named.items():
            hooks = () if value is None else tuple(value) if isinstance(value, list | tuple) else (value,)
            for hook in hooks:
                if not callable(hook):
                    raise InvalidHook(f"{where}: hook {name} must be callable, not {type(hook).__name__}")
            built[name] = hooks
        return cls(**built)

    def has_end_hooks(self) -> bool:
        return bool(self.on_success or self.on_failure or self.on_cancel or self.on_complete)

    def __add__(self, other: Hooks) -> Hooks:
        return Hooks(**{name: getattr(self, name) + getattr(other, name) for name in self.names()})


@dataclass(frozen=True)
class ErrorDecision:
    """What ``catch_error`` decides for a failed attempt; returning None keeps the retry policy's decision.

    Example::

        def catch_error(payload, ctx, error):
            if isinstance(error, RateLimited):
                return ErrorDecision.retry(delay=error.retry_after)
            if isinstance(error, OrderGone):
                return ErrorDecision.succeed({"skipped": True})
            if isinstance(error, BadInput):
                return ErrorDecision.fail()
    """

    action: str  # retry | fail | succeed
    delay: float | None = None
    output: Any = None

    @classmethod
    def retry(cls, delay: float | None = None) -> ErrorDecision:
        """Retry (even an error the policy deems permanent), after ``delay`` seconds or the policy's delay.

        The policy's ``max_attempts`` still bounds the run: past it the run fails.
        """
        return cls("retry", delay=delay)

    @classmethod
    def fail(cls) -> ErrorDecision:
        """Fail the run now, without further attempts."""
        return cls("fail")

    @classmethod
    def succeed(cls, output: Any = None) -> ErrorDecision:
        """Complete the run with ``output`` as if the task had returned it."""
        return cls("succeed", output=output)

    def checked(self) -> ErrorDecision:
        if self.action not in ("retry", "fail", "succeed"):
            raise InvalidErrorDecision(f"catch_error decided {self.action!r}; use retry, fail or succeed")
        if self.delay is not None:
            if isinstance(self.delay, bool) or not isinstance(self.delay, int | float):
                raise InvalidErrorDecision(f"catch_error's retry delay must be a number of seconds, "
                                           f"not {type(self.delay).__name__}")
            if self.delay < 0:
                raise InvalidErrorDecision(f"catch_error's retry delay must not be negative, got {self.delay:g}s")
        return self


def user_call(fn: Hook, *args: Any) -> Any:
    """Call user code (the task, a hook), sync or async, from the attempt's (sync) thread.

    async_to_sync keeps thread-sensitive ORM calls on this worker thread.
    """
    if inspect.iscoroutinefunction(fn):
        return async_to_sync(fn)(*args)
    return fn(*args)


def hook_name(hook: Hook) -> str:
    return getattr(hook, "__qualname__", None) or type(hook).__name__


@dataclass(frozen=True)
class RunResult:
    """What ``on_complete`` gets: how the run ended."""

    status: str  # COMPLETED | FAILED | TIMED_OUT | CANCELED
    output: Any = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "COMPLETED"


class HookRunner:
    """Runs a task's hooks for one attempt; once-per-run hooks are noted to the store, and skipped once stored."""

    def __init__(self, hooks: Hooks, *, ctx: RunContext, store: RunStore) -> None:
        self._hooks = hooks
        self._ctx = ctx
        self._store = store
        self._claim = ctx.claim

    @contextmanager
    def around_attempt(self) -> Iterator[None]:
        """Enter the middleware, call ``init`` (its value is ``ctx.init``), and ``cleanup`` after the code."""
        payload = self._claim.payload
        with ExitStack() as stack:
            for middleware in self._hooks.middleware:
                stack.enter_context(user_call(middleware, payload, self._ctx))
            for init in self._hooks.init:
                with self._span("init"):
                    self._ctx.init = user_call(init, payload, self._ctx)
            try:
                yield
            finally:
                for cleanup in self._hooks.cleanup:
                    self._guarded("cleanup", cleanup, payload, self._ctx)

    def start(self) -> None:
        """Run ``on_start`` on the run's first attempt that gets this far, and store that it ran."""
        if not self._hooks.on_start or "on_start" in self._claim.hooks_done:
            return
        for hook in self._hooks.on_start:
            with self._span("on_start"):
                user_call(hook, self._claim.payload, self._ctx)
        self._store.hook_note(self._claim, "on_start")
        self._store.run_fields_store(self._claim)

    def ended(self, result: RunResult, *, record: bool = True) -> None:
        """Run the hooks of a run's end; with ``record``, note them to ride with the outcome.

        Their errors are logged on the run and change nothing: the run's outcome is decided.
        """
        payload = self._claim.payload
        named = {
            "COMPLETED": ("on_success", (payload, result.output, self._ctx)),
            "CANCELED": ("on_cancel", (payload, self._ctx)),
        }.get(result.status, ("on_failure", (payload, result.error, self._ctx)))
        for name, args in (named, ("on_complete", (payload, result, self._ctx))):
            hooks = getattr(self._hooks, name)
            if not hooks or name in self._claim.hooks_done:
                continue
            for hook in hooks:
                self._guarded(name, hook, *args)
            if record:
                self._store.hook_note(self._claim, name)

    def decide(self, error: BaseException, *, permanent: bool, policy_delay: float | None,
               attempts_left: bool) -> ErrorDecision:
        """Ask ``catch_error`` what a failed attempt does; the first hook that decides wins."""
        default = ErrorDecision.fail() if permanent or policy_delay is None else ErrorDecision.retry(policy_delay)
        for hook in self._hooks.catch_error:
            with self._span("catch_error"):
                decision = user_call(hook, self._claim.payload, self._ctx, error)
            if decision is None:
                continue
            if not isinstance(decision, ErrorDecision):
                raise InvalidErrorDecision(f"catch_error must return an ErrorDecision or None, "
                                           f"not {type(decision).__name__}")
            decision.checked()
            if decision.action == "retry" and (not attempts_left or policy_delay is None):
                return ErrorDecision.fail()
            if decision.action == "retry" and decision.delay is None:
                return ErrorDecision.retry(policy_delay)
            return decision
        return default

    def _span(self, name: str) -> Any:
        return engine_span(self._claim, kind="hook", name=f"hook {name}")

    def _guarded(self, name: str, hook: Hook, *args: Any) -> None:
        try:
            with self._span(name):
                user_call(hook, *args)
        except Exception as exc:
            logger.exception("hook %s (%s) of run %s failed", name, hook_name(hook), self._claim.run_id)
            try:
                self._ctx.logger.error(f"hook {name} ({hook_name(hook)}) failed: {type(exc).__name__}: {exc}")
            except Exception:  # the run is no longer ours: the worker's log has it
                pass
