"""Time-ordered identifiers: sorting ids sorts by creation time, which keyset pages rely on."""
from __future__ import annotations

import os
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


def new_id(prefix: str) -> str:
    """Return a new id such as ``run_01jc...``: 48 bits of milliseconds, 80 random bits."""
    millis = int(time.time() * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
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
