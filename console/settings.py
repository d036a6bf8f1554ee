"""Settings for Stepwise, read from the environment with an embedded SQLite default."""
from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    """Read a boolean from the environment ("1", "true", "yes" are true)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    """Read a comma-separated list from the environment."""
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


# Off unless DEBUG=1 is set: a forgotten setting must never show tracebacks to the world.
DEBUG = env_bool("DEBUG", False)
# The embedded default: no DATABASE_URL, so one machine with SQLite (`./bin/start`, `manage.py up`).
EMBEDDED = not os.environ.get("DATABASE_URL")
SQLITE_PATH = Path(os.environ.get("STEPWISE_SQLITE_PATH", BASE_DIR / "stepwise.sqlite3"))
# Where the embedded default keeps the keys it generates on first start (beside its database).
STEPWISE_DATA_DIR = Path(os.environ.get("STEPWISE_DATA_DIR", SQLITE_PATH.parent))


def generated_key(name: str, make: Callable[[], str]) -> str:
    """Return the key stored in the data directory under ``name``, creating it once (readable by us alone)."""
    path = STEPWISE_DATA_DIR / name
    if not path.exists():
        STEPWISE_DATA_DIR.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f"{name}.{os.getpid()}.tmp")
        staging.write_text(make() + "\n")
        staging.chmod(0o600)
        try:
            os.link(staging, path)  # atomic: of two processes starting together, one key wins
        except FileExistsError:
            pass
        finally:
            staging.unlink()
    return path.read_text().strip()


def required_key(name: str, generated_as: str, make: Callable[[], str], example: str) -> str:
    """Return a key from the environment; generate and keep one only in the embedded default or with DEBUG=1."""
    value = os.environ.get(name, "").strip()
    if value:
        return value
    if EMBEDDED or DEBUG:
        return generated_key(generated_as, make)
    raise ImproperlyConfigured(
        f"{name} must be set: DATABASE_URL is set and DEBUG is off, so no key is generated. "
        f"Set it to a long random value kept secret, e.g. the output of: {example}"
    )


SECRET_KEY = required_key(
    "SECRET_KEY", ".stepwise-secret-key", lambda: secrets.token_urlsafe(50),
    """python -c 'import secrets; print(secrets.token_urlsafe(50))'""",
)
# Fernet keys for secrets at rest, comma-separated; the first encrypts, all decrypt (rotation). Its own
# setting, never derived from SECRET_KEY: rotating one must not make the other unreadable.
STEPWISE_SECRET_KEYS = [
    key.strip() for key in required_key(
        "STEPWISE_SECRET_KEYS", ".stepwise-secrets-key", lambda: Fernet.generate_key().decode(),
        """python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'""",
    ).split(",") if key.strip()
]
for _key in STEPWISE_SECRET_KEYS:
    try:
        Fernet(_key.encode())
    except ValueError:
        raise ImproperlyConfigured(
            "STEPWISE_SECRET_KEYS must hold Fernet keys (32 url-safe base64-encoded bytes), comma-separated"
        ) from None

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    # Serves /api/docs from its own static files, never from a CDN.
    "ninja",
    "stepwise.tasks",
    "stepwise.runs",
    "stepwise.console",
]

