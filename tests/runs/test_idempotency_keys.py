"""Resetting idempotency keys from the SDK and the CLI; expired keys keep showing on their run."""
from __future__ import annotations

import time

import pytest
from django.core.management import CommandError

from stepwise.runs.idempotency import IdempotencyKeyNotFound, InvalidIdempotencyKey
from stepwise.runs.models import Run, RunEvent
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.sdk import idempotency_keys
from tests.commands import run_command
from tests.engine_tasks import idem_echo

pytestmark = pytest.mark.django_db


def _child(parent: Run, key: str, scope: str, attempt: int | None = None) -> Run:
    """Trigger a keyed child of ``parent`` as a trigger inside that run would."""
    return run_trigger(task_id="test-idem-echo", payload={}, options=TriggerOptions(
        idempotency_key=key, idempotency_key_scope=scope, parent_run_id=parent.id, parent_attempt=attempt))[0]


def test_sdk_reset_frees_the_key_and_the_old_run_keeps_showing_it():
    first = idem_echo.trigger({}, idempotency_key="order-1")

    held_by = idempotency_keys.reset("test-idem-echo", "order-1")
    second = idem_echo.trigger({}, idempotency_key="order-1")
    third = idem_echo.trigger({}, idempotency_key="order-1")

    assert held_by == first.id
    assert second.created and second.id != first.id
    assert not third.created and third.id == second.id, "the new run holds the key now"
    old = Run.objects.get(id=first.id)
    assert (old.idempotency_key, old.idempotency_key_scope, old.idempotency_key_state) == ("order-1", "global", "reset")
    assert old.idempotency_key_reset_at is not None
    assert RunEvent.objects.get(run_id=first.id, type="idempotency_key.reset").data == {
        "key": "order-1", "scope": "global", "by": "sdk"}
    assert Run.objects.get(id=second.id).idempotency_key_state == "active"


def test_reset_of_an_unknown_key_says_so_and_changes_nothing():
    idem_echo.trigger({}, idempotency_key="order-1")
    idempotency_keys.reset("test-idem-echo", "order-1")

    with pytest.raises(IdempotencyKeyNotFound, match="no run of task 'test-idem-echo' in environment 'dev' holds "
                                                     "the idempotency key 'order-1' \\(scope global\\)"):
        idempotency_keys.reset("test-idem-echo", "order-1")
    with pytest.raises(IdempotencyKeyNotFound, match="holds the idempotency key 'never'"):
        idempotency_keys.reset("test-idem-echo", "never")
    with pytest.raises(IdempotencyKeyNotFound, match="in environment 'prod'"):
        idempotency_keys.reset("test-idem-echo", "order-1", environment="prod")
    assert RunEvent.objects.filter(type="idempotency_key.reset").count() == 1


def test_reset_of_a_run_scoped_key_names_its_parent():
    parents = [idem_echo.trigger({}) for _ in range(2)]
    parent, other = (Run.objects.get(id=p.id) for p in parents)
    child, others_child = _child(parent, "receipt", "run"), _child(other, "receipt", "run")

    with pytest.raises(InvalidIdempotencyKey, match="idempotency_key_scope 'run' combines the key with the parent"):
        idempotency_keys.reset("test-idem-echo", "receipt", scope="run")
    with pytest.raises(IdempotencyKeyNotFound, match="scope global"):
        idempotency_keys.reset("test-idem-echo", "receipt")  # a global key of that name was never used

    assert idempotency_keys.reset("test-idem-echo", "receipt", scope="run", parent_run_id=parent.id) == child.id
    assert Run.objects.get(id=others_child.id).idempotency_key_state == "active", "the other parent's key stays"
    assert _child(parent, "receipt", "run").id != child.id


