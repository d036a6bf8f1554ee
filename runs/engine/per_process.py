"""One instance of a thing per process: made on first use, and made anew in a forked child."""
from __future__ import annotations

import os
import threading
from collections.abc import Callable


class PerProcess[T]:
    """Call it for this process's ``make()``: a thread it starts does not live on in a forked child."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: T | None = None
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def __call__(self) -> T:
        with self._lock:
            if self._value is None:
                self._value = self._make()
            return self._value

    def _forget(self) -> None:
        self._value = None
        self._lock = threading.Lock()  # the parent's may have been held by another thread at the fork
