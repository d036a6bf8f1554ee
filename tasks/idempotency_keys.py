"""The ``idempotency_keys`` API of the SDK: reset a key so the next trigger with it starts a new run.

Example::

    from stepwise.tasks.sdk import idempotency_keys

    idempotency_keys.reset("send-receipt", "order-1")   # the next trigger with "order-1" runs again
"""
from __future__ import annotations

from asgiref.sync import sync_to_async

from stepwise.runs.engine.context import current_context


class IdempotencyKeys:
    """Reset idempotency keys; a task reads its own key and scope as ``ctx.run.idempotency_key(_scope)``."""

    def reset(
        self,
        task_id: str,
        key: str,
        *,
        scope: str = "global",
        parent_run_id: str | None = None,
        parent_attempt: int | None = None,
        environment: str | None = None,
    ) -> str:
        """Free ``key`` of ``task_id``: the next trigger with it starts a new run. Return the run that held it.

        That run keeps showing the key, marked reset. A "run" or "attempt" key names its parent
        run (and attempt); inside a run they default to the current run and attempt, and the
        environment to the run's. Inside a run the reset happens once, however often the code
        replays. Raises ``IdempotencyKeyNotFound`` when no run holds the key.

        Example::

            idempotency_keys.reset("send-receipt", "receipt", scope="run")   # inside the parent run
            idempotency_keys.reset("send-receipt", "order-1", environment="prod")
        """
        from stepwise.runs.idempotency import idempotency_key_reset

        ctx = current_context.get()
        if ctx is not None and parent_run_id is None and scope != "global":
            parent_run_id = ctx.run_id
            parent_attempt = ctx.attempt if parent_attempt is None else parent_attempt

        def reset(_: str = "") -> str:
            return idempotency_key_reset(
                task_id=task_id, key=key, scope=scope, parent_run_id=parent_run_id, parent_attempt=parent_attempt,
                environment=environment or (ctx.environment if ctx else "dev"), actor="sdk",
            ).id

        if ctx is None:
            return reset()
        return ctx.once(f"idempotency_keys.reset:{task_id}", "reset", reset)

    async def areset(self, task_id: str, key: str, **options: str | int | None) -> str:
        """Async twin of ``reset``."""
        return await sync_to_async(self.reset)(task_id, key, **options)


idempotency_keys = IdempotencyKeys()
