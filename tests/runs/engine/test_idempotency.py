"""Idempotency keys: the database decides which of many concurrent duplicates wins."""
from __future__ import annotations

import threading
import time

from django.db import connection

from stepwise.runs.models import Run
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.models import Queue
from stepwise.tasks.services import environments_ensure


def _pause(task_queue: str) -> None:
    environments_ensure()  # a queue belongs to an environment, which a flush removed
    Queue.objects.update_or_create(environment_id="dev", name=task_queue, defaults={"paused": True})


def test_fifty_concurrent_duplicate_triggers_create_exactly_one_run(transactional_db):
    _pause("task/test-noop")
    barrier = threading.Barrier(50)
    results, errors = [], []

    def trigger():
        try:
            barrier.wait()
            run, created = run_trigger(
                task_id="test-noop", payload={"n": 1}, options=TriggerOptions(idempotency_key="order-1")
            )
            results.append((run.id, created))
        except Exception as exc:  # collected so the assertion shows it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=trigger) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert Run.objects.filter(idempotency_key="order-1").count() == 1
    assert len({run_id for run_id, _ in results}) == 1
    assert sorted(created for _, created in results) == [False] * 49 + [True]


def test_same_key_after_its_ttl_starts_a_new_run(transactional_db):
    _pause("task/test-noop")
    options = TriggerOptions(idempotency_key="k", idempotency_key_ttl="1s")
    first, created_first = run_trigger(task_id="test-noop", payload={}, options=options)
    again, created_again = run_trigger(task_id="test-noop", payload={}, options=options)
    time.sleep(1.1)
    later, created_later = run_trigger(task_id="test-noop", payload={}, options=options)

    assert (created_first, created_again, created_later) == (True, False, True)
    assert again.id == first.id and later.id != first.id
    assert Run.objects.get(id=later.id).idempotency_key == "k"
    # The old run keeps showing the key it was triggered with, marked expired; only the new one holds it.
    old = Run.objects.get(id=first.id)
    assert (old.idempotency_key, old.idempotency_key_scope, old.idempotency_key_state) == ("k", "global", "expired")
    assert list(Run.objects.filter(idempotency_key="k").order_by("id").values_list("id", flat=True)) == [
        first.id, later.id]


def test_same_key_for_another_task_is_a_different_run(transactional_db):
    _pause("task/test-noop")
    _pause("task/test-abort")
    a, _ = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(idempotency_key="k"))
    b, created = run_trigger(task_id="test-abort", payload={}, options=TriggerOptions(idempotency_key="k"))
    assert created and a.id != b.id
