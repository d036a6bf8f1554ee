"""Keep secrets out of spans, logs and events: sensitive values and keys are masked."""
from __future__ import annotations

import functools
import re
import threading
from typing import Any

MASK = "••••"  # the same mask as stored secrets
# Values shorter than this are not masked: hiding every "a" or "1" would destroy the text around it.
MIN_SENSITIVE_LENGTH = 4
SENSITIVE_KEY = re.compile(
    r"passw(or)?d|passphrase|secret|token|api[-_]?key|authorization|cookie|credential|private[-_]?key",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)
def key_is_sensitive(key: str) -> bool:
    """Tell whether a key names a secret (its value is hidden); the same few keys come back on every span."""
    return SENSITIVE_KEY.search(key) is not None


class Redactor:
    """Masks the sensitive values of one run, and the values of keys that name a secret."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        self._lock = threading.Lock()

    def add(self, value: Any) -> None:
        """Mark a value as sensitive: it is masked wherever it appears from now on."""
        text = str(value)
        if len(text) < MIN_SENSITIVE_LENGTH:
            return
        with self._lock:
            self._values = self._values | {text}

    def text(self, value: str) -> str:
        """Return ``value`` with every sensitive value in it masked."""
        # Longest first, so a secret containing another secret is masked whole.
        for secret in sorted(self._values, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def value(self, value: Any, key: str | None = None) -> Any:
        """Return a JSON-like value with sensitive values masked, and values of secret-named keys hidden."""
        if key is not None and key_is_sensitive(key) and value not in (None, ""):
            return MASK
        if isinstance(value, str):
            return self.text(value) if self._values else value
        if isinstance(value, dict):
            return {k: self.value(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


_by_run: dict[str, Redactor] = {}
_by_run_lock = threading.Lock()
_keys_only = Redactor()


def redactor_for(run_id: str | None) -> Redactor:
    """Return the redactor of a run in this process (one that masks secret-named keys if it has none)."""
    if run_id is None:
        return _keys_only
    return _by_run.get(run_id, _keys_only)


def sensitive_redactor(run_id: str) -> Redactor | None:
    """Return the redactor of a run that has sensitive values in this process, or None."""
    return _by_run.get(run_id)


def redact_for_run(run_id: str, data: Any) -> Any:
    """Return ``data`` with the run's sensitive values masked; unchanged if the run has none here."""
    redactor = _by_run.get(run_id)
    return data if redactor is None else redactor.value(data)


def sensitive_add(run_id: str, *values: Any) -> None:
    """Mark values as sensitive for a run in this process (the secrets store feeds decrypted secrets here)."""
    with _by_run_lock:
        redactor = _by_run.setdefault(run_id, Redactor())
    for value in values:
        redactor.add(value)


def sensitive_forget(run_id: str) -> None:
    """Drop a run's sensitive values once its attempt has ended and its spans are stored."""
    with _by_run_lock:
        _by_run.pop(run_id, None)
