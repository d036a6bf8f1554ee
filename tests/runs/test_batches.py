"""The per-process sender threads: what callers submit arrives whole, in order, in few batches."""
from __future__ import annotations

import threading
import time

from stepwise.runs.batches import BatchThread


def _recording(batches: list[list[int]], started: threading.Event):
    def start():
        started.set()
        return lambda batch: batches.append(list(batch))

    return start


def test_items_submitted_while_the_thread_lingers_travel_in_one_batch_in_order():
    batches: list[list[int]] = []
    sender = BatchThread(name="test-linger", start=_recording(batches, threading.Event()), max_batch=100, linger=0.2)
    for item in range(20):
        sender.submit(item)
        time.sleep(0.001)  # a busy producer: one item per millisecond, as a worker recording steps
    assert sender.flush(5.0)
    assert [item for batch in batches for item in batch] == list(range(20))
    assert len(batches) <= 2  # the first item may leave alone before the thread is up to linger


def test_without_linger_a_lone_item_is_sent_at_once_and_a_full_batch_does_not_wait():
    batches: list[list[int]] = []
    sender = BatchThread(name="test-no-linger", start=_recording(batches, threading.Event()), max_batch=5, linger=30)
    for item in range(5):
        sender.submit(item)
    # max_batch items are there: the batch leaves without waiting out the 30 s linger.
    assert sender.flush(5.0)
    assert [item for batch in batches for item in batch] == list(range(5))
    eager = BatchThread(name="test-eager", start=_recording(batches := [], threading.Event()), max_batch=100)
    eager.submit(1)
    assert eager.flush(1.0)
    assert batches == [[1]]


def test_a_busy_linger_gathers_items_that_keep_coming_and_lets_one_after_a_quiet_spell_leave_at_once():
    batches: list[list[int]] = []
    sender = BatchThread(name="test-busy", start=_recording(batches, threading.Event()), max_batch=100,
                         busy_linger=1.0)
    sender.submit(0)  # nothing was sent before: it leaves alone, at once
    assert sender.flush(0.5)
    for item in range(1, 10):  # a burst right after a send: the batch waits for company
        sender.submit(item)
        time.sleep(0.001)
    assert sender.flush(5.0)
    time.sleep(1.2)  # a quiet spell longer than the linger
    sender.submit(10)
    assert sender.flush(0.5)  # not held for the linger
    assert batches == [[0], list(range(1, 10)), [10]]


def test_a_busy_linger_holds_no_item_of_a_trickle_slower_than_a_quarter_of_it():
    """Items a little apart, each one alone: none waits for company that would not come."""
    batches: list[list[int]] = []
    sender = BatchThread(name="test-trickle", start=_recording(batches, threading.Event()), max_batch=100,
                         busy_linger=1.0)
    for item in range(4):
        sender.submit(item)
        assert sender.flush(0.5)  # sent at once, not held for the linger
        time.sleep(0.4)  # within the linger of the last send, but more than a quarter of it
    assert batches == [[0], [1], [2], [3]]
