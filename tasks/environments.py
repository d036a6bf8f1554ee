"""Pause and resume a whole environment: every queue of it, new ones included, restored exactly on resume.

Pausing uses the queues' own pause, which the claim already honours: no run of the environment
starts while it is paused, executing runs finish, triggers are still accepted and wait QUEUED.
The queues that were paused before are remembered, so a resume leaves exactly those paused.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from stepwise.runs.engine.errors import StepwiseError
from stepwise.tasks.models import Environment, Queue
from stepwise.tasks.queues import queues_released_on_commit
from stepwise.tasks.services import UnknownEnvironment


class EnvironmentPauseRefused(StepwiseError):
    """The environment is already in the state asked for; nothing changed."""


@dataclass(frozen=True)
class EnvironmentState:
    """Whether an environment is paused, since when, and the queues that stay paused when it resumes."""

    environment: str
    paused: bool
    paused_at: datetime | None
    queues_paused_before: list[str]


def _state(env: Environment) -> EnvironmentState:
    return EnvironmentState(environment=env.slug, paused=env.paused_at is not None, paused_at=env.paused_at,
                            queues_paused_before=list(env.queues_paused_before))


def _locked(environment: str) -> Environment:
    # NO KEY: triggers (foreign-key checks on the environment) go on while it is locked.
    env = Environment.objects.select_for_update(no_key=True).filter(slug=environment).first()
    if env is None:
        raise UnknownEnvironment(f"unknown environment '{environment}'")
    return env


def environment_state(*, environment: str) -> EnvironmentState:
    """Return whether an environment is paused."""
    env = Environment.objects.filter(slug=environment).first()
    if env is None:
        raise UnknownEnvironment(f"unknown environment '{environment}'")
    return _state(env)


def environment_pause(*, environment: str) -> EnvironmentState:
    """Pause every queue of an environment (and the queues made there while it is paused)."""
    with transaction.atomic():
        env = _locked(environment)
        if env.paused_at is not None:
            raise EnvironmentPauseRefused(f"environment '{environment}' is already paused (since "
                                          f"{env.paused_at:%Y-%m-%d %H:%M:%S} UTC)")
        queues = Queue.objects.select_for_update().filter(environment_id=environment)
        env.queues_paused_before = sorted(queues.filter(paused=True).values_list("name", flat=True))
        queues.update(paused=True, updated_at=timezone.now())
        env.paused_at = timezone.now()
        env.save(update_fields=["paused_at", "queues_paused_before"])
    return _state(env)


def environment_resume(*, environment: str) -> EnvironmentState:
    """Resume an environment: its queues go back to how they were when it was paused."""
    with transaction.atomic():
        env = _locked(environment)
        if env.paused_at is None:
            raise EnvironmentPauseRefused(f"environment '{environment}' is not paused")
        resumed = Queue.objects.select_for_update().filter(environment_id=environment, paused=True).exclude(
            name__in=env.queues_paused_before)
        names = list(resumed.values_list("name", flat=True))
        resumed.update(paused=False, updated_at=timezone.now())
        env.paused_at, env.queues_paused_before = None, []
        env.save(update_fields=["paused_at", "queues_paused_before"])
        queues_released_on_commit(environment, names)
    return _state(env)

