"""Accept a websocket only from a page of this site: same scheme, host and port, or a trusted origin."""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """Return (scheme, host, port) with the scheme's default port filled in; None if malformed."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path or port is None:
        return None
    return scheme, parts.hostname.lower(), port


def websocket_origin_allowed(scope: dict[str, Any]) -> bool:
    """Tell whether a websocket's Origin is its own site (scheme, host and port) or in CSRF_TRUSTED_ORIGINS.

    Channels' AllowedHostsOriginValidator compares the host alone, so a page served on another port of
    the same host (any other program there) could open the console's sockets with the user's cookies.
    """
    headers = dict(scope.get("headers") or [])
    origin_header = headers.get(b"origin", b"").decode("latin-1")
    host = headers.get(b"host", b"").decode("latin-1")
    domain, _ = split_domain_port(host)
    if not origin_header or not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return False
    scheme, _, netloc = origin_header.partition("://")
    origin = _origin(scheme.lower(), netloc)
    if origin is None:
        return False
    own = _origin("https" if scope.get("scheme") in ("wss", "https") else "http", host)
    trusted = {_origin(*o.lower().split("://", 1)) for o in settings.CSRF_TRUSTED_ORIGINS if "://" in o}
    return origin == own or origin in trusted


class SameOriginValidator:
    """ASGI middleware closing websockets whose Origin is not this site (see websocket_origin_allowed)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        # A bearer credential (API key, public token) is sent on purpose, never by a browser on its own:
        # such a socket is authenticated by it alone (the consumer ignores cookies then), from any origin.
        bearer = b"authorization" in dict(scope.get("headers") or [])
        if scope["type"] == "websocket" and not bearer and not websocket_origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)
