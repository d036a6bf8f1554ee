"""The in-process registry of task definitions, and their content-hash versions."""
from __future__ import annotations

import hashlib
import inspect
import sys
from typing import Any, Protocol

from runs.engine.errors import StepwiseError


class Registered(Protocol):
    """What the registry needs of a task definition (``tasks.sdk.TaskDefinition`` is one)."""

    id: str
    fn: Any

    @property
    def qualified_name(self) -> str: ...


_TASKS: dict[str, Any] = {}


class DuplicateTaskId(StepwiseError, ValueError):
    """Two different functions claim the same task id."""


class UnknownTask(StepwiseError, LookupError):
    """No task with this id is registered."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        known = ", ".join(sorted(_TASKS)) or "none"
        super().__init__(f"unknown task '{task_id}' (registered tasks: {known})")


def task_register(definition: Registered) -> None:
    """Add a task; re-importing the same function (autoreload) replaces it."""
    existing = _TASKS.get(definition.id)
    if existing is not None and existing.qualified_name != definition.qualified_name:
        raise DuplicateTaskId(
            f"task id '{definition.id}' is used by both {existing.qualified_name} and {definition.qualified_name}"
        )
    _TASKS[definition.id] = definition


def task_get(task_id: str) -> Any:
    """Return the definition of a task id, or raise UnknownTask."""
    try:
        return _TASKS[task_id]
    except KeyError:
        raise UnknownTask(task_id) from None


def task_all() -> list[Any]:
    """Return every registered task, sorted by id."""
    return [_TASKS[k] for k in sorted(_TASKS)]


def code_hash(fn) -> str:
    """Return a content hash of the module that defines ``fn`` (its steps usually live there too)."""
    module = sys.modules.get(fn.__module__)
    try:
        source = inspect.getsource(module) if module else inspect.getsource(fn)
    except (OSError, TypeError):
        source = fn.__code__.co_code.hex()
    return hashlib.sha256(source.encode()).hexdigest()
