"""A background thread per process that hands what callers submit to a sender, in batches."""
from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable


class BatchThread[T]:
    """Callers ``submit`` and never wait; one daemon thread sends what queued up meanwhile.

    The thread starts on first use in a process (and anew in a forked child). In it, ``start``
    makes the sender once (a connection, an event loop); each batch of up to ``max_batch``
    items then goes to that sender, which handles its own failures. With ``linger`` (seconds) the
    thread sleeps that long after the first item of a batch while more join it: one round trip
    then carries what a busy process produced meanwhile instead of one item each. With
    ``busy_linger`` instead, the thread lingers only while items keep coming: a first item that
    arrives within that long of the last batch's send waits that long for company if the last
    batch had some or the item came within a quarter of it; an item after a quiet spell, and
    each item of a slower trickle, leaves at once.
    """

    def __init__(
        self, *, name: str, start: Callable[[], Callable[[list[T]], None]], max_batch: int, linger: float = 0.0,
        busy_linger: float = 0.0,
    ) -> None:
        self._name = name
        self._start = start
        self._max_batch = max_batch
        self._linger = linger
        self._busy_linger = busy_linger
        self._fresh()
        os.register_at_fork(after_in_child=self._fresh)

    def _fresh(self) -> None:
        """Start over with no thread: at first, and in a forked child, where the parent's thread does not exist."""
        self._queue: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._lock = threading.Lock()  # the parent's may have been held by another thread at the fork
        self._started = False
        self._pending = 0
        self._idle = threading.Event()
        self._idle.set()
        self._full = threading.Event()  # set once a batch's worth is waiting: the linger ends early

    def submit(self, item: T) -> None:
        with self._lock:
            if not self._started:  # first use in this process
                self._started = True
                threading.Thread(target=self._run, name=self._name, daemon=True).start()
            self._pending += 1
            self._idle.clear()
            self._queue.put(item)
            if self._pending >= self._max_batch:
                self._full.set()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every submitted item went through the sender."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        send = self._start()
        q = self._queue
        sent_at = float("-inf")
        last_size = 0
        while True:
            batch = [q.get()]
            linger = self._linger
            since = time.monotonic() - sent_at
            # Company is worth waiting for while items come faster than one per send: the last
            # batch had some, or this item came hard on its heels. A steady trickle slower than
            # that (a trigger every 10 ms) leaves item by item, each at once.
            if not linger and since < self._busy_linger and (last_size > 1 or since < self._busy_linger / 4):
                linger = self._busy_linger
            if linger:
                # Waiting for a full batch, not on the queue: what callers submit meanwhile wakes
                # no thread (a wake-up per item would cost the submitting thread a switch each).
                self._full.wait(linger)
                self._full.clear()
            while len(batch) < self._max_batch:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            last_size = len(batch)
            try:
                send(batch)
            finally:
                sent_at = time.monotonic()
                with self._lock:
                    self._pending -= len(batch)
                    if self._pending <= 0:
                        self._idle.set()
