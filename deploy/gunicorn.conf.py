"""gunicorn settings for the billables web process (`gunicorn -c deploy/gunicorn.conf.py`).

Every value can be overridden from the environment (docs/deployment.md). The web process only
serves the admin to a handful of staff; month-end work runs in the qcluster workers, so a few
synchronous workers are plenty, and a long request is a bug, not something to wait for.
"""

import multiprocessing
import os

wsgi_app = "billing_site.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("WEB_CONCURRENCY", min(2 * multiprocessing.cpu_count() + 1, 5)))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# An upload of a month's CSV exports is parsed and imported inside the request.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak never becomes an outage (jitter: not all at once).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "1000"))
max_requests_jitter = 100
# The proxy's address(es) whose X-Forwarded-* headers gunicorn believes; Django decides
# HTTPS from SECURE_PROXY_SSL_HEADER.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# Logs to stdout for the process manager, as JSON lines like the application's (LOG_FORMAT).
# gunicorn's access log is off by default (the proxy keeps one) and can be turned on.
accesslog = "-" if os.environ.get("GUNICORN_ACCESS_LOG", "").lower() in ("1", "true") else None
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
_formatter = (
    {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    if os.environ.get("LOG_FORMAT", "json") == "plain"
    else {"()": "billing_site.structured_logging.JsonFormatter"}
)
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"default": _formatter},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "default",
        }
    },
    "root": {"handlers": ["console"], "level": loglevel.upper()},
    "loggers": {
        "gunicorn.error": {"handlers": ["console"], "level": loglevel.upper(), "propagate": False},
        "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
# Not the container's small /tmp on some platforms: worker heartbeats in memory.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicorn 25+ opens a control socket under $HOME by default; the process manager does that job
# here, and $HOME is read-only in the container and the systemd unit. (Older versions ignore it.)
control_socket_disable = True
