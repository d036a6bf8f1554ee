"""Time-ordered identifiers: sorting ids sorts by creation time, which keyset pages rely on."""
from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def encode_millis(millis: int) -> str:
    """Return the time part of an id for a Unix time in milliseconds."""
    return _encode(millis, 10)


_lock = threading.Lock()
_last = (0, 0)  # the milliseconds and random part of this process's latest id


def _forget_last() -> None:
    global _last
    _last = (0, 0)


# A forked child must not continue its parent's sequence: both would make the same next id.
os.register_at_fork(after_in_child=_forget_last)


def new_id(prefix: str) -> str:
    """Return a new id such as ``run_01jc...``: 48 bits of milliseconds, 80 random bits.

    Ids made by one process are strictly increasing: within one millisecond (many triggers
    in a batch) the random part of the previous id is incremented, so id order is creation
    order there too.
    """
    global _last
    millis = int(time.time() * 1000)
    with _lock:
        last_millis, last_rand = _last
        if millis <= last_millis:
            millis, rand = last_millis, last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # room for increments within the millisecond
        _last = (millis, rand)
    return f"{prefix}_{_encode(millis, 10)}{_encode(rand, 16)}"


def new_run_id() -> str:
    """Return a new run id."""
    return new_id("run")


def new_trace_id() -> str:
    """Return a new W3C trace id: 32 lower-case hex digits, never all zero."""
    return f"{int.from_bytes(os.urandom(16), 'big') or 1:032x}"


def new_span_id() -> str:
    """Return a new W3C span id: 16 lower-case hex digits, never all zero."""
    return f"{int.from_bytes(os.urandom(8), 'big') or 1:016x}"
