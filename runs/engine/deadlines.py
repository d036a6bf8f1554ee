"""A thread that acts on things when their time comes: the heartbeats of attempts, the hand-back of group hints."""
from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable

logger = logging.getLogger(__name__)


class Deadlines[Item]:
    """A daemon thread that hands ``act`` the items whose time has come, earliest first.

    ``add(key, item, at)`` schedules ``item`` for ``at`` (``time.monotonic()`` seconds);
    ``discard(key)`` drops what was added under ``key`` and is not due yet. ``act`` runs in the
    thread with every item due at once; it may add more, and what it raises is logged. Only an
    item due before the one the thread waits for wakes it: scheduling a later one costs the
    caller no thread switch.
    """

    def __init__(self, name: str, act: Callable[[list[Item]], None]) -> None:
        self._act = act
        self._due: list[tuple[float, int, Hashable, Item]] = []  # (when, order, key, item)
        self._order = itertools.count()
        self._changed = threading.Condition()
        # When the thread wakes if nothing changes (-inf while it is not waiting: it looks at
        # the heap again before it waits).
        self._waking_at = -math.inf
        threading.Thread(target=self._loop, name=name, daemon=True).start()

    def add(self, key: Hashable, item: Item, at: float) -> None:
        with self._changed:
            heapq.heappush(self._due, (at, next(self._order), key, item))
            if at < self._waking_at:
                self._changed.notify()

    def discard(self, key: Hashable) -> None:
        with self._changed:
            self._due = [entry for entry in self._due if entry[2] is not key]
            heapq.heapify(self._due)

    def _take_due(self) -> list[Item]:
        with self._changed:
            while True:
                if self._due:
                    wait = self._due[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._waking_at = self._due[0][0]
                    self._changed.wait(wait)
                else:
                    self._waking_at = math.inf
                    self._changed.wait()
                self._waking_at = -math.inf
            now = time.monotonic()
            due = []
            while self._due and self._due[0][0] <= now:
                due.append(heapq.heappop(self._due)[3])
            return due

    def _loop(self) -> None:
        while True:
            due = self._take_due()
            try:
                self._act(due)
            except Exception:  # the thread must outlive one bad round: every later item depends on it
                logger.exception("acting on %d due items failed", len(due))
