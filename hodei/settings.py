"""Hodei's one settings module, driven by environment variables.

It fails closed: outside ``HODEI_DEV=1`` a ``SECRET_KEY`` is required.
"""

import base64
import hashlib
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from hodei import __version__
from hodei.lib.env import (
    env_bool,
    env_float,
    env_int,
    env_list,
    env_list_file,
    env_str,
    parse_database_url,
    read_secret_file,
    sqlite_database,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("HODEI_VAR_DIR", str(BASE_DIR / "var")))

HODEI_VERSION = __version__
HODEI_DEV = env_bool("HODEI_DEV", False)
DEBUG = env_bool("DEBUG", False)

# `make run` generates the key into var/secret_key; a new shell finds it there, so every
# manage.py command works without exporting it.
SECRET_KEY = env_str("SECRET_KEY") or read_secret_file(VAR_DIR / "secret_key")
if not SECRET_KEY:
    if not HODEI_DEV:
        raise ImproperlyConfigured(
            f"SECRET_KEY is required: set it, or run `make run` once to generate "
            f"{VAR_DIR / 'secret_key'} (or set HODEI_DEV=1 for a local development setup)."
        )
    SECRET_KEY = "hodei-development-only-not-secret"

# Job secret variables are encrypted at rest with keys of their own (hodei/lib/secrets.py):
# HODEI_SECRETS_KEY, newest first, or var/secrets_key (make run generates it).
HODEI_SECRETS_KEYS = env_list("HODEI_SECRETS_KEY") or env_list_file(VAR_DIR / "secrets_key")
if not HODEI_SECRETS_KEYS:
    if not HODEI_DEV:
        raise ImproperlyConfigured(
            "HODEI_SECRETS_KEY is required (job secrets are encrypted with it): set it, or "
            f"run `make run` once to generate {VAR_DIR / 'secrets_key'}."
        )
    # Development only: a key derived from the development SECRET_KEY.
    HODEI_SECRETS_KEYS = [
        base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()
    ]

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# Which API this process serves: each service gets its own URLconf, so the seed's
# three-port contract holds exactly and each service scales on its own.
HODEI_SERVICES = ("orchestrator", "scheduler", "workermanager")
HODEI_SERVICE = env_str("HODEI_SERVICE", "orchestrator")
if HODEI_SERVICE not in HODEI_SERVICES:
    raise ImproperlyConfigured(f"HODEI_SERVICE must be one of {HODEI_SERVICES}")
ROOT_URLCONF = f"hodei.urls.{HODEI_SERVICE}"

INSTALLED_APPS = [
    "hodei",
    "console.apps.HodeiAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "axes",
    # Before django_q: its `qcluster` command adds the precise schedule ticker.
    "scheduler",
    "django_q",
    "accounts",
    "agent",
    "orchestrator",
    "workermanager",
    "pipelines",
    "events",
    "webhooks",
    "telemetry",
    "console",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "hodei.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "axes.middleware.AxesMiddleware",
    "hodei.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "hodei.middleware.ContentSecurityPolicyMiddleware",
    "hodei.middleware.PrometheusAfterMiddleware",
]

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
            "libraries": {"hodei": "hodei.templatetags.hodei"},
        },
    },
]

WSGI_APPLICATION = "hodei.wsgi.application"

