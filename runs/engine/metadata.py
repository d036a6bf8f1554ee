"""``ctx.metadata``: a run's metadata, read and changed from inside the run."""
from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from stepwise.runs.engine.checkpoints import checkpoint_encode
from stepwise.runs.engine.errors import InvalidMetadata, StepwiseError

# Where a change stands in the run's code: (steps called before it, its index among the
# changes made outside steps since). Changes inside a step have no place: they belong to it.
Cursor = tuple[int, int]

MAX_KEY_LENGTH = 256


def _number(value: Any, what: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidMetadata(f"{what} must be a number, not {type(value).__name__}")
    return value


class RunMetadata(Mapping[str, Any]):
    """The run's metadata: a JSON object the run changes as it goes, streamed live to the console.

    Read it like a dict; change it with ``set``, ``delete``, ``increment``, ``decrement``,
    ``append``, ``remove`` and ``replace`` (``ctx.metadata["k"] = v`` is ``set``). A change is
    stored with the attempt's next write (a step, a wait, the outcome), or within a second
    during a long step, fenced by the attempt's lease; each stored change is a
    ``metadata.updated`` event of the run.

    Outside a step, a change happens once per run: when the code replays (a resume, a retry)
    the changes already stored are skipped. Inside a step a change belongs to the step and
    is made again whenever the step's code runs again; ``set`` is safe there, ``increment``
    counts again. Reads return the run's latest metadata.

    Example::

        ctx.metadata.set("status", "fetching")
        for page in pages:
            ctx.step(f"fetch-{page}", fetch, page)
            ctx.metadata.increment("pages_done")
        ctx.metadata.append("log", "all pages fetched")
    """

    def __init__(
        self,
        initial: dict[str, Any],
        *,
        cursor: Cursor | None,
        max_bytes: int,
        place: Callable[[], int | None],
        on_change: Callable[[dict[str, Any], Cursor | None], None],
    ) -> None:
        self._values = copy.deepcopy(initial)
        self._stored_cursor = cursor  # the last change the stored metadata holds
        self._cursor = cursor
        self._max_bytes = max_bytes
        self._place = place  # the steps called so far, or None inside a step's code
        self._on_change = on_change
        self._segment: int | None = None
        self._index = -1
        self._lock = threading.Lock()

    # Reading.
    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._values[key])

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._values))

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"RunMetadata({self._values!r})"

    def to_dict(self) -> dict[str, Any]:
        """Return a copy of the metadata as a plain dict."""
        return copy.deepcopy(self._values)

    # Changing.
    def set(self, key: str, value: Any) -> None:
        """Set ``key`` to a JSON ``value``."""
        value = self._value(key, value)
        self._change(lambda values: values.__setitem__(key, value))

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def delete(self, key: str) -> None:
        """Remove ``key`` (nothing happens if it is absent)."""
        self._key(key)
        self._change(lambda values: values.pop(key, None))

    def __delitem__(self, key: str) -> None:
        self.delete(key)

    def increment(self, key: str, by: int | float = 1) -> None:
        """Add ``by`` to the number at ``key`` (an absent key counts from 0)."""
        self._key(key)
        by = _number(by, "the amount to increment by")

        def change(values: dict[str, Any]) -> None:
            values[key] = _number(values.get(key, 0), f"metadata '{key}' (to increment it)") + by

        self._change(change)

    def decrement(self, key: str, by: int | float = 1) -> None:
        """Subtract ``by`` from the number at ``key`` (an absent key counts from 0)."""
        self.increment(key, -_number(by, "the amount to decrement by"))

    def append(self, key: str, value: Any) -> None:
        """Append ``value`` to the list at ``key``; an absent key starts a list, another value becomes its first."""
        value = self._value(key, value)

        def change(values: dict[str, Any]) -> None:
            current = values.get(key, [])
            values[key] = [*(current if isinstance(current, list) else [current]), value]

        self._change(change)

    def remove(self, key: str, value: Any) -> None:
        """Remove every item equal to ``value`` from the list at ``key``."""
        value = self._value(key, value)

        def change(values: dict[str, Any]) -> None:
            current = values.get(key)
            if isinstance(current, list):
                values[key] = [item for item in current if item != value]

        self._change(change)

    def replace(self, values: Mapping[str, Any]) -> None:
        """Replace the whole metadata with ``values``."""
        if not isinstance(values, Mapping):
            raise InvalidMetadata(f"metadata must be a JSON object, not {type(values).__name__}")
        for key in values:
            self._key(key)
        encoded = self._encode(dict(values), "metadata")
        self._change(lambda current: (current.clear(), current.update(encoded)))

    def _key(self, key: Any) -> None:
        if not isinstance(key, str) or not 0 < len(key) <= MAX_KEY_LENGTH:
            raise InvalidMetadata(f"a metadata key must be a non-empty string of at most {MAX_KEY_LENGTH} "
                                  f"characters, not {key!r}")

    def _value(self, key: str, value: Any) -> Any:
        self._key(key)
        return self._encode(value, f"metadata '{key}'")

    @staticmethod
    def _encode(value: Any, where: str) -> Any:
        try:
            return checkpoint_encode(value, where=where)
        except StepwiseError as exc:
            raise InvalidMetadata(str(exc)) from None

    def _change(self, change: Callable[[dict[str, Any]], Any]) -> None:
        with self._lock:
            segment = self._place()
            cursor = None
            if segment is not None:
                self._index = self._index + 1 if segment == self._segment else 0
                self._segment = segment
                cursor = (segment, self._index)
                if self._stored_cursor is not None and cursor <= self._stored_cursor:
                    return  # made by an earlier attempt: the stored metadata holds it
            values = copy.deepcopy(self._values)
            change(values)
            size = len(json.dumps(values).encode())
            if size > self._max_bytes:
                raise InvalidMetadata(
                    f"metadata would be {size} bytes, over the limit of {self._max_bytes} bytes "
                    "(STEPWISE_MAX_METADATA_BYTES); nothing was changed"
                )
            self._values = values
            if cursor is not None:
                self._cursor = cursor
            self._on_change(copy.deepcopy(values), self._cursor)