MIDDLEWARE = [
    "stepwise.console.views.health.HealthProbeMiddleware",  # first: probes come by address, over plain HTTP
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "stepwise.console.content_security.ContentSecurityPolicyMiddleware",
    "stepwise.console.bad_input.BadInputMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "stepwise.console.root_urls"
ASGI_APPLICATION = "stepwise.console.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: PostgreSQL when DATABASE_URL is set, else an embedded SQLite file in WAL mode.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{SQLITE_PATH}",
        conn_max_age=int(os.environ.get("CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes the write lock at BEGIN, so compare-and-set transitions serialise.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "stepwise-test.sqlite3")}
USES_POSTGRES = DATABASES["default"]["ENGINE"].endswith("postgresql")
if USES_POSTGRES:
    # Name connections after their process, so pg_stat_activity shows who holds what.
    _program = " ".join(os.path.basename(arg) for arg in sys.argv[:3])[:40]
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = f"stepwise {os.getpid()} {_program}"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if not DEBUG
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}

LOGIN_URL = "login"  # a URL name: the sign-in page wherever the console is mounted

# Production hardening; `manage.py check --deploy` is clean with DEBUG=0.
# The embedded default serves http://127.0.0.1 on one machine: HTTPS only once a DATABASE_URL is set.
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not EMBEDDED)
    SECURE_REDIRECT_EXEMPT = [r"^metrics$"]  # Prometheus scrapes inside the network, over HTTP
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = not EMBEDDED
    CSRF_COOKIE_SECURE = not EMBEDDED
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    X_FRAME_OPTIONS = "DENY"

# Broker and channel layer: Redis when REDIS_URL is set, else in-process memory.
REDIS_URL = os.environ.get("REDIS_URL", "")
# This project's Celery app. Named here because console/__init__.py cannot import it, as a project's
# package would: console is also an app other projects install, and they have apps of their own.
STEPWISE_CELERY_APP = "stepwise.console.celery:app"
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
if not REDIS_URL:  # the in-process broker, answering Ctrl-C within a quarter second (runs/embedded_broker.py)
    CELERY_BROKER_TRANSPORT = "stepwise.runs.embedded_broker:Transport"
CELERY_TASK_IGNORE_RESULT = True
# Messages are hints ("run this now"): the run lives in the database, a worker that dies
# mid-run loses its lease and the scheduler re-queues the run. So a hint is acked when a worker
# takes it (no second broker round trip per run, and the next hint is fetched while this one
# runs), and each process reserves one hint at a time, so a resume is never stuck behind
# new work another process has reserved. Several runs per delivery come from group hints instead
# (STEPWISE_HINT_GROUP): a group goes whole to one process, which hands back what it cannot start
# soon, where a larger prefetch would hold hints in a process whose slot is busy.
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("STEPWISE_CELERY_QUEUE", "stepwise")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Ten message priorities (one Redis list each; 0 and 9 keep the list names of Redis's default
# four, so hints sent before an upgrade are still read): resumes first, then runs by priority bands.
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"visibility_timeout": 3600, "priority_steps": list(range(10))}
    if REDIS_URL
    # The in-memory broker is polled: every 50 ms instead of every second, so a run starts at once.
    else {"polling_interval": 0.05}
)

CHANNEL_PREFIX = os.environ.get("STEPWISE_CHANNEL_PREFIX", "stepwise")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "prefix": CHANNEL_PREFIX},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Django's Tasks framework: @task functions enqueued with .enqueue() become Stepwise runs (README).
TASKS = {"default": {"BACKEND": "stepwise.tasks.django_backend.StepwiseBackend"}}

# Stepwise engine settings.
STEPWISE_TASK_MODULES = env_list(
    "STEPWISE_TASK_MODULES",
    ["examples.orders", "examples.videos", "examples.batch", "examples.approvals", "examples.realtime"],
)
STEPWISE_DEPLOY_LABEL = os.environ.get("STEPWISE_DEPLOY_LABEL", "")
STEPWISE_LEASE_SECONDS = float(os.environ.get("STEPWISE_LEASE_SECONDS", "30"))
STEPWISE_HEARTBEAT_SECONDS = float(
    os.environ.get("STEPWISE_HEARTBEAT_SECONDS", str(STEPWISE_LEASE_SECONDS / 3))
)
# The address outside services reach the API at: token callback URLs start with it.
STEPWISE_PUBLIC_URL = os.environ.get("STEPWISE_PUBLIC_URL", "http://localhost:8000")
# A comment line on idle server-sent event streams, so proxies keep them open.
STEPWISE_SSE_HEARTBEAT_SECONDS = float(os.environ.get("STEPWISE_SSE_HEARTBEAT_SECONDS", "15"))
STEPWISE_MAX_CRASHES = int(os.environ.get("STEPWISE_MAX_CRASHES", "5"))
STEPWISE_MAX_PAYLOAD_BYTES = int(os.environ.get("STEPWISE_MAX_PAYLOAD_BYTES", str(512 * 1024)))
# A run's metadata (``ctx.metadata``): its size limit, and how soon a change made during a long
# step is stored and streamed (changes also ride with the attempt's next write).
STEPWISE_MAX_METADATA_BYTES = int(os.environ.get("STEPWISE_MAX_METADATA_BYTES", str(64 * 1024)))
STEPWISE_METADATA_FLUSH_SECONDS = float(os.environ.get("STEPWISE_METADATA_FLUSH_SECONDS", "1"))
# How long finished runs and their details (spans, log events) are kept, per environment ("*": the
# others); unset keeps everything. The scheduler prunes every STEPWISE_PRUNE_INTERVAL_SECONDS.
# Example: {"*": {"runs_days": 30, "details_days": 7}, "prod": {"runs_days": 90, "details_days": 14}}
STEPWISE_RETENTION = json.loads(os.environ["STEPWISE_RETENTION"]) if os.environ.get("STEPWISE_RETENTION") else {}
STEPWISE_PRUNE_INTERVAL_SECONDS = float(os.environ.get("STEPWISE_PRUNE_INTERVAL_SECONDS", "600"))
STEPWISE_IDEMPOTENCY_TTL_SECONDS = int(
    os.environ.get("STEPWISE_IDEMPOTENCY_TTL_SECONDS", str(24 * 3600))
)
# With the in-process memory broker, a trigger from another process (the CLI) reaches the
# worker only through the sweeper's re-dispatch, so it runs often there.
STEPWISE_REDISPATCH_SECONDS = float(
    os.environ.get("STEPWISE_REDISPATCH_SECONDS", "15" if REDIS_URL else "2")
)
# Hints that queue up together (a burst of triggers, a batch_trigger) travel up to this many runs to a
# broker message, which one worker process takes in turn, handing the rest back to the broker when the
# group overstays (stepwise.runs.worker). 1 sends a message per run: the setting for a rolling upgrade
# from a version whose workers know no group hints (its workers would drop them; the scheduler would
# re-send them after STEPWISE_REDISPATCH_SECONDS).
STEPWISE_HINT_GROUP = int(os.environ.get("STEPWISE_HINT_GROUP", "32"))
if STEPWISE_HINT_GROUP < 1:
    raise ImproperlyConfigured(f"STEPWISE_HINT_GROUP must be 1 or more, not {STEPWISE_HINT_GROUP}")
