"""Settings shared by every environment. Read from the environment with django-environ.

Nothing here needs a server: SQLite, eager Celery and the console mailer are the
defaults; DATABASE_URL, REDIS_URL and EMAIL_URL switch to real services.
"""

from pathlib import Path

import environ
from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
if env.bool("DJANGO_READ_DOT_ENV_FILE", default=False):
    env.read_env(str(BASE_DIR / ".env"))

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="insecure-local-only-key-do-not-use-in-production")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])

TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"
USE_I18N = True
USE_TZ = True

# --- Database --------------------------------------------------------------
# SQLite lives in a git-ignored folder so a fresh clone needs nothing installed.
(BASE_DIR / "db").mkdir(exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db' / 'loyalty.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers take the lock when the transaction starts (IMMEDIATE), so a reader
    # never fails half-way upgrading to a writer; WAL lets the server read while a
    # job writes; wait for the lock instead of failing at once.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # The reports' covering index (INCLUDE) is PostgreSQL's; SQLite builds it on its key columns,
    # which serves the demo, and the warning would greet every `make run`.
    SILENCED_SYSTEM_CHECKS = ["models.W040"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Apps ------------------------------------------------------------------
DJANGO_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.admin",
]
THIRD_PARTY_APPS = [
    "django_filters",
    "django_tables2",
    "simple_history",
    "axes",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and Redoc served from our static files: docs work offline
]
LOCAL_APPS = [
    "loyalty",
    # Nested apps of loyalty, each with its own models and migrations.
    "loyalty.api",
    "loyalty.imports",
    "loyalty.notifications",
    "referrals",
    "disputes",
    "agents",
]
INSTALLED_APPS = DJANGO_APPS + THIRD_PARTY_APPS + LOCAL_APPS

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Attributes every history row written during a request to its user.
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes asks, so it sees the final login outcome.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "loyalty.access.role_context",
                "config.nav.nav_context",
            ],
        },
    }
]

# --- Auth ------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# django-axes: lock a username+IP pair out for a while after repeated failures.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)  # hours
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

# --- Static ----------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- Email -----------------------------------------------------------------
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Loyalty back-office <noreply@localhost>")

# --- Cache and Celery ------------------------------------------------------
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Eager tasks still take a producer from the pool; naming a host keeps kombu from warning that
# none was given (the in-memory transport ignores it).
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = REDIS_URL or None
# Without a broker the tasks run in-process, so a fresh clone needs no Redis.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_SOFT_TIME_LIMIT = 15 * 60
CELERY_TASK_TIME_LIMIT = 20 * 60
CELERY_TASK_ACKS_LATE = True  # jobs are idempotent, so a crashed worker's job is redone
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    # Make pending points spendable once their waiting period is over.
    "activate-pending-points": {
        "task": "loyalty.tasks.activate_pending_points",
        "schedule": crontab(minute="*/15"),
    },
    # Expire lots whose expiry moment has passed; safe to overlap with itself.
    "expire-points": {
        "task": "loyalty.tasks.expire_points",
        "schedule": crontab(minute=5, hour="*"),
    },
    # Nightly check that every balance matches its entries and lots.
    "reconcile-ledger": {
        "task": "loyalty.tasks.reconcile_ledger",
        "schedule": crontab(minute=30, hour=2),
    },
    # Agents' performance points for last month. Daily at 14:00 UTC: by then the month is over in
    # every time zone (UTC-12 included) on the 1st, and the later runs post late KPI corrections
    # to last month as differences (a rerun with nothing new posts nothing).
    "award-agent-points": {
        "task": "agents.tasks.award_agent_points",
        "schedule": crontab(minute=0, hour=14),
    },
    # Birthday, anniversary and lifetime-points bonuses. Hourly, not daily: each program
    # pays by its own local date, and local midnight falls at a different UTC hour per time
    # zone (and moves with daylight saving), so an hourly run pays every program's birthdays
    # within about an hour of its midnight. Reruns pay nothing twice (idempotency keys).
    "pay-milestones": {
        "task": "loyalty.tasks.pay_milestones",
        "schedule": crontab(minute=10),
    },
    # The tier review, the only place members move down a tier: monthly, on the 1st at
    # 03:00 UTC, after the nightly reconcile, when few purchases are landing.
    # Webhook deliveries due now (first tries and retries with backoff).
    "send-webhooks": {
        "task": "loyalty.notifications.tasks.send_webhooks",
        "schedule": crontab(minute="*"),
    },
    # Weekly digest of points expiring within 30 days, Mondays 08:00 UTC; once per member per week.
    "notify-expiring-points": {
        "task": "loyalty.notifications.tasks.notify_expiring_points",
        "schedule": crontab(minute=0, hour=8, day_of_week=1),
    },
    "review-tiers": {
        "task": "loyalty.tasks.review_tiers",
        "schedule": crontab(minute=0, hour=3, day_of_month=1),
    },
    # Disputes past their SLA targets: escalated once each, supervisors emailed.
    "escalate-overdue-disputes": {
        "task": "disputes.tasks.escalate_overdue_disputes",
        "schedule": crontab(minute="*/5"),
    },
}

# --- REST API --------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Client systems authenticate with program-scoped keys (`Authorization: Api-Key <key>`).
    "DEFAULT_AUTHENTICATION_CLASSES": ["loyalty.api.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["loyalty.api.authentication.HasApiKey"],
    # Each key's own rate (ApiKey.rate_limit), counted in the Django cache: a 429 past it.
    "DEFAULT_THROTTLE_CLASSES": ["loyalty.api.throttling.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    # Every error is {"code", "message", "field"?, "fields"?}; bad input is never a 500.
    "EXCEPTION_HANDLER": "loyalty.api.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Loyalty back-office API",
    "DESCRIPTION": (
        "Program-scoped integration API. Authenticate with `Authorization: Api-Key <key>`; "
        "every write needs an `Idempotency-Key` header. Errors are JSON {code, message, field, fields}."
    ),
    "VERSION": "1.0.0",
    # The docs pages are public (they hold no data) and load their assets from our own static files.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Tables ----------------------------------------------------------------
DJANGO_TABLES2_TEMPLATE = "django_tables2/loyalty.html"
DJANGO_TABLES2_TABLE_ATTRS = {"class": "table"}

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(levelname)s %(asctime)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"level": "INFO", "handlers": ["console"]},
    "loggers": {"axes": {"level": "WARNING"}},
}
