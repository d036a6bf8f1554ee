"""Queues belong to an environment: a key of one cannot pause, limit or count another's; triggers name real queues."""
from __future__ import annotations

import pytest

from stepwise.runs.models import Run
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.registry import task_get
from stepwise.tasks.services import task_version_ensure
from tests.api.conftest import ApiClient

pytestmark = pytest.mark.django_db

EVERY_SCOPE = ["read", "trigger", "operate", "admin"]


@pytest.fixture
def dev(environments) -> ApiClient:
    task_version_ensure(task_get("test-noop"))  # its queue, in every environment
    return ApiClient(api_key_create(environment="dev", name="dev admin", scopes=EVERY_SCOPE).secret)


@pytest.fixture
def prod(environments) -> ApiClient:
    return ApiClient(api_key_create(environment="prod", name="prod admin", scopes=EVERY_SCOPE).secret)


def queue(client: ApiClient, name: str = "task/test-noop") -> dict:
    return {q["name"]: q for q in client.get("/api/queues").json()}[name]


def test_pausing_a_queue_in_dev_leaves_the_same_queue_of_prod_running(dev, prod):
    prod.post("/api/tasks/test-noop/trigger", {"payload": {}})

    paused = dev.post("/api/queues/task/test-noop/pause").json()

    assert paused["paused"] is True and paused["queued"] == 0  # prod's queued run is not dev's to see
    assert queue(prod)["paused"] is False and queue(prod)["queued"] == 1
    assert queue(dev)["paused"] is True


def test_a_limit_set_in_dev_does_not_change_prod(dev, prod):
    prod.put("/api/queues/task/test-noop/limit", {"concurrency_limit": 7})

    assert dev.put("/api/queues/task/test-noop/limit", {"concurrency_limit": 1}).json()["concurrency_limit"] == 1

    assert queue(prod)["concurrency_limit"] == 7


def test_a_trigger_cannot_name_a_made_up_queue_to_escape_a_pause(prod):
    prod.post("/api/queues/task/test-noop/pause")

    refused = prod.post("/api/tasks/test-noop/trigger", {"payload": {}, "queue": "fast-lane"})

    assert refused.status_code == 400
    assert "no queue named 'fast-lane' in environment 'prod'" in refused.json()["detail"]
    assert not Run.objects.exists()


def test_a_trigger_may_name_its_own_queue_or_one_declared_by_a_task(prod):
    own = prod.post("/api/tasks/test-noop/trigger", {"payload": {}, "queue": "task/test-noop"})
    declared = prod.post("/api/tasks/test-noop/trigger", {"payload": {}, "queue": "task/test-abort"})

    assert own.status_code == 201 and declared.status_code == 201
    assert queue(prod, "task/test-abort")["queued"] == 1
