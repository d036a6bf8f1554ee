"""ASGI entry point: HTTP through Django, websockets through Channels."""
from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stepwise.console.settings")

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

import stepwise.console.celery  # noqa: E402, F401  (the project's Celery app: triggers send their hints through it)

django_asgi_app = get_asgi_application()

from stepwise.console.websocket_origins import SameOriginValidator  # noqa: E402
from stepwise.runs.routing import websocket_urlpatterns as runs_websocket_urlpatterns  # noqa: E402

websocket_urlpatterns: list = [*runs_websocket_urlpatterns]

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
