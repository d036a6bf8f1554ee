"""Settings of a small shop that runs its background work on Stepwise."""
import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
DEBUG = os.environ.get("DEBUG", "1") == "1"
SECRET_KEY = os.environ.get("SECRET_KEY", "shop-example-only-not-a-secret")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Stepwise and what it is built on:
    "channels",
    "ninja",
    "stepwise.tasks",
    "stepwise.runs",
    "stepwise.console",
    "stepwise",
    # The shop's own apps; "tasks" and "runs" are names Stepwise must leave to the project:
    "shop",
    "tasks",
    "runs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "shopsite.urls"
ASGI_APPLICATION = "shopsite.asgi.application"

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE_DIR / "templates"],  # the shop's own base.html and registration/login.html
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

DATABASES = {"default": dj_database_url.config(default="postgres://postgres@127.0.0.1:5432/shop")}
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
WHITENOISE_USE_FINDERS = True  # serve the apps' static files (Stepwise's console too) without collectstatic

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("SHOP_CELERY_QUEUE", "shop")
CELERY_TASK_IGNORE_RESULT = True
CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [REDIS_URL]}}}

# Stepwise: the key that encrypts secrets at rest (required), and where the console's sign-in is.
STEPWISE_SECRET_KEYS = [os.environ.get("STEPWISE_SECRET_KEYS", "c2hvcC1leGFtcGxlLW9ubHkta2V5LW5vdC1zZWNyZXQ=")]
LOGIN_URL = "login"
# Django's own @task functions (shop/tasks.py) become durable Stepwise runs.
TASKS = {"default": {"BACKEND": "stepwise.tasks.django_backend.StepwiseBackend"}}