_database_url = env_str("DATABASE_URL")
if _database_url:
    DATABASES = {"default": parse_database_url(_database_url)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {"default": sqlite_database(str(VAR_DIR / "hodei.sqlite3"))}
# django-prometheus's wrappers of the same backends count queries and errors.
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends."
)
DATABASES["default"]["CONN_MAX_AGE"] = env_int("HODEI_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# The hot paths' own statements (hodei.lib.rows: claim, settle, events, token lookup) are
# prepared on the server, parsed and planned once per connection. Django turns psycopg's
# preparation off (prepare_threshold None); its own cursors bind on the client and never
# prepare, so a threshold here only lets hodei.lib.rows ask. Behind a connection pooler
# in transaction mode that does not keep prepared statements (PgBouncer before 1.21):
# HODEI_DB_PREPARE=0.
if "postgresql" in DATABASES["default"]["ENGINE"] and env_bool("HODEI_DB_PREPARE", True):
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 2**31 - 1)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Logins: django-axes locks a username from an address out after AXES_FAILURE_LIMIT
# failed passwords, for HODEI_LOGIN_LOCKOUT_MINUTES (the admin and the browsable API).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("HODEI_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("HODEI_LOGIN_LOCKOUT_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_VERBOSE = False
AXES_CLIENT_IP_CALLABLE = "accounts.authentication.client_address"
# How many proxies of ours stand in front of the services (1 with compose's nginx): the
# client address comes from what the outermost saw.
HODEI_PROXY_COUNT = env_int("HODEI_PROXY_COUNT", 0, minimum=0)
# Bearer tokens: past this many failures from one address in the window, 429.
HODEI_TOKEN_FAILURE_LIMIT = env_int("HODEI_TOKEN_FAILURE_LIMIT", 20, minimum=1)
HODEI_TOKEN_FAILURE_WINDOW_SECONDS = env_int("HODEI_TOKEN_FAILURE_WINDOW_SECONDS", 600, minimum=1)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve assets (admin, Swagger UI) straight from the installed apps: no collectstatic
# step is needed to get a working UI, and nothing comes from a CDN.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# HODEI_HTTPS=1: served over HTTPS (behind a TLS-terminating proxy): redirect plain
# HTTP, HSTS, secure cookies, and trust the proxy's X-Forwarded-Proto.
HODEI_HTTPS = env_bool("HODEI_HTTPS", False)
if HODEI_HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = env_int("HODEI_HSTS_SECONDS", 31_536_000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HODEI_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("HODEI_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # /health stays reachable over plain HTTP for probes inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^health$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOGIN_URL = "/api-auth/login/"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_NAME = "hodei_session"
CSRF_COOKIE_NAME = "hodei_csrftoken"

# Request bodies larger than this are refused with 413 before anything parses them.
HODEI_MAX_BODY_BYTES = env_int("HODEI_MAX_BODY_BYTES", 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = HODEI_MAX_BODY_BYTES

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["hodei.api.permissions.ModelPermissions"],
    "DEFAULT_PARSER_CLASSES": ["hodei.api.parsers.JSONParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "hodei.api.negotiation.ContentNegotiation",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "hodei.api.pagination.LinkHeaderCursorPagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "hodei.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Hodei",
    "VERSION": __version__,
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # The bearer scheme comes from accounts.schema (the token authentication's extension).
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "deepLinking": True},
    # Several models have a `status` with its own choices; without names drf-spectacular
    # falls back to hashed enum names ("StatusC79Enum") and warns.
    "ENUM_NAME_OVERRIDES": {
        "PipelineStatusEnum": "orchestrator.choices.PipelineStatus",
        "JobStatusEnum": "orchestrator.choices.JobStatus",
        "ScheduleStatusEnum": "scheduler.choices.ScheduleStatus",
        "WorkerStatusEnum": "workermanager.choices.WorkerStatus",
        "ExecutionStatusEnum": "workermanager.choices.ExecutionStatus",
        "ManagedWorkerStatusEnum": "workermanager.choices.ManagedWorkerStatus",
        "RunOutcomeEnum": "workermanager.choices.RUN_OUTCOME_CHOICES",
    },
}

APPEND_SLASH = False

# Worker agents and the reaper.
HODEI_HEARTBEAT_SECONDS = env_float("HODEI_HEARTBEAT_SECONDS", 5.0, minimum=0.1)
HODEI_MISSED_HEARTBEATS = env_int("HODEI_MISSED_HEARTBEATS", 3, minimum=1)
HODEI_POLL_SECONDS = env_float("HODEI_POLL_SECONDS", 1.0, minimum=0.05)
HODEI_LOG_MAX_BYTES = env_int("HODEI_LOG_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
HODEI_LOG_FLUSH_SECONDS = env_float("HODEI_LOG_FLUSH_SECONDS", 0.2, minimum=0.01)
HODEI_LOG_FLUSH_BYTES = env_int("HODEI_LOG_FLUSH_BYTES", 64 * 1024, minimum=1024)
HODEI_KILL_GRACE_SECONDS = env_float("HODEI_KILL_GRACE_SECONDS", 5.0, minimum=0)
HODEI_SHUTDOWN_GRACE_SECONDS = env_float("HODEI_SHUTDOWN_GRACE_SECONDS", 10.0, minimum=0)
HODEI_TIMEOUT_GRACE_SECONDS = env_float("HODEI_TIMEOUT_GRACE_SECONDS", 30.0, minimum=0)
HODEI_WORKER_START_TIMEOUT_SECONDS = env_float(
    "HODEI_WORKER_START_TIMEOUT_SECONDS", 10.0, minimum=0.5
)
# Agents over HTTP (the worker manager's /api/v1/agent/). Managed workers talk to the
# worker manager at this URL; a claim waits (long-polls) for work up to 30 s, holding a
# web thread: one worker-manager process lets at most HODEI_AGENT_LONG_POLLS claims wait
# at once (half its threads, HODEI_WORKERMANAGER_THREADS); further claims answer at once
# and their agents poll (hodei/gunicorn_conf.py).
HODEI_WORKERMANAGER_URL = env_str(
    "HODEI_WORKERMANAGER_URL",
    f"http://127.0.0.1:{env_int('HODEI_WORKERMANAGER_PORT', 8082, minimum=1)}",
).rstrip("/")
if not HODEI_WORKERMANAGER_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(
        f"HODEI_WORKERMANAGER_URL must be an http(s):// URL, got {HODEI_WORKERMANAGER_URL!r}"
    )
HODEI_AGENT_LONG_POLLS = env_int(
    "HODEI_AGENT_LONG_POLLS",
    max(1, env_int("HODEI_WORKERMANAGER_THREADS", 16, minimum=1) // 2),
    minimum=0,
)
# Managed workers through the kubernetes provider (docs/kubernetes.md): the namespace of
# their pods and Secrets, and the agents' image. They reach HODEI_WORKERMANAGER_URL.
HODEI_K8S_NAMESPACE = env_str("HODEI_K8S_NAMESPACE", "hodei")
HODEI_K8S_IMAGE = env_str("HODEI_K8S_IMAGE", "hodei:latest")
# Worker pools (workermanager/pools.py): how often the qcluster reconciles them.
HODEI_POOL_RECONCILE_SECONDS = env_float("HODEI_POOL_RECONCILE_SECONDS", 2.0, minimum=0.1)
# Retention: finished executions (and their logs) older than this are purged; a job's
# retention_days overrides it (workermanager/retention.py).
HODEI_RETENTION_DAYS = env_int("HODEI_RETENTION_DAYS", 30, minimum=1)

Q_CLUSTER = {
    "name": "hodei",
    "orm": "default",
    "workers": env_int("HODEI_Q_WORKERS", 2, minimum=1),
    # A task longer than `retry` is redelivered: keep timeout < retry, bounded attempts.
    "timeout": 60,
    "retry": 120,
    "max_attempts": 3,
    "catch_up": False,
    # Tasks are wake-up calls; their history is Hodei's (ScheduleFire, executions). A
    # large limit makes django-q2's monitor read that many rows after every task.
    "save_limit": 50,
    "ack_failures": True,
    "poll": 0.1,
    # The admin's heading for django-q2's own pages (superusers only, read-only).
    "label": "Internals: task queue",
}

LOG_LEVEL = env_str("HODEI_LOG_LEVEL", "INFO")
HODEI_LOG_FORMAT = env_str("HODEI_LOG_FORMAT", "text")
if HODEI_LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured("HODEI_LOG_FORMAT must be 'text' or 'json'")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "telemetry.logs.RedactingFilter"}},
    "formatters": {
        "text": {
            "()": "telemetry.logs.TextFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
        },
        "json": {"()": "telemetry.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": HODEI_LOG_FORMAT,
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # django-q2 configures its own handler; route it through ours instead.
        "django-q": {"handlers": ["console"], "level": LOG_LEVEL, "propagate": False},
    },
}

# /metrics needs a token or session with a view permission on executions, unless public
# (when only Prometheus can reach the services' ports).
HODEI_METRICS_PUBLIC = env_bool("HODEI_METRICS_PUBLIC", False)

# Quotas: what one user (or a mistake) may ask of the platform. A request past one is a
# 409 naming the limit; a cron that fires more often than the minimum interval is a 400.
HODEI_MAX_SCHEDULES = env_int("HODEI_MAX_SCHEDULES", 10_000, minimum=1)
HODEI_MAX_SCHEDULES_PER_JOB = env_int("HODEI_MAX_SCHEDULES_PER_JOB", 20, minimum=1)
HODEI_MIN_SCHEDULE_INTERVAL_SECONDS = env_int("HODEI_MIN_SCHEDULE_INTERVAL_SECONDS", 10, minimum=1)
HODEI_MAX_MANAGED_WORKERS = env_int("HODEI_MAX_MANAGED_WORKERS", 10, minimum=0)
HODEI_MAX_MANAGED_CONCURRENCY = env_int("HODEI_MAX_MANAGED_CONCURRENCY", 16, minimum=1)
# A queued execution no worker took in this long expires (GitLab: a day), with the reason.
HODEI_QUEUED_EXPIRY_SECONDS = env_int("HODEI_QUEUED_EXPIRY_SECONDS", 24 * 3600, minimum=60)
# /metrics labels per worker type: the registered and the configured ones, at most this
# many; any other worker type (a typo in a request) is counted under "other".
HODEI_METRICS_MAX_WORKER_TYPES = env_int("HODEI_METRICS_MAX_WORKER_TYPES", 50, minimum=1)

# Events (docs/events.md): the outbox relay publishes to NATS JetStream when a URL is set
# (nothing connects to NATS otherwise), and keeps events this long once every consumer
# has had them.
HODEI_NATS_URL = env_str("HODEI_NATS_URL", "") or ""
HODEI_NATS_STREAM = env_str("HODEI_NATS_STREAM", "HODEI")
HODEI_NATS_SUBJECT_PREFIX = env_str("HODEI_NATS_SUBJECT_PREFIX", "hodei")
HODEI_EVENT_RETENTION_DAYS = env_int("HODEI_EVENT_RETENTION_DAYS", 7, minimum=1)
HODEI_RELAY_POLL_SECONDS = env_float("HODEI_RELAY_POLL_SECONDS", 0.5, minimum=0.05)
HODEI_RELAY_BATCH = env_int("HODEI_RELAY_BATCH", 500, minimum=1)

# Webhooks (webhooks/): the relay POSTs each delivery with this timeout, retries a failed
# one after 10 s, doubling up to an hour, for a day, with this many threads per relay.
HODEI_WEBHOOK_TIMEOUT_SECONDS = env_float("HODEI_WEBHOOK_TIMEOUT_SECONDS", 5.0, minimum=0.1)
HODEI_WEBHOOK_RETRY_HOURS = env_float("HODEI_WEBHOOK_RETRY_HOURS", 24.0, minimum=0)
HODEI_WEBHOOK_BACKOFF_SECONDS = env_float("HODEI_WEBHOOK_BACKOFF_SECONDS", 10.0, minimum=0.01)
HODEI_WEBHOOK_MAX_BACKOFF_SECONDS = env_float(
    "HODEI_WEBHOOK_MAX_BACKOFF_SECONDS", 3600.0, minimum=0.01
)
HODEI_WEBHOOK_THREADS = env_int("HODEI_WEBHOOK_THREADS", 8, minimum=1)

# The scheduler's /health says "degraded" when no qcluster was seen for this long.
HODEI_QCLUSTER_STALE_SECONDS = env_int("HODEI_QCLUSTER_STALE_SECONDS", 150, minimum=1)

# Scheduling: a slot fired more than this late counts as missed (misfire policy applies).
HODEI_MISFIRE_GRACE_SECONDS = env_float("HODEI_MISFIRE_GRACE_SECONDS", 60.0, minimum=1)
