"""Settings of the test suite: the project's own, with what the tests need when the environment gives none.

The test processes and the workers and servers they start (which inherit this environment) run as
in development: DEBUG on (plain HTTP, static files from the source tree; pytest-django still runs
each test with DEBUG off) and fixed keys that protect nothing. Tests of the production settings
start processes with DJANGO_SETTINGS_MODULE=stepwise.console.settings and their own environment.
"""
from __future__ import annotations

import os

os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("SECRET_KEY", "tests-only-not-a-secret-" + "0" * 40)
# The alert tests' receivers listen on loopback; tests of the refusal turn this off.
os.environ.setdefault("STEPWISE_ALERT_PRIVATE_WEBHOOKS", "1")
os.environ.setdefault("STEPWISE_SECRET_KEYS", "dGVzdC1vbmx5LWtleS1mb3Itc3RlcHdpc2UtdGVzdHM=")

from stepwise.console.settings import *  # noqa: E402, F403

# Failed-attempt counts per test process, so a test cannot lock out the next one through Redis.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# The Django tasks of the backend's tests live in an app of their own, as a user's would.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.project"]  # noqa: F405
TASKS = {
    "default": {"BACKEND": "stepwise.tasks.django_backend.StepwiseBackend", "QUEUES": ["default", "emails"]},
    "retrying": {
        "BACKEND": "stepwise.tasks.django_backend.StepwiseBackend",
        "OPTIONS": {"retry": {"max_attempts": 2, "min_timeout": 0.1, "max_timeout": 0.1, "jitter": False}},
    },
}
