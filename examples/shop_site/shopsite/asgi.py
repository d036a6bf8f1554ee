"""HTTP through Django; Stepwise's live run pages through Channels websockets."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shopsite.settings")

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from stepwise.runs.routing import websocket_urlpatterns_under  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    # Under the prefix urls.py includes the console at: its live pages connect to /stepwise/ws/runs/...
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns_under("stepwise/")))),
})
