"""The web console (an app), and this repository's own Django project: settings, URLs, ASGI and Celery app."""
