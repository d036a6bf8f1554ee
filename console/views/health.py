"""Health probes: /health/live and /health/ready, answered before host checks and the HTTPS redirect.

Load balancers and orchestrators probe a process by its address over plain HTTP, with a Host
header that is rarely in ALLOWED_HOSTS; the answers hold no data, so they come first.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse

from stepwise.runs.health import READY_REQUIRES, web_checks

LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"


def health_live() -> JsonResponse:
    """Answer that this process serves requests."""
    return JsonResponse({"status": "ok"})


def health_ready() -> JsonResponse:
    """Answer 200 when the database, the broker and the channel layer work, else 503; list every check."""
    checks = web_checks()
    ready = all(check.ok for check in checks if check.name in READY_REQUIRES)
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {check.name: {"ok": check.ok, "detail": check.detail,
                                "required": check.name in READY_REQUIRES} for check in checks},
    }
    return JsonResponse(body, status=200 if ready else 503)


def _probe(request: HttpRequest) -> Callable[[], JsonResponse] | None:
    """Return the probe a request asks for, or None when it is not a probe."""
    if request.method not in ("GET", "HEAD"):
        return None
    return {LIVE_PATH: health_live, READY_PATH: health_ready}.get(request.path_info.rstrip("/"))


class HealthProbeMiddleware:
    """Answer the health probes; every other request goes on down the stack."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):
        if self.is_async:
            return self.__acall__(request)
        probe = _probe(request)
        return probe() if probe is not None else self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        probe = _probe(request)
        if probe is None:
            return await self.get_response(request)
        # A thread of its own: a check waiting on a dead Redis must not hold the thread sync views share.
        return await asyncio.to_thread(probe)
