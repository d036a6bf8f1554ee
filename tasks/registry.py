"""The in-process registry of task definitions, and their content-hash versions."""
from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable
from typing import Any, Protocol

from stepwise.runs.engine.errors import StepwiseError
from stepwise.runs.statuses import VersionPolicy


class Registered(Protocol):
    """What the registry needs of a task definition (``stepwise.tasks.sdk.TaskDefinition`` is one)."""

    id: str
    fn: Any
    version_hash: str

    @property
    def qualified_name(self) -> str: ...


_TASKS: dict[str, Any] = {}
# Find a task that no module registered at import (a Django task, named by its module path).
_resolvers: list[Callable[[str], Any]] = []
_held: tuple[str, ...] | None = None


class InvalidVersionPolicy(StepwiseError, ValueError):
    """A version policy names none of the known policies."""


def version_policy_parse(value: Any, *, where: str) -> VersionPolicy:
    """Return the VersionPolicy named by ``value``, or raise InvalidVersionPolicy naming ``where`` and the choices."""
    if isinstance(value, str) and value in VersionPolicy.values:
        return VersionPolicy(value)
    choices = " or ".join(repr(v) for v in VersionPolicy.values)
    raise InvalidVersionPolicy(f"{where}: version_policy must be {choices}, not {value!r}")


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
    global _held
    existing = _TASKS.get(definition.id)
    if existing is not None and existing.qualified_name != definition.qualified_name:
        raise DuplicateTaskId(
            f"task id '{definition.id}' is used by both {existing.qualified_name} and {definition.qualified_name}"
        )
    _TASKS[definition.id] = definition
    _held = None


def task_resolver_add(resolver: Callable[[str], Any]) -> None:
    """Ask ``resolver(task_id)`` for a definition (or None) when a task id is not registered."""
    if resolver not in _resolvers:
        _resolvers.append(resolver)


def task_get(task_id: str) -> Any:
    """Return the definition of a task id (registering what a resolver finds), or raise UnknownTask."""
    definition = _TASKS.get(task_id)
    if definition is not None:
        return definition
    for resolve in _resolvers:
        definition = resolve(task_id)
        if definition is not None:
            task_register(definition)
            return definition
    raise UnknownTask(task_id)


def task_all() -> list[Any]:
    """Return every registered task, sorted by id."""
    return [_TASKS[k] for k in sorted(_TASKS)]


def versions_held() -> tuple[str, ...]:
    """Return the content hashes of every registered task's code: the versions this process can run."""
    global _held
    if _held is None:
        _held = tuple(sorted({definition.version_hash for definition in _TASKS.values()}))
    return _held


def code_hash(fn) -> str:
    """Return a content hash of the module that defines ``fn`` (its steps usually live there too)."""
    module = sys.modules.get(fn.__module__)
    try:
        source = inspect.getsource(module) if module else inspect.getsource(fn)
    except (OSError, TypeError):
        source = fn.__code__.co_code.hex()
    return hashlib.sha256(source.encode()).hexdigest()
