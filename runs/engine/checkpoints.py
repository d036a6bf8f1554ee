"""What may cross a checkpoint: JSON values, within the size limit."""
from __future__ import annotations

import json
import re
import sys
from typing import Any

from stepwise.runs.engine.errors import CheckpointSerializationError, InvalidJson, PayloadTooLarge

# How deeply JSON values may nest: far past any real payload, well short of Python's recursion limit.
MAX_DEPTH = 200
# "\u0000" in JSON text that is not itself an escaped backslash: PostgreSQL cannot store NUL in text or jsonb.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


_TOO_DEEP = "too deep"


def _offending_type(value: Any, depth: int = 0) -> str:
    if depth > MAX_DEPTH:
        return _TOO_DEEP
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{type(key).__name__} (as a dict key)"
            found = _offending_type(item, depth + 1)
            if found:
                return found
        return ""
    if isinstance(value, list | tuple):
        for item in value:
            found = _offending_type(item, depth + 1)
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
    if offending == _TOO_DEEP:
        raise CheckpointSerializationError(f"{where} is nested deeper than {MAX_DEPTH} levels")
    if offending:
        raise CheckpointSerializationError(
            f"{where} is not JSON-serialisable: it contains a value of type '{offending}'"
        )
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:  # an integer over Python's digit limit
        raise CheckpointSerializationError(
            f"{where} holds a number too large (over {sys.get_int_max_str_digits()} digits)"
        ) from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise CheckpointSerializationError(f"{where} contains a NUL character (\\u0000), which cannot be stored")
    if max_bytes is not None and len(text.encode()) > max_bytes:
        raise PayloadTooLarge(f"{where} is {len(text.encode())} bytes, over the limit of {max_bytes} bytes")
    return json.loads(text)


def _refuse_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise InvalidJson(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is too large")
    return value


def json_parse(text: str | bytes, *, what: str = "the JSON") -> Any:
    """Parse JSON text that a run can store, or raise InvalidJson naming ``what`` and the problem.

    Refused: NaN and Infinity, numbers out of range, NUL characters, lone surrogates and nesting over MAX_DEPTH.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidJson(f"{what} is not UTF-8 text") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except InvalidJson as exc:
        raise InvalidJson(f"{what} is not valid: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidJson(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise InvalidJson(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # an integer over Python's digit limit
        raise InvalidJson(f"{what} holds a number too large (over {sys.get_int_max_str_digits()} digits)") from None
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise InvalidJson(f"{what} contains a NUL character (\\u0000), which cannot be stored")
    if _depth_over(value, MAX_DEPTH):
        raise InvalidJson(f"{what} is nested deeper than {MAX_DEPTH} levels")
    if "\\ud" in text.lower():
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidJson(f"{what} holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text") from None
    return value


def _depth_over(value: Any, limit: int) -> bool:
    if limit < 0:
        return True
    if isinstance(value, dict):
        return any(_depth_over(item, limit - 1) for item in value.values())
    if isinstance(value, list):
        return any(_depth_over(item, limit - 1) for item in value)
    return False