# Spans of runs are stored in the database; OTEL_EXPORTER_OTLP_ENDPOINT also exports them over OTLP.
STEPWISE_TRACING = env_bool("STEPWISE_TRACING", True)
# strict: every engine write is flushed to disk before the worker goes on. relaxed: a worker's
# claims, steps, logs and outcomes commit with synchronous_commit=off (see README, Durability).
STEPWISE_DURABILITY = os.environ.get("STEPWISE_DURABILITY", "strict")
if STEPWISE_DURABILITY not in ("strict", "relaxed"):
    raise ImproperlyConfigured(f"STEPWISE_DURABILITY must be 'strict' or 'relaxed', not {STEPWISE_DURABILITY!r}")
# DATABASE_POOLING=transaction: DATABASE_URL reaches PostgreSQL through PgBouncer in transaction-pooling
# mode, where a session outlives no transaction: no server-side cursors, no prepared statements, and the
# scheduler does not LISTEN through the pooler (README, Scaling).
DATABASE_POOLING = os.environ.get("DATABASE_POOLING", "session")
if DATABASE_POOLING not in ("session", "transaction"):
    raise ImproperlyConfigured(f"DATABASE_POOLING must be 'session' or 'transaction', not {DATABASE_POOLING!r}")
if DATABASE_POOLING == "transaction":
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = True
# Prepare the engine's hot statements (off behind a pooler that cannot keep prepared statements).
STEPWISE_PREPARED_STATEMENTS = env_bool("STEPWISE_PREPARED_STATEMENTS", DATABASE_POOLING != "transaction")
# The scheduler LISTENs for timers set while it sleeps; without it, its sweep interval bounds their delay.
STEPWISE_TIMERS_LISTEN = env_bool("STEPWISE_TIMERS_LISTEN", DATABASE_POOLING != "transaction")
# Where a run executes once workers hold different code (see README, Deploying new code):
# "latest" on any worker with its own code, "pin" only on a worker holding the version it was
# triggered on. A task's own @task(version_policy=...) wins over this default.
STEPWISE_VERSION_POLICY = os.environ.get("STEPWISE_VERSION_POLICY", "latest")
if STEPWISE_VERSION_POLICY not in ("pin", "latest"):
    raise ImproperlyConfigured(f"STEPWISE_VERSION_POLICY must be 'pin' or 'latest', not {STEPWISE_VERSION_POLICY!r}")
# A pinned run that no running worker can take fails after waiting this long for one.
STEPWISE_VERSION_GRACE_SECONDS = float(os.environ.get("STEPWISE_VERSION_GRACE_SECONDS", "600"))
STEPWISE_SWEEP_INTERVAL_SECONDS = float(os.environ.get("STEPWISE_SWEEP_INTERVAL_SECONDS", "1"))
# Health: a scheduler whose last pass is older than this is reported down (/health/ready, manage.py health).
STEPWISE_SCHEDULER_STALE_SECONDS = float(os.environ.get("STEPWISE_SCHEDULER_STALE_SECONDS", "60"))
# /metrics answers a request carrying "Authorization: Bearer <this token>", or a signed-in staff user.
STEPWISE_METRICS_TOKEN = os.environ.get("STEPWISE_METRICS_TOKEN", "")
# Fault injection for `manage.py chaos`: this share of the engine store's database calls fail at
# random in this process. Never in production: a process with it set and DEBUG off refuses to start.
STEPWISE_STORE_FAULT_RATE = float(os.environ.get("STEPWISE_STORE_FAULT_RATE") or 0)
if STEPWISE_STORE_FAULT_RATE and not DEBUG:
    raise ImproperlyConfigured(
        "STEPWISE_STORE_FAULT_RATE makes database calls fail on purpose, for fault-injection tests only; "
        "it is refused unless DEBUG=1. Unset it."
    )
