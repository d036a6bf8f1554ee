"""Throttle guessing: too many failed sign-ins or API keys from one client are refused for a while.

Policy (README, Security): at most STEPWISE_FAILED_ATTEMPTS_LIMIT failures in a window of
STEPWISE_FAILED_ATTEMPTS_WINDOW_SECONDS, counted per client IP and username for sign-ins and per
client IP for API keys; past it every attempt is answered 429 with Retry-After until the window
ends, the right password or key included (else the answer would tell a guess was right). The
window starts at the first failure; a successful sign-in clears that username's count. Counts
live in Django's cache (Redis when REDIS_URL is set, so every server process shares them).
"""
from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

SIGN_IN = "sign-in"
API_KEY = "api-key"


class TooManyFailedAttempts(Exception):
    """A client failed too often; it may try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(f"too many failed attempts from this client: try again in {retry_after} s")


def client_address(request: HttpRequest) -> str:
    """Return the client's IP (REMOTE_ADDR: behind a proxy, let the ASGI server set it from the proxy's header)."""
    return request.META.get("REMOTE_ADDR") or "unknown"


def _keys(kind: str, who: str) -> tuple[str, str]:
    digest = hashlib.sha256(f"{kind}\0{who}".encode()).hexdigest()[:32]
    return f"stepwise:failures:{digest}", f"stepwise:failures-since:{digest}"


def failed_attempts_check(kind: str, who: str) -> None:
    """Raise TooManyFailedAttempts if ``who`` has used up its failures in this window."""
    count_key, since_key = _keys(kind, who)
    counts = cache.get_many([count_key, since_key])
    if counts.get(count_key, 0) >= settings.STEPWISE_FAILED_ATTEMPTS_LIMIT:
        since = counts.get(since_key, time.time())
        window = settings.STEPWISE_FAILED_ATTEMPTS_WINDOW_SECONDS
        raise TooManyFailedAttempts(max(1, int(since + window - time.time()) + 1))


def failed_attempt_record(kind: str, who: str) -> None:
    """Count one failure of ``who``; the first one of a window starts it."""
    count_key, since_key = _keys(kind, who)
    window = settings.STEPWISE_FAILED_ATTEMPTS_WINDOW_SECONDS
    cache.add(since_key, time.time(), timeout=window)
    if cache.add(count_key, 1, timeout=window):
        return
    try:
        cache.incr(count_key)
    except ValueError:  # the window ended between add and incr
        cache.set(count_key, 1, timeout=window)


def failed_attempts_clear(kind: str, who: str) -> None:
    """Forget the failures of ``who`` (after a successful sign-in)."""
    cache.delete_many(list(_keys(kind, who)))
