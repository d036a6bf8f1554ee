"""Local stand-ins for the external services the examples call, with randomised faults."""
from __future__ import annotations

import hashlib
import os
import random
import time


class ServiceUnavailable(Exception):
    """A stand-in service failed the way real ones do now and then; worth a retry."""


def flaky(service: str) -> None:
    """Fail with the configured probability (STEPWISE_EXAMPLE_FAULT_RATE, default 0.3)."""
    rate = float(os.environ.get("STEPWISE_EXAMPLE_FAULT_RATE", "0.3"))
    if random.random() < rate:
        raise ServiceUnavailable(f"{service} answered 503 Service Unavailable")


def pause(seconds: float) -> None:
    """Sleep like a network call would (scaled by STEPWISE_EXAMPLE_SPEED, default 1)."""
    time.sleep(seconds * float(os.environ.get("STEPWISE_EXAMPLE_SPEED", "1")))


def fingerprint(*parts: object) -> str:
    """Return a short stable id made from the parts."""
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:12]