def test_reset_of_an_attempt_scoped_key_names_the_attempt():
    parent = Run.objects.get(id=idem_echo.trigger({}).id)
    child = _child(parent, "receipt", "attempt", attempt=2)

    with pytest.raises(InvalidIdempotencyKey, match="give parent_attempt"):
        idempotency_keys.reset("test-idem-echo", "receipt", scope="attempt", parent_run_id=parent.id)
    with pytest.raises(IdempotencyKeyNotFound):
        idempotency_keys.reset("test-idem-echo", "receipt", scope="attempt", parent_run_id=parent.id, parent_attempt=1)
    assert idempotency_keys.reset("test-idem-echo", "receipt", scope="attempt", parent_run_id=parent.id,
                                  parent_attempt=2) == child.id


def test_an_expired_key_keeps_showing_on_its_run_beside_the_run_that_took_it():
    first = idem_echo.trigger({}, idempotency_key="k", idempotency_key_ttl="1s")
    time.sleep(1.1)
    assert Run.objects.get(id=first.id).idempotency_key_state == "expired"  # expired before anyone takes it
    later = idem_echo.trigger({}, idempotency_key="k", idempotency_key_ttl="1s")

    assert later.created and later.id != first.id
    old = Run.objects.get(id=first.id)
    assert (old.idempotency_key, old.idempotency_key_scope, old.idempotency_key_state) == ("k", "global", "expired")
    assert old.idempotency_key_effective is None and Run.objects.get(id=later.id).idempotency_key_effective
    shown = run_command("runs", "show", first.id)
    assert "key       k (global scope, expired)" in shown
    with pytest.raises(CommandError, match="no run of task 'test-idem-echo' .* holds the idempotency key 'k'"):
        run_command("idempotency", "reset", "test-idem-echo", "k", "--env", "prod")


def test_cli_reset_frees_the_key_and_bad_input_names_the_problem():
    first = idem_echo.trigger({}, idempotency_key="order-1")

    out = run_command("idempotency", "reset", "test-idem-echo", "order-1")
    second = idem_echo.trigger({}, idempotency_key="order-1")

    assert out.strip() == (f"idempotency key 'order-1' (global) reset: run {first.id} no longer holds it; "
                           "the next trigger with it starts a new run")
    assert second.created and second.id != first.id
    assert "key       order-1 (global scope, reset)" in run_command("runs", "show", first.id)
    with pytest.raises(CommandError, match="no run of task 'test-idem-echo' in environment 'dev' holds the "
                                           "idempotency key 'nope'"):
        run_command("idempotency", "reset", "test-idem-echo", "nope")
    with pytest.raises(CommandError, match="argument --scope: invalid choice: 'galaxy'"):
        run_command("idempotency", "reset", "test-idem-echo", "order-1", "--scope", "galaxy")
    with pytest.raises(CommandError, match="idempotency_key_scope 'run' combines the key with the parent run"):
        run_command("idempotency", "reset", "test-idem-echo", "order-1", "--scope", "run")
    with pytest.raises(CommandError, match="unknown environment 'mars'"):
        run_command("idempotency", "reset", "test-idem-echo", "order-1", "--env", "mars")
    assert Run.objects.get(id=second.id).idempotency_key_state == "active"


def test_cli_trigger_takes_a_scope_and_refuses_run_scope_outside_a_run():
    out = run_command("trigger", "test-idem-echo", "{}", "--idempotency-key", "k", "--idempotency-key-scope", "global")
    again = run_command("trigger", "test-idem-echo", "{}", "--idempotency-key", "k")

    run = Run.objects.get()
    assert out.strip() == f"{run.id} QUEUED"
    assert again.strip() == f"{run.id} QUEUED (existing run for this idempotency key)"
    with pytest.raises(CommandError, match="idempotency_key_scope 'attempt' combines the key with the parent run, so "
                                           "it is only for triggers made inside a run"):
        run_command("trigger", "test-idem-echo", "{}", "--idempotency-key", "k2", "--idempotency-key-scope", "attempt")
    assert Run.objects.count() == 1
