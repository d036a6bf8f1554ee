"""PII redaction of what the console, the API and exports show of a run (README: PII redaction).

A run's payload, output, metadata and step results are stored as the task gave them (the task
and its replays read them back) and redacted whenever they are shown; logs, span attributes,
events and errors are redacted before they are stored, in the worker (runs.engine.redaction).
Both use the same hook: the project's STEPWISE_REDACT, then the task's own ``redact=``.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from runs.engine.redaction import pii_apply, pii_hooks_joined
from tasks.registry import UnknownTask, task_get

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


def run_shown(run: Any, steps: Iterable[Any] = ()) -> Any:
    """Redact, in memory only, what is shown of a run (payload, output, metadata, error) and of its steps."""
    hook = task_redaction(run.task_id)
    if hook is None or getattr(run, "_pii_redacted", False):
        return run
    for field in ("payload", "output", "metadata", "error"):
        setattr(run, field, pii_apply(hook, getattr(run, field)))
    for step in steps:
        step_shown(step, hook)
    run._pii_redacted = True  # never saved: a save() after this would store the redacted values
    return run


def step_shown(step: Any, hook: Callable[[Any], Any] | None) -> Any:
    """Redact, in memory only, a step's result and error with a run's hook."""
    if hook is not None:
        step.output = pii_apply(hook, step.output)
        step.error = pii_apply(hook, step.error)
    return step


def value_shown(task_id: str, value: Any) -> Any:
    """Return a value of a run of ``task_id`` (a checkpoint, a waitpoint's output) as it may be shown."""
    hook = task_redaction(task_id)
    return value if hook is None else pii_apply(hook, value)
