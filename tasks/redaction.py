"""PII redaction of what the console, the API and exports show of a run (README: PII redaction),
and the payloads hidden from viewers of some environments (README: Who may do what).

A run's payload, output, metadata and step results are stored as the task gave them (the task
and its replays read them back) and redacted whenever they are shown; logs, span attributes,
events and errors are redacted before they are stored, in the worker (stepwise.runs.engine.redaction).
Both use the same hook: the project's STEPWISE_REDACT, then the task's own ``redact=``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from stepwise.runs.engine.redaction import pii_apply, pii_hooks_joined
from stepwise.tasks.access import payloads_hidden
from stepwise.tasks.registry import UnknownTask, task_get

_loaded: dict[str, Callable[[Any], Any]] = {}


def project_redact_hook() -> Callable[[Any], Any] | None:
    """Return the hook STEPWISE_REDACT names (a dotted path), imported once; None when unset."""
    path = getattr(settings, "STEPWISE_REDACT", "") or ""
    if not path:
        return None
    if path not in _loaded:
        try:
            hook = import_string(path)
        except ImportError as exc:
            raise ImproperlyConfigured(f"STEPWISE_REDACT: cannot import {path!r}: {exc}") from None
        if not callable(hook):
            raise ImproperlyConfigured(f"STEPWISE_REDACT: {path!r} is not a function")
        _loaded[path] = hook
    return _loaded[path]


def redaction_of(task_hook: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """Return the hook a task's runs are redacted with: the project's, then the task's own."""
    return pii_hooks_joined(project_redact_hook(), task_hook)


def task_redaction(task_id: str) -> Callable[[Any], Any] | None:
    """Return the redaction hook of a task id (the project's alone for a task this process does not register)."""
    try:
        own = getattr(task_get(task_id), "redact", None)
    except UnknownTask:
        own = None
    return redaction_of(own)


# What a viewer sees instead of a hidden value (stepwise.tasks.access.payloads_hidden): a plain string, so the
# console's JSON trees, the exports and API clients show it as it reads.
HIDDEN_FROM_VIEWERS = "[hidden from viewers in this environment]"
# Run events that carry a value the run produced, and the fields that hold it.
EVENT_VALUE_FIELDS = {"stream.chunk": ("chunk",)}


@dataclass(frozen=True)
class RunDisplay:
    """How one run's values are shown to one viewer: redacted with its task's hook, and hidden or not.

    The viewer is passed, never read from a context variable: exports and server-sent events are
    streamed after the view returns, outside any scope a middleware could have set, and a viewer
    left behind in a reused thread would show one caller's view to the next.
    """

    hook: Callable[[Any], Any] | None = None
    hidden: bool = False  # payloads, outputs, step results, waitpoint outputs and stream chunks

    def value(self, value: Any) -> Any:
        """Return a payload, an output, a step result or a waitpoint's output as it may be shown."""
        if self.hidden and value is not None:  # None says only that there is no value yet
            return HIDDEN_FROM_VIEWERS
        return self.detail(value)

    def detail(self, value: Any) -> Any:
        """Return metadata or an error as it may be shown: redacted, never hidden."""
        return value if self.hook is None else pii_apply(self.hook, value)

    def event(self, message: dict[str, Any]) -> dict[str, Any]:
        """Return a run event message (``RunEvent.as_message()``) with the value it carries hidden, if it must be."""
        fields = EVENT_VALUE_FIELDS.get(message.get("type", ""), ()) if self.hidden else ()
        if not any(field in (message.get("data") or {}) for field in fields):
            return message  # events are redacted before they are stored: only hiding is left to do
        data = {**message["data"], **{f: HIDDEN_FROM_VIEWERS for f in fields if f in message["data"]}}
        return {**message, "data": data}


def run_display(run: Any, *, viewer: Any) -> RunDisplay:
    """Return how the values of ``run`` are shown to ``viewer`` (a user, an API key, a public token; None: Stepwise)."""
    return RunDisplay(hook=task_redaction(run.task_id), hidden=payloads_hidden(viewer, run.environment_id))


def run_shown(run: Any, steps: Iterable[Any] = (), *, viewer: Any) -> Any:
    """Redact or hide, in memory only, what ``viewer`` sees of a run (payload, output, metadata, error), its steps."""
    if getattr(run, "_shown", False):
        return run
    display = run_display(run, viewer=viewer)
    if display.hook is None and not display.hidden:
        return run
    run.payload, run.output = display.value(run.payload), display.value(run.output)
    run.metadata, run.error = display.detail(run.metadata), display.detail(run.error)
    for step in steps:
        step_shown(step, display)
    run._shown = True  # never saved: a save() after this would store what was shown
    return run


def step_shown(step: Any, display: RunDisplay) -> Any:
    """Redact or hide, in memory only, a step's result (and redact its error) as ``display`` says."""
    step.output = display.value(step.output)
    step.error = display.detail(step.error)
    return step
