"""The deadline thread behind heartbeats and group hand-backs: items come due in order, and a failure stops nothing."""
from __future__ import annotations

import threading
import time

from stepwise.runs.engine.deadlines import Deadlines


def _wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_items_come_due_in_time_order_and_a_discarded_one_never_does():
    acted: list[str] = []
    thread = Deadlines("test-deadlines", acted.extend)
    now = time.monotonic()
    thread.add("b", "b", now + 0.2)
    thread.add("gone", "gone", now + 0.1)
    thread.add("a", "a", now + 0.05)
    thread.discard("gone")
    _wait_for(lambda: len(acted) >= 2)
    time.sleep(0.2)  # "gone" was due meanwhile
    assert acted == ["a", "b"]


def test_an_item_whose_action_raises_does_not_stop_the_ones_after_it(caplog):
    acted: list[str] = []
    done = threading.Event()

    def act(items: list[str]) -> None:
        for item in items:
            if item == "bad":
                raise RuntimeError("the broker is gone")
            acted.append(item)
            done.set()

    thread = Deadlines("test-deadlines-failing", act)
    now = time.monotonic()
    thread.add("bad", "bad", now + 0.01)
    thread.add("good", "good", now + 0.15)
    assert done.wait(5)
    assert acted == ["good"]
    assert "acting on 1 due items failed" in caplog.text
