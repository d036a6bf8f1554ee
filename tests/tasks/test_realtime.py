"""The SDK's ``auth.create_public_token``: a token of the caller's environment, the run's inside a task."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from stepwise.runs.engine.context import RunContext, current_context
from stepwise.runs.realtime.tokens import InvalidPublicTokenRequest, public_token_verify
from stepwise.runs.store import OrmRunStore
from stepwise.runs.triggers import TriggerOptions, run_trigger
from stepwise.tasks.sdk import auth


def test_a_public_token_made_outside_a_run_reads_the_given_environment_until_it_expires(db):
    granted = public_token_verify(auth.create_public_token(scopes={"runs": ["run_1"], "tags": ["user-42"]},
                                                           expires_in="1h"))
    assert (granted.environment, granted.runs, granted.tags) == ("dev", {"run_1"}, {"user-42"})
    assert timedelta(minutes=59) < granted.expires_at - timezone.now() <= timedelta(hours=1)
    prod = auth.create_public_token(scopes={"tags": ["t"]}, environment="prod")
    assert public_token_verify(prod).environment == "prod"
    with pytest.raises(InvalidPublicTokenRequest, match="at least one run or tag"):
        auth.create_public_token(scopes={"tags": []})


@pytest.mark.django_db(transaction=True)
def test_a_public_token_made_inside_a_task_reads_the_run_s_environment():
    run, _ = run_trigger(task_id="test-noop", payload={}, options=TriggerOptions(environment="prod"))
    store = OrmRunStore()
    context = current_context.set(RunContext(store=store, claim=store.claim(run.id, "worker-1")))
    try:
        token = auth.create_public_token(scopes={"runs": [run.id]})
    finally:
        current_context.reset(context)
    granted = public_token_verify(token)
    assert granted.environment == "prod" and granted.runs == {run.id}
    assert timedelta(minutes=14) < granted.expires_at - timezone.now() <= timedelta(minutes=15)  # the default
