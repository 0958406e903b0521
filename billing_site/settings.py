"""Settings for billables, read from the environment (django-environ).

Every value a deployment changes is an environment variable; `.env` beside `manage.py` is read
for local work and never overrides what the environment already says.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
# The fallback is public (it is in the repository), so it serves local work with DEBUG on only:
# with DEBUG off the web application (billing_site.wsgi) and `release` (the deploy check
# billables.E004) refuse to start on it, or on no key at all (billing_site/checks.py).
# Settings load either way, so tests and management commands run without a key.
DEVELOPMENT_SECRET_KEY = "django-insecure-local-development-only"
SECRET_KEY = env("SECRET_KEY", default="") or DEVELOPMENT_SECRET_KEY
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])
# Earlier keys, still accepted for sessions and signatures while rotating SECRET_KEY (runbook).
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

INSTALLED_APPS = [
    # The admin, discovered when the URLconf loads rather than at start-up (see admin_app.py).
    "billing_site.admin_app.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    # Wiring only (no models): request and task ids on every log record, deploy checks, and
    # `qcluster` refusing a public SECRET_KEY (before django_q, whose command it replaces).
    "billing_site",
    "django_q",
    # Review desk: trigger-based audit trail (pghistory on pgtrigger), failed-login throttling
    # (axes), optional two-factor login (django-otp with TOTP devices).
    "pgtrigger",
    "pghistory",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "timesheets",
    "invoices",
]

MIDDLEWARE = [
    # First: every log record of the request carries its id (billing_site.structured_logging).
    "billing_site.structured_logging.RequestIdMiddleware",
    # /healthz and /readyz are answered before host validation and the HTTPS redirect.
    "billing_site.health.ProbeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files straight from gunicorn, compressed and cached; no separate file server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # Attaches the user and URL to every audit-trail row written during the request.
    "pghistory.middleware.HistoryMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a lockout raised during login into its response.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out login before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Failed-login throttling (reliability notes 3.2): lock a username from one address after
# AXES_FAILURE_LIMIT failures for AXES_COOLOFF_HOURS; a success resets the count. Behind a
# reverse proxy set AXES_IPWARE_PROXY_COUNT, or every user shares the proxy's address.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_IPWARE_PROXY_COUNT = env.int("AXES_IPWARE_PROXY_COUNT", default=0) or None
AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]
AXES_VERBOSE = False  # no start-up banner in every management command
# The issuer shown in authenticator apps for TOTP devices.
OTP_TOTP_ISSUER = env("OTP_TOTP_ISSUER", default="billables")

ROOT_URLCONF = "billing_site.urls"

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

WSGI_APPLICATION = "billing_site.wsgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/billables"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
# A kept connection is tested before reuse, so a database restart or failover costs no errors.
DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
# `collectstatic` (the image build, or the release step) gathers and compresses the files;
# WhiteNoise serves them. Not the manifest storage: that one fails every page render until
# collectstatic has run, which tests and the demo never do. The admin's files change only
# with Django upgrades, and WhiteNoise caches unhashed files for 60 seconds only.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- HTTPS, cookies and proxies (reliability notes 3.1). DEBUG=false gives the safe defaults;
# every one can be set from the environment (docs/deployment.md).
# Behind a proxy that terminates TLS, e.g. SECURE_PROXY_SSL_HEADER=X-Forwarded-Proto,https.
# Set it only when the proxy always sets or strips that header, or anyone can claim HTTPS.
_proxy_ssl_header = env.list("SECURE_PROXY_SSL_HEADER", default=[])
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER must be 'Header-Name,value'")
    _name = _proxy_ssl_header[0].strip().upper().replace("-", "_")
    SECURE_PROXY_SSL_HEADER = (
        _name if _name.startswith("HTTP_") else f"HTTP_{_name}",
        _proxy_ssl_header[1].strip(),
    )
# Redirect plain HTTP to HTTPS. On by default once the proxy header is configured (then there
# is no redirect loop); a proxy that redirects itself may leave it off. The health probes are
# exempt (and answered before this anyway, see billing_site.health).
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=bool(_proxy_ssl_header))
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# HSTS: start at an hour, raise to 31536000 (a year) once HTTPS is known to work everywhere.
# includeSubDomains covers only names below the one billables is served on.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# Staff sessions last a working day.
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 60 * 60)
# The admin's origin(s) when a proxy changes scheme or host, e.g. https://billing.example.com.
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Preloading is a promise only the domain's owner can make (hstspreload.org asks software not
# to send `preload` by default), so it stays off unless SECURE_HSTS_PRELOAD=true, and
# `check --deploy` is told that this is deliberate rather than warning on every run.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Uploaded CSV exports are parsed in memory; a month of a large firm is a few MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=50 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

# Imports of tracker exports (timesheets.importing; docs/deployment.md "Limits"). Each refusal
# names its setting. The size is checked before a file is read, rows while it is read.
IMPORT_MAX_FILE_BYTES = env.int("IMPORT_MAX_FILE_BYTES", default=50 * 1024 * 1024)
IMPORT_MAX_ROWS = env.int("IMPORT_MAX_ROWS", default=200_000)
IMPORT_MAX_NOTE_CHARS = env.int("IMPORT_MAX_NOTE_CHARS", default=5_000)
# Rows without a client (internal time): "import" files them, not billable, under this client
# (created when first needed); "skip" leaves them out. Both are counted in the summary.
IMPORT_INTERNAL_TIME = env.str("IMPORT_INTERNAL_TIME", default="import")
IMPORT_INTERNAL_CLIENT_NAME = env.str("IMPORT_INTERNAL_CLIENT_NAME", default="Internal")

# Fernet keys (newest first) for third-party credentials at rest; not SECRET_KEY. The fallback
# is a fixed development key: production must set its own (see integrations/encryption.py).
BILLABLES_ENCRYPTION_KEYS = env.list(
    "BILLABLES_ENCRYPTION_KEYS",
    default=["ZGV2ZWxvcG1lbnQtb25seS1rZXktbm90LWZvci11c2U=" if DEBUG else ""],
)

# Language-model tier (issue: classification by Claude). Unset key = tier skipped.
ANTHROPIC_API_KEY = env("ANTHROPIC_API_KEY", default="")
CLASSIFIER_MODEL = env("CLASSIFIER_MODEL", default="claude-haiku-5-5")
CLASSIFIER_CONFIDENCE_THRESHOLD = env("CLASSIFIER_CONFIDENCE_THRESHOLD", default="0.7")
# Passed to the SDK client explicitly (no profile or environment lookup inside the SDK).
ANTHROPIC_BASE_URL = env("ANTHROPIC_BASE_URL", default="https://api.anthropic.com")
# The SDK retries 408/409/429/5xx/529 and timeouts itself, honouring retry-after.
ANTHROPIC_MAX_RETRIES = env.int("ANTHROPIC_MAX_RETRIES", default=2)
ANTHROPIC_TIMEOUT = env.int("ANTHROPIC_TIMEOUT", default=60)  # seconds per attempt
CLASSIFIER_BATCH_SIZE = env.int("CLASSIFIER_BATCH_SIZE", default=40)  # distinct notes/request
CLASSIFIER_MAX_EXAMPLES = env.int("CLASSIFIER_MAX_EXAMPLES", default=8)  # per client prompt
CLASSIFIER_BATCH_POLL_SECONDS = env.int("CLASSIFIER_BATCH_POLL_SECONDS", default=30)

# Similar memory (billing semantics 2.3): a note close enough to a client's decided notes
# (masked token-set ratio, 0..1) is decided by them. A firm setting, on by default.
SIMILAR_MEMORY_ENABLED = env.bool("SIMILAR_MEMORY_ENABLED", default=True)
SIMILAR_MEMORY_THRESHOLD = env("SIMILAR_MEMORY_THRESHOLD", default="0.85")

# QuickBooks Online (push issue).
QBO_CLIENT_ID = env("QBO_CLIENT_ID", default="")
QBO_CLIENT_SECRET = env("QBO_CLIENT_SECRET", default="")
QBO_ENVIRONMENT = env("QBO_ENVIRONMENT", default="sandbox")
# The OAuth redirect registered with Intuit (empty: this site's own callback URL as requested).
QBO_REDIRECT_URI = env("QBO_REDIRECT_URI", default="")
# Empty: Intuit's API for QBO_ENVIRONMENT. Set only to reach a test server.
QBO_API_BASE_URL = env("QBO_API_BASE_URL", default="")
# Income account for items created from billables (empty: QuickBooks' first income account).
QBO_INCOME_ACCOUNT_ID = env("QBO_INCOME_ACCOUNT_ID", default="")
# Stay under Intuit's 500 requests/minute per company (integrations/quickbooks/pacing.py).
QBO_REQUESTS_PER_MINUTE = env.int("QBO_REQUESTS_PER_MINUTE", default=400)
# Requests under way at once per company; Intuit allows 10 (more are capped at 10).
QBO_MAX_CONCURRENT_REQUESTS = env.int("QBO_MAX_CONCURRENT_REQUESTS", default=10)
# Seconds to connect to and to read from Intuit (the libraries set none of their own).
QBO_TIMEOUT_SECONDS = (
    env.int("QBO_CONNECT_TIMEOUT_SECONDS", default=5),
    env.int("QBO_READ_TIMEOUT_SECONDS", default=30),
)
# Pushing and voiding (invoices/quickbooks/pushing.py, voiding.py; docs/quickbooks.md): tries
# of one push within a task and the seconds that task may spend; attempts over all tasks before
# a push is left failed for a person; backoff between tries (doubling from the base up to the
# cap; at least the throttle wait after a 429); how long a push waits for another process to
# release the company's push lock.
QBO_PUSH_MAX_TRIES = env.int("QBO_PUSH_MAX_TRIES", default=5)
QBO_PUSH_TIME_BUDGET_SECONDS = env.int("QBO_PUSH_TIME_BUDGET_SECONDS", default=300)
QBO_PUSH_MAX_ATTEMPTS = env.int("QBO_PUSH_MAX_ATTEMPTS", default=15)
QBO_RETRY_BASE_SECONDS = env.float("QBO_RETRY_BASE_SECONDS", default=2.0)
QBO_RETRY_MAX_SECONDS = env.float("QBO_RETRY_MAX_SECONDS", default=60.0)
QBO_THROTTLE_WAIT_SECONDS = env.float("QBO_THROTTLE_WAIT_SECONDS", default=10.0)
QBO_PUSH_LOCK_WAIT_SECONDS = env.int("QBO_PUSH_LOCK_WAIT_SECONDS", default=180)
# This site's public address, for links back from QuickBooks invoices' private notes.
BILLABLES_BASE_URL = env("BILLABLES_BASE_URL", default="")

# django-q2 on the ORM broker of the one PostgreSQL database. timeout < retry so a slow task
# is never handed to a second worker while the first still runs (reliability notes 4).
Q_CLUSTER = {
    "name": "billables",
    "orm": "default",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": 600,
    "retry": 900,
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 500,
    "poll": 1.0,
    "sync": env.bool("Q_SYNC", default=False),
}

# /readyz thresholds (billing_site/health.py, docs/runbook.md "Health signals").
HEALTH_QUEUE_MAX_AGE_SECONDS = env.int("HEALTH_QUEUE_MAX_AGE_SECONDS", default=600)
HEALTH_MAX_FAILED_TASKS = env.int("HEALTH_MAX_FAILED_TASKS", default=0)
HEALTH_SYNC_MAX_AGE_MINUTES = env.int("HEALTH_SYNC_MAX_AGE_MINUTES", default=180)
# `manage.py purge_raw_payloads` purges raw payloads older than this (what: in its docstring).
RAW_PAYLOAD_RETENTION_DAYS = env.int("RAW_PAYLOAD_RETENTION_DAYS", default=90)

# Logs go to stderr (the process manager or platform collects both streams): one JSON object per
# line with the request id and the django-q2 task id; `plain` is one readable line for local
# work. Never stdout: a management command's stdout is its data (`export_invoices > f.json`).
# Secret values are redacted in both (billing_site.structured_logging).
LOG_FORMAT = env("LOG_FORMAT", default="plain" if DEBUG else "json")
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "billing_site.structured_logging.ContextFilter"}},
    "formatters": {
        "json": {"()": "billing_site.structured_logging.JsonFormatter"},
        "plain": {
            "()": "billing_site.structured_logging.RedactingFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(task_id)s] %(message)s",
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": LOG_FORMAT,
            "filters": ["context"],
        }
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # Django's own console handler would print every record a second time in DEBUG.
    "loggers": {"django": {"handlers": [], "level": "INFO", "propagate": True}},
}

# Tracker API sync (issue 4; shared/specs/api-notes.md section 8). A connection's own base URLs,
# when set in the admin, win over these.
HARVEST_BASE_URL = env("HARVEST_BASE_URL", default="https://api.harvestapp.com/v2")
# Harvest answers 400 without a User-Agent naming the app and a contact address.
HARVEST_USER_AGENT = env("HARVEST_USER_AGENT", default="billables (ops@billables.invalid)")
CLOCKIFY_BASE_URL = env("CLOCKIFY_BASE_URL", default="https://api.clockify.me/api/v1")
CLOCKIFY_REPORTS_URL = env("CLOCKIFY_REPORTS_URL", default="https://reports.api.clockify.me/v1")
TOGGL_BASE_URL = env("TOGGL_BASE_URL", default="https://api.track.toggl.com/api/v9")
TOGGL_REPORTS_URL = env("TOGGL_REPORTS_URL", default="https://api.track.toggl.com/reports/api/v3")
# Toggl's requests are paced under its published quotas (api-notes 3.4): TOGGL_PLAN free (30
# workspace requests an hour), starter (240) or premium (600), user-scoped /me requests 30 an
# hour on every plan; TOGGL_REQUESTS_PER_HOUR (0: the plan's) replaces both hourly figures for
# another plan or a test server; TOGGL_REQUESTS_PER_SECOND is the burst limit (about 1).
TOGGL_PLAN = env("TOGGL_PLAN", default="free")
TOGGL_REQUESTS_PER_HOUR = env.int("TOGGL_REQUESTS_PER_HOUR", default=0)
TOGGL_REQUESTS_PER_SECOND = env.int("TOGGL_REQUESTS_PER_SECOND", default=1)
TRACKER_CONNECT_TIMEOUT_SECONDS = env.int("TRACKER_CONNECT_TIMEOUT_SECONDS", default=5)
TRACKER_READ_TIMEOUT_SECONDS = env.int("TRACKER_READ_TIMEOUT_SECONDS", default=60)
# Transient failures (5xx, timeouts, resets) are retried this many times with exponential
# backoff from TRACKER_BACKOFF_SECONDS; a Retry-After up to TRACKER_MAX_WAIT_SECONDS is waited
# out inside the run, a longer one ends the run and defers the connection until then.
TRACKER_MAX_RETRIES = env.int("TRACKER_MAX_RETRIES", default=4)
TRACKER_BACKOFF_SECONDS = env.float("TRACKER_BACKOFF_SECONDS", default=1.0)
TRACKER_MAX_WAIT_SECONDS = env.int("TRACKER_MAX_WAIT_SECONDS", default=120)

# `manage.py check_connections`: the checks it runs (functions taking `live`, returning
# integrations.checks.CheckResult), named here so the timesheets command need not import the
# invoices app.
CONNECTION_CHECKS = [
    "integrations.claude.checking.check_claude",
    "timesheets.sync.checking.check_trackers",
    "invoices.quickbooks.checking.check_quickbooks",
]
