"""What may cross a checkpoint: JSON values, within the size limit."""
from __future__ import annotations

import json
from typing import Any

from runs.engine.errors import CheckpointSerializationError, PayloadTooLarge


def _offending_type(value: Any) -> str:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{type(key).__name__} (as a dict key)"
            found = _offending_type(item)
            if found:
                return found
        return ""
    if isinstance(value, list | tuple):
        for item in value:
            found = _offending_type(item)
            if found:
                return found
        return ""
    if value is None or isinstance(value, str | int | bool):
        return ""
    if isinstance(value, float):
        return "" if value == value and value not in (float("inf"), float("-inf")) else "float (NaN or infinity)"
    return type(value).__qualname__


def checkpoint_encode(value: Any, *, where: str, max_bytes: int | None = None) -> Any:
    """Return ``value`` as it will be replayed (a JSON round trip), or raise naming ``where``.

    Returning the round-tripped value makes the first execution see exactly what a
    replay will see (tuples become lists, for example).
    """
    offending = _offending_type(value)
    if offending:
        raise CheckpointSerializationError(
            f"{where} is not JSON-serialisable: it contains a value of type '{offending}'"
        )
    text = json.dumps(value, allow_nan=False)
    if max_bytes is not None and len(text.encode()) > max_bytes:
        raise PayloadTooLarge(f"{where} is {len(text.encode())} bytes, over the limit of {max_bytes} bytes")
    return json.loads(text)
