"""Settings for billables, read from the environment (django-environ).

Every value a deployment changes is an environment variable; `.env` beside `manage.py` is read
for local work and never overrides what the environment already says.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=False)
# The fallback is for local work only; `check --deploy` flags it, production sets SECRET_KEY.
SECRET_KEY = env("SECRET_KEY", default="django-insecure-local-development-only")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_q",
    "timesheets",
    "invoices",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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
STATIC_ROOT = BASE_DIR / "staticfiles"

# Uploaded CSV exports are parsed in memory; a month of a large firm is a few MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=50 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE

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

# QuickBooks Online (push issue).
QBO_CLIENT_ID = env("QBO_CLIENT_ID", default="")
QBO_CLIENT_SECRET = env("QBO_CLIENT_SECRET", default="")
QBO_ENVIRONMENT = env("QBO_ENVIRONMENT", default="sandbox")

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

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}
