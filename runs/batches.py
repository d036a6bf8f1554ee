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
    arrives within that long of the last batch's send waits that long for company, and an item
    after a quiet spell leaves at once.
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
        self._queue: queue.SimpleQueue[T] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._pending = 0
        self._idle = threading.Event()
        self._idle.set()
        self._full = threading.Event()  # set once a batch's worth is waiting: the linger ends early

    def submit(self, item: T) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first use in this (possibly forked) process
                self._pid = os.getpid()
                self._queue = queue.SimpleQueue()
                self._full = threading.Event()
                self._pending = 0
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
        while True:
            batch = [q.get()]
            linger = self._linger
            if not linger and time.monotonic() - sent_at < self._busy_linger:
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
            try:
                send(batch)
            finally:
                sent_at = time.monotonic()
                with self._lock:
                    self._pending -= len(batch)
                    if self._pending <= 0:
                        self._idle.set()
