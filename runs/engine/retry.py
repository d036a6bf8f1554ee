"""Retry policies: how many attempts, and how long to wait between them."""
from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from stepwise.runs.engine.durations import MAX_SECONDS
from stepwise.runs.engine.errors import is_permanent

MAX_ATTEMPTS = 1000
MAX_FACTOR = 100


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff between attempts.

    The delay before attempt n+1 is ``min_timeout * factor ** (n - 1)``, capped at
    ``max_timeout`` seconds; with ``jitter`` it is drawn uniformly from its upper half,
    so that runs failing together do not retry together.

    Example::

        @task(id="sync-crm", retry=Retry(max_attempts=5, factor=2, min_timeout=1, max_timeout=30))
        def sync_crm(payload, ctx): ...
    """

    max_attempts: int = 3
    factor: float = 2.0
    min_timeout: float = 1.0
    max_timeout: float = 60.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS:
            raise ValueError(f"max_attempts must be from 1 to {MAX_ATTEMPTS}")
        if not 1 <= self.factor <= MAX_FACTOR:  # also refuses NaN
            raise ValueError(f"factor must be from 1 to {MAX_FACTOR}")
        if not 0 <= self.min_timeout <= self.max_timeout <= MAX_SECONDS:
            raise ValueError(f"need 0 <= min_timeout <= max_timeout <= {MAX_SECONDS} (100 years)")

    def delay_after(self, attempt: int, rng: random.Random | None = None) -> float | None:
        """Return seconds to wait after failed attempt ``attempt``, or None when none is left."""
        if attempt >= self.max_attempts:
            return None
        try:
            delay = min(self.max_timeout, self.min_timeout * self.factor ** (attempt - 1))
        except OverflowError:  # factor ** attempts past the float range: the cap holds
            delay = self.max_timeout
        if self.jitter:
            delay = (rng or random).uniform(delay / 2, delay)
        return delay

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RetryPolicy:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


# Called before each retry with the number of failures so far, the delay and the error; it may raise to stop.
BeforeRetry = Callable[[int, float, BaseException], None]


def _next_try_in(policy: RetryPolicy, failures: int, exc: Exception, before_retry: BeforeRetry) -> float:
    """Return the delay before the next try; re-raise ``exc`` when the error is permanent or tries ran out."""
    delay = None if is_permanent(exc) else policy.delay_after(failures)
    if delay is None:
        raise exc
    before_retry(failures, delay, exc)
    return delay


def call_retrying(fn: Callable[..., Any], args: tuple, kwargs: dict, policy: RetryPolicy,
                  before_retry: BeforeRetry) -> Any:
    """Call ``fn`` until it returns, retrying retryable errors as ``policy`` says; raise the last error."""
    failures = 0
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            failures += 1
            time.sleep(_next_try_in(policy, failures, exc, before_retry))


async def acall_retrying(fn: Callable[..., Any], args: tuple, kwargs: dict, policy: RetryPolicy,
                         before_retry: BeforeRetry) -> Any:
    """Async twin of ``call_retrying``."""
    failures = 0
    while True:
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            failures += 1
            await asyncio.sleep(_next_try_in(policy, failures, exc, before_retry))