if not 0 <= STEPWISE_STORE_FAULT_RATE < 1:
    raise ImproperlyConfigured(f"STEPWISE_STORE_FAULT_RATE must be from 0 to below 1, not {STEPWISE_STORE_FAULT_RATE}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # One line per HTTP request of the client (manage.py trigger --server ...) is noise on a terminal.
        "httpx": {"level": "WARNING"},
        # Django's own console handler would print each request warning a second time beside root's.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
    },
}
# The environment whose schedules this deployment declares in code (@task(cron=...)).
STEPWISE_ENVIRONMENT = os.environ.get("STEPWISE_ENVIRONMENT", "dev")
STEPWISE_WEBHOOK_TOLERANCE_SECONDS = int(os.environ.get("STEPWISE_WEBHOOK_TOLERANCE_SECONDS", "300"))

# Security (README, Security). The console's own scripts and styles only: no inline script or style.
STEPWISE_CONTENT_SECURITY_POLICY = os.environ.get(
    "STEPWISE_CONTENT_SECURITY_POLICY",
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)
# Failed sign-ins (per client IP and username) and failed API keys (per client IP) allowed per window.
STEPWISE_FAILED_ATTEMPTS_LIMIT = int(os.environ.get("STEPWISE_FAILED_ATTEMPTS_LIMIT", "10"))
STEPWISE_FAILED_ATTEMPTS_WINDOW_SECONDS = int(os.environ.get("STEPWISE_FAILED_ATTEMPTS_WINDOW_SECONDS", "300"))
# /api/docs and /api/openapi.json need a console sign-in unless this is on.
STEPWISE_API_DOCS_PUBLIC = env_bool("STEPWISE_API_DOCS_PUBLIC", False)
# Shared by every process (failed-attempt counts): Redis when REDIS_URL is set.
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
         "KEY_PREFIX": CHANNEL_PREFIX}
        if REDIS_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# Alerts (README: Alerts): how often the scheduler looks for runs that ended badly and backed-up
# queues, the longest pause between tries of an undelivered notification, and when it gives up.
STEPWISE_ALERT_INTERVAL_SECONDS = float(os.environ.get("STEPWISE_ALERT_INTERVAL_SECONDS", "5"))
STEPWISE_ALERT_MAX_RETRY_SECONDS = float(os.environ.get("STEPWISE_ALERT_MAX_RETRY_SECONDS", "600"))
STEPWISE_ALERT_GIVE_UP_SECONDS = float(os.environ.get("STEPWISE_ALERT_GIVE_UP_SECONDS", str(24 * 3600)))
# Webhooks to loopback, private and link-local addresses are refused unless this is on (a receiver
# inside your own network): a URL typed by an admin must not reach internal services from the scheduler.
STEPWISE_ALERT_PRIVATE_WEBHOOKS = env_bool("STEPWISE_ALERT_PRIVATE_WEBHOOKS", False)
# The console's public address, for links in alert e-mails (e.g. https://stepwise.example.com).
STEPWISE_CONSOLE_URL = os.environ.get("STEPWISE_CONSOLE_URL", "")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "stepwise@localhost")
# Alert e-mails go through Django's default mailer, built from the EMAIL_* variables. Django's SMTP
# backend gets the server's options; another EMAIL_BACKEND (console, file) is given none.
_smtp_backend = "django.core.mail.backends.smtp.EmailBackend"
_email_backend = os.environ.get("EMAIL_BACKEND", _smtp_backend)
MAILERS = {
    "default": {
        "BACKEND": _email_backend,
        "OPTIONS": {
            "host": os.environ.get("EMAIL_HOST", "localhost"),
            "port": int(os.environ.get("EMAIL_PORT", "25")),
            "username": os.environ.get("EMAIL_HOST_USER", ""),
            "password": os.environ.get("EMAIL_HOST_PASSWORD", ""),
            "use_tls": env_bool("EMAIL_USE_TLS", False),
            # A server that accepts the connection and then says nothing must not hold the scheduler.
            "timeout": float(os.environ.get("EMAIL_TIMEOUT", "10")),
        } if _email_backend == _smtp_backend else {},
    }
}
# PII redaction (README: PII redaction): a dotted path to a function redact(value) -> value applied,
# before each task's own redact=, to what is stored of runs' logs, spans, events and errors and to
# what is shown of their payloads, outputs, metadata and step results.
STEPWISE_REDACT = os.environ.get("STEPWISE_REDACT", "")
# Environments whose run payloads, outputs, step results, waitpoint outputs and stream chunks are
# hidden from those who may read runs there but not operate them (viewers, keys without operate or
# admin, public tokens; README: Who may do what), e.g. "prod,eu-prod". Shown as stored to operators.
STEPWISE_PAYLOADS_HIDDEN_FROM_VIEWERS = env_list("STEPWISE_PAYLOADS_HIDDEN_FROM_VIEWERS", [])
