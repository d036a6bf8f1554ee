"""manage.py queues list|pause|resume|limit|rate|pause-all|resume-all: limits, pausing a queue or an environment."""
from __future__ import annotations

import argparse

from stepwise.runs.management.base import SubcommandCommand, audit, env_option
from stepwise.tasks.environments import environment_pause, environment_resume, environment_state
from stepwise.tasks.queues import (
    MAX_LIMIT,
    UNCHANGED,
    queue_limit_set,
    queue_list,
    queue_pause,
    queue_rate_set,
    queue_resume,
    rate_text,
)


def limit_value(text: str) -> int | None:
    """Parse a concurrency limit: an integer, or 'none' for no limit."""
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"'{text}' is not a concurrency limit: give an integer from 1 to {MAX_LIMIT}, or 'none'"
        ) from None


def _limit_text(limit: int | None, total: int | None = None, rate: str | None = None) -> str:
    """Say a queue's limits: 'limit 2' (per concurrency key), 'total 10', 'rate 10/1s', some of them, or 'unlimited'."""
    parts = [f"{what} {value}" for what, value in (("limit", limit), ("total", total), ("rate", rate))
             if value is not None]
    return ", ".join(parts) or "unlimited"


def _queue_limits(queue) -> str:
    return _limit_text(queue.concurrency_limit, queue.total_limit, rate_text(queue.rate_limit, queue.rate_period))


class Command(SubcommandCommand):
    help = "List queues with their executing and queued runs, pause or resume one, or set its concurrency limit."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        env_option(sub.add_parser("list", help="every queue of the environment with its limit and counts"))
        for action, helped in (("pause", "no new run starts; executing runs finish"),
                               ("resume", "start queued runs again")):
            acting = sub.add_parser(action, help=helped)
            acting.add_argument("name")
            env_option(acting)
        limiting = sub.add_parser("limit", help="runs at a time (per concurrency key), or 'none'")
        limiting.add_argument("name")
        limiting.add_argument("limit", type=limit_value, metavar="N|none", nargs="?", default=UNCHANGED,
                              help="runs at a time per concurrency key (left as it is if not given)")
        limiting.add_argument("--total", type=limit_value, metavar="N|none", default=UNCHANGED,
                              help="runs at a time in the whole queue, across concurrency keys")
        env_option(limiting)
        rating = sub.add_parser("rate", help="starts per period across all workers ('10/s', '1000/1h'), or 'none'")
        rating.add_argument("name")
        rating.add_argument("rate", metavar="N/PERIOD|none")
        env_option(rating)
        env_option(sub.add_parser("pause-all", help="pause the whole environment: every queue, new ones too"))
        env_option(sub.add_parser("resume-all", help="resume the environment: its queues go back to how they were"))

    def _list(self, opts) -> None:
        state = environment_state(environment=opts["env"])
        if state.paused:
            self.stdout.write(f"environment {state.environment} is paused since {state.paused_at:%Y-%m-%d %H:%M:%S} "
                              "UTC: no run of it starts (manage.py queues resume-all)")
        self.stdout.write(f"{'QUEUE':<32} {'LIMIT':<32} {'STATE':<7} {'EXECUTING':>9} {'QUEUED':>7}")
        for q in queue_list(environment=opts["env"]):
            state = "paused" if q.paused else "active"
            limits = _limit_text(q.concurrency_limit, q.total_limit, q.rate_limit)
            self.stdout.write(f"{q.name:<32} {limits:<32} {state:<7} {q.executing:>9} {q.queued:>7}")

    def _pause(self, opts) -> None:
        queue_pause(environment=opts["env"], name=opts["name"])
        audit("queue.pause", environment=opts["env"], target=opts["name"])
        self.stdout.write(f"queue {opts['name']} paused: its queued runs wait until you resume it")

    def _resume(self, opts) -> None:
        queue_resume(environment=opts["env"], name=opts["name"])
        audit("queue.resume", environment=opts["env"], target=opts["name"])
        self.stdout.write(f"queue {opts['name']} resumed")

    def _limit(self, opts) -> None:
        queue = queue_limit_set(environment=opts["env"], name=opts["name"], limit=opts["limit"], total=opts["total"])
        given = {name: value for name, value in (("concurrency_limit", opts["limit"]), ("total_limit", opts["total"]))
                 if value is not UNCHANGED}
        audit("queue.limit", environment=opts["env"], target=queue.name, data=given)
        self.stdout.write(f"queue {queue.name} is now {_queue_limits(queue)}")

    def _rate(self, opts) -> None:
        rate = None if opts["rate"].strip().lower() == "none" else opts["rate"]
        queue = queue_rate_set(environment=opts["env"], name=opts["name"], rate=rate)
        audit("queue.rate", environment=opts["env"], target=queue.name, data={"rate_limit": rate})
        self.stdout.write(f"queue {queue.name} is now {_queue_limits(queue)}")

    def _pause_all(self, opts) -> None:
        state = environment_pause(environment=opts["env"])
        audit("environment.pause", environment=opts["env"], target=opts["env"])
        kept = ", ".join(state.queues_paused_before) or "none"
        self.stdout.write(f"environment {state.environment} paused: no run of it starts until resume-all "
                          f"(queues paused before, which stay paused: {kept})")

    def _resume_all(self, opts) -> None:
        state = environment_state(environment=opts["env"])
        environment_resume(environment=opts["env"])
        audit("environment.resume", environment=opts["env"], target=opts["env"])
        kept = ", ".join(state.queues_paused_before) or "none"
        self.stdout.write(f"environment {state.environment} resumed (still paused, as before: {kept})")
