"""manage.py idempotency reset TASK KEY: free an idempotency key from the command line."""
from __future__ import annotations

from stepwise.runs.idempotency import idempotency_key_reset
from stepwise.runs.management.base import SubcommandCommand, audit, env_option
from stepwise.runs.statuses import IdempotencyKeyScope


class Command(SubcommandCommand):
    help = "Reset an idempotency key: the next trigger with it starts a new run; the old run keeps showing it."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        reset = sub.add_parser("reset", help="free a key so the next trigger with it starts a new run")
        reset.add_argument("task_id")
        reset.add_argument("key", help="the idempotency key as the trigger gave it")
        reset.add_argument("--scope", choices=IdempotencyKeyScope.values, default=IdempotencyKeyScope.GLOBAL,
                           help="the key's scope (default: global)")
        reset.add_argument("--parent-run", dest="parent_run_id", help="with --scope run|attempt: the parent run id")
        reset.add_argument("--parent-attempt", type=int, help="with --scope attempt: the parent run's attempt")
        env_option(reset)

    def _reset(self, opts) -> None:
        run = idempotency_key_reset(
            task_id=opts["task_id"], key=opts["key"], scope=opts["scope"], parent_run_id=opts["parent_run_id"],
            parent_attempt=opts["parent_attempt"], environment=opts["env"], actor="cli",
        )
        audit("idempotency_key.reset", environment=opts["env"], target=f"{run.task_id}:{run.idempotency_key}",
              data={"run_id": run.id})
        self.stdout.write(f"idempotency key {run.idempotency_key!r} ({run.idempotency_key_scope}) reset: "
                          f"run {run.id} no longer holds it; the next trigger with it starts a new run")
