"""What the management commands share: the --env option, user errors as CommandError, subcommand dispatch."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from stepwise.runs.engine.errors import StepwiseError
from stepwise.tasks.audit import actor_of_cli, audit_record
from stepwise.tasks.registry import UnknownTask
from stepwise.tasks.services import UnknownEnvironment, environment_require


def env_option(parser: CommandParser) -> None:
    """Add ``--env`` (default dev): the environment a subcommand acts in."""
    parser.add_argument("--env", default="dev", help="environment slug (default: dev)")


def audit(action: str, *, environment: str, target: Any = "", data: dict[str, Any] | None = None) -> None:
    """Record a change made from the command line, in the name of the operating system's user."""
    audit_record(actor=actor_of_cli(), action=action, environment=environment, target=target, data=data)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix (bad input, unknown names) into a CommandError with their message."""
    try:
        yield
    except (StepwiseError, UnknownTask, UnknownEnvironment) as exc:
        raise CommandError(str(exc)) from None


class SubcommandCommand(BaseCommand):
    """A command whose first argument names an action, run by the method ``_<action>(opts)``.

    Subclasses add their subparsers with ``dest="action"``; an ``--env`` given to one must name
    an existing environment before the action runs.
    """

    def handle(self, *args: Any, **opts: Any) -> None:
        with user_errors():
            if opts.get("env") is not None:
                environment_require(opts["env"])
            getattr(self, f"_{opts['action'].replace('-', '_')}")(opts)
