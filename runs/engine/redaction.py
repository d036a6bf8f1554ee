"""Keep secrets and personal data out of spans, logs and events: sensitive values and keys are masked.

Besides the secrets it is fed, a run's redactor applies the run's PII hook (the project's
STEPWISE_REDACT and the task's ``redact=``, README: PII redaction) to every value and text it
masks, before they are stored.
"""
from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable
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
        self.pii: Callable[[Any], Any] | None = None

    def add(self, value: Any) -> None:
        """Mark a value as sensitive: it is masked wherever it appears from now on."""
        text = str(value)
        if len(text) < MIN_SENSITIVE_LENGTH:
            return
        with self._lock:
            self._values = self._values | {text}

    def text(self, value: str) -> str:
        """Return ``value`` with every sensitive value in it masked."""
        if self.pii is not None:
            value = pii_apply(self.pii, value)
            value = value if isinstance(value, str) else str(value)
        # Longest first, so a secret containing another secret is masked whole.
        return self._secrets_masked(value)

    def value(self, value: Any, key: str | None = None) -> Any:
        """Return a JSON-like value with sensitive values masked, and values of secret-named keys hidden."""
        if self.pii is not None and key is None:
            value = pii_apply(self.pii, value)
        return self._masked(value, key)

    def _masked(self, value: Any, key: str | None = None) -> Any:
        if key is not None and key_is_sensitive(key) and value not in (None, ""):
            return MASK
        if isinstance(value, str):
            return self._secrets_masked(value) if self._values else value
        if isinstance(value, dict):
            return {k: self._masked(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._masked(v) for v in value]
        return value

    def _secrets_masked(self, value: str) -> str:
        for secret in sorted(self._values, key=len, reverse=True):
            if secret in value:
                value = value.replace(secret, MASK)
        return value


def pii_apply(hook: Callable[[Any], Any], value: Any) -> Any:
    """Return ``hook(value)``; a hook that fails hides the whole value rather than let it through."""
    try:
        return hook(value)
    except Exception:  # a user's hook: whatever it raises, nothing unredacted is stored or shown
        return MASK


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


def pii_hook_set(run_id: str, hook: Callable[[Any], Any] | None) -> None:
    """Apply a PII hook to what this process stores of a run (its logs, spans and events) until it is forgotten."""
    if hook is None:
        return
    with _by_run_lock:
        _by_run.setdefault(run_id, Redactor()).pii = hook


def sensitive_forget(run_id: str) -> None:
    """Drop a run's sensitive values once its attempt has ended and its spans are stored."""
    with _by_run_lock:
        _by_run.pop(run_id, None)


REDACTED = "[redacted]"


def redact_keys(*keys: str, patterns: tuple[str, ...] | list[str] = ()) -> Callable[[Any], Any]:
    """Return a PII hook that hides the values of ``keys`` (any case, at any depth) and text matching ``patterns``.

    Example::

        @task(id="signup", redact=redact_keys("email", "phone", patterns=[r"\\d{4}-\\d{4}-\\d{4}-\\d{4}"]))
        def signup(payload, ctx):
            ...
    """
    hidden = {k.lower() for k in keys}
    compiled = [re.compile(p) for p in patterns]

    def redact(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: REDACTED if str(k).lower() in hidden and value[k] not in (None, "") else redact(v)
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [redact(v) for v in value]
        if isinstance(value, str):
            for pattern in compiled:
                value = pattern.sub(REDACTED, value)
        return value

    return redact


def pii_hooks_joined(*hooks: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """Return one hook applying each given hook in turn (the project's first), or None without any."""
    present = [h for h in hooks if h is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def joined(value: Any) -> Any:
        for hook in present:
            value = hook(value)
        return value

    return joined
