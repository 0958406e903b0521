"""Structured logs: one JSON object per line on stdout, tagged with the request or task id.

A request gets an id (the proxy's `X-Request-ID` when it sends a well-formed one, else a new
one), returned in the response's `X-Request-ID` header. A django-q2 task gets its task id, and
the id of the request that queued it, so one search finds everything a click caused, on the web
process and on whichever worker ran the task.

Secrets never reach the output: known secret values from the settings, bearer tokens, Fernet
ciphertexts and `token=...`-style pairs are replaced by `[redacted]` in the message and in the
traceback, and request objects that Django attaches to error records are never serialized.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime

from django.core.exceptions import ImproperlyConfigured

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
task_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("task_id", default="")

# An id from outside is used only when it cannot inject anything into a log line.
_WELL_FORMED_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

REDACTED = "[redacted]"
_SECRET_PATTERNS = [
    # Authorization headers and the like.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + REDACTED),
    # key=value or "key": "value" for names that carry secrets.
    (
        re.compile(
            r"(?i)([\"']?\b[\w-]*(?:token|secret|password|passwd|api[_-]?key|authorization)"
            r"[\"']?\s*[:=]\s*[\"']?)(?!(?:bearer|basic)\s)([^\s\"',&;}]+)"
        ),
        r"\1" + REDACTED,
    ),
    # Fernet ciphertexts (our encrypted credentials) always start with this version prefix.
    (re.compile(r"gAAAAA[A-Za-z0-9_=-]{20,}"), REDACTED),
]


def _configured_secrets() -> list[str]:
    """Secret values from the settings, longest first (a key may contain a shorter one)."""
    from django.conf import settings

    values = [
        settings.SECRET_KEY,
        *getattr(settings, "SECRET_KEY_FALLBACKS", []),
        *getattr(settings, "BILLABLES_ENCRYPTION_KEYS", []),
        getattr(settings, "ANTHROPIC_API_KEY", ""),
        getattr(settings, "QBO_CLIENT_SECRET", ""),
        *(db.get("PASSWORD", "") for db in settings.DATABASES.values()),
    ]
    return sorted({str(v) for v in values if v and len(str(v)) >= 8}, key=len, reverse=True)


def redact(text: str) -> str:
    try:
        secrets = _configured_secrets()
    except ImproperlyConfigured:  # logging must also work where no settings are configured
        secrets = []
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RequestIdMiddleware:
    """First in MIDDLEWARE: every log record written while handling the request carries its id."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request_id = incoming if _WELL_FORMED_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


# --- django-q2 signals (connected in billing_site.apps) ------------------------------------

# The values to restore after a task (a task run in sync mode runs inside a request), and
# when it started.
_saved: list[tuple[contextvars.Token, contextvars.Token, float]] = []
_task_log = logging.getLogger("billables.tasks")


def remember_request_id(sender, task: dict, **kwargs) -> None:
    """pre_enqueue: the queued task carries the id of the request (or task) that queued it."""
    origin = request_id_var.get() or task_id_var.get()
    if origin:
        task["request_id"] = origin


def task_started(sender, task: dict, func=None, **kwargs) -> None:
    """pre_execute, in the worker process just before the task's function runs. The log line
    says which process ran which task: with several clusters, each task appears once."""
    _saved.append(
        (
            task_id_var.set(str(task.get("id", ""))),
            request_id_var.set(str(task.get("request_id", ""))),
            time.monotonic(),
        )
    )
    target = func or task.get("func")
    name = target if isinstance(target, str) else getattr(target, "__qualname__", repr(target))
    module = "" if isinstance(target, str) else getattr(target, "__module__", "")
    _task_log.info(
        "task started",
        extra={"func": f"{module}.{name}" if module else name, "task_name": task.get("name", "")},
    )


def task_finished(sender, task: dict, **kwargs) -> None:
    """post_execute_in_worker, after the task (also when it failed)."""
    if not _saved:
        return
    task_token, request_token, started = _saved.pop()
    _task_log.info(
        "task finished",
        extra={
            "success": bool(task.get("success")),
            "seconds": round(time.monotonic() - started, 3),
        },
    )
    task_id_var.reset(task_token)
    request_id_var.reset(request_token)


# --- logging ------------------------------------------------------------------------------


class ContextFilter(logging.Filter):
    """Puts the current request and task id on every record (for any formatter)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.task_id = task_id_var.get()
        return True


# Attributes every LogRecord has; anything else was passed with `extra=`.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document: dict = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
            "request_id": getattr(record, "request_id", "") or request_id_var.get(),
            "task_id": getattr(record, "task_id", "") or task_id_var.get(),
            "process": record.process,
        }
        for name, value in record.__dict__.items():
            # Only plain values: Django attaches the request object (cookies, headers) to
            # error records, and it must never be written out.
            if name not in _STANDARD and name not in document and _plain(value):
                document[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            document["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            document["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(document, ensure_ascii=False, default=str)


class RedactingFormatter(logging.Formatter):
    """The plain one-line format for local work, with the same redaction."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _plain(value) -> bool:
    return value is None or isinstance(value, str | int | float | bool)
