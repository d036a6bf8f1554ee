"""A console server and workers that also run the streaming test tasks."""
from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

import tests.realtime.stream_tasks  # noqa: F401  (registers the streaming tasks in this process)
from stepwise.tasks.access import SCOPES
from stepwise.tasks.apikeys import api_key_create
from stepwise.tasks.services import environments_ensure
from tests.processes import TASK_MODULES

MODULES = f"{TASK_MODULES},examples.realtime,tests.realtime.stream_tasks"


@pytest.fixture
def realtime(processes, transactional_db):
    """A worker and a scheduler that know the streaming tasks, and the console (heartbeats every 0.3 s)."""
    environments_ensure()
    processes.worker(concurrency=2, STEPWISE_TASK_MODULES=MODULES)
    processes.scheduler(interval=0.2, STEPWISE_TASK_MODULES=MODULES)
    return processes.console(STEPWISE_TASK_MODULES=MODULES, STEPWISE_SSE_HEARTBEAT_SECONDS="0.3")


@pytest.fixture
def read_key(transactional_db) -> str:
    environments_ensure()
    return api_key_create(environment="dev", name="reader", scopes=["read"]).secret


@pytest.fixture
def all_key(transactional_db) -> str:
    environments_ensure()
    return api_key_create(environment="dev", name="all", scopes=SCOPES).secret


def sse_events(url: str, token: str, *, headers: dict[str, str] | None = None, until=None,
               timeout: float = 60) -> Iterator[tuple[str, str | None, dict | None]]:
    """Yield (event, id, data) of a server-sent event stream; comment lines come as ("comment", None, None)."""
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {token}", **(headers or {})},
                      timeout=httpx.Timeout(10, read=timeout)) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        event, id_, data = "message", None, []
        for line in response.iter_lines():
            if line.startswith(":"):
                yield "comment", None, None
            elif not line:
                if data:
                    yield event, id_, json.loads("\n".join(data))
                event, id_, data = "message", None, []
            elif line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("id:"):
                id_ = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
