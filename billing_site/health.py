"""Health endpoints for load balancers and uptime monitors (docs/runbook.md, "Health signals").

- `/healthz`: the process is up and answering. No database access: a database outage must not
  make every web process look dead and get restarted in a loop.
- `/readyz`: the product can do its job. Each check answers `ok` with the figures behind it;
  any failing check makes the answer 503:
  - `database`: a query succeeds;
  - `migrations`: no migration of the code is unapplied (an upgrade half done);
  - `queue`: the oldest task waiting in the django-q2 ORM queue is younger than
    HEALTH_QUEUE_MAX_AGE_SECONDS (no cluster running, or all workers stuck);
  - `failed_tasks`: at most HEALTH_MAX_FAILED_TASKS failed tasks in the last hour;
  - `sync`: every enabled tracker connection synced successfully within
    HEALTH_SYNC_MAX_AGE_MINUTES and is not stopped (only once tracker sync is installed).
  `/readyz?scope=web` runs only `database` and `migrations`: what a load balancer needs to send
  traffic here, without taking every web process out because a background job failed.

The answers hold counts, ages and ids, never names, notes or amounts: the endpoints are reached
without logging in. `ProbeMiddleware` answers them before host validation and the HTTPS
redirect, so a load balancer probing a container by IP over plain HTTP gets the real answer
instead of a 400 or a 301.
"""

from __future__ import annotations

from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Min
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

WEB_CHECKS = ("database", "migrations")


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True}


def check_migrations() -> dict:
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    unapplied = [f"{migration.app_label}.{migration.name}" for migration, _ in plan]
    return {"ok": not unapplied, "unapplied": unapplied}


def check_queue() -> dict:
    """Rows whose lock is in the past wait for a worker; a lock in the future is a lease held by
    the worker running the task. An expired lease (its worker died) waits again, so a task
    that keeps failing to finish also shows up here."""
    from django_q.models import OrmQ

    now = timezone.now()
    waiting = OrmQ.objects.filter(lock__lte=now)
    oldest = waiting.aggregate(oldest=Min("lock"))["oldest"]
    age = int((now - oldest).total_seconds()) if oldest else 0
    limit = _setting("HEALTH_QUEUE_MAX_AGE_SECONDS", 600)
    return {
        "ok": age <= limit,
        "waiting": waiting.count(),
        "running": OrmQ.objects.filter(lock__gt=now).count(),
        "oldest_waiting_seconds": age,
        "max_seconds": limit,
    }


def check_failed_tasks() -> dict:
    from django_q.models import Task

    since = timezone.now() - timedelta(hours=1)
    failed = Task.objects.filter(success=False, stopped__gte=since).order_by("-stopped")
    count = failed.count()
    limit = _setting("HEALTH_MAX_FAILED_TASKS", 0)
    return {
        "ok": count <= limit,
        "last_hour": count,
        "max": limit,
        "recent": [
            {"id": task.id, "func": task.func, "stopped": task.stopped.isoformat()}
            for task in failed[:5]
        ],
    }


def tracker_connection_model():
    """The tracker sync's connection model, or None where tracker sync is not installed."""
    try:
        model = apps.get_model("timesheets", "TrackerConnection")
    except LookupError:
        return None
    fields = {field.name for field in model._meta.get_fields()}
    return model if {"is_enabled", "last_success_at"} <= fields else None


def check_sync() -> dict | None:
    model = tracker_connection_model()
    if model is None:
        return None
    now = timezone.now()
    limit = _setting("HEALTH_SYNC_MAX_AGE_MINUTES", 180)
    stopped = getattr(getattr(model, "Status", None), "STOPPED", "stopped")
    rows = []
    for conn in model.objects.filter(is_enabled=True).order_by("id"):
        # A connection that never synced counts from when it was added.
        since = conn.last_success_at or getattr(conn, "created_at", None) or now
        age_minutes = int((now - since).total_seconds() // 60)
        status = getattr(conn, "status", "")
        rows.append(
            {
                "id": conn.pk,
                "kind": getattr(conn, "kind", ""),
                "status": status,
                "last_success_at": conn.last_success_at.isoformat()
                if conn.last_success_at
                else None,
                "minutes_since_success": age_minutes,
                "ok": age_minutes <= limit and status != stopped,
            }
        )
    return {
        "ok": all(row["ok"] for row in rows),
        "max_minutes": limit,
        "connections": rows,
    }


CHECKS = {
    "database": check_database,
    "migrations": check_migrations,
    "queue": check_queue,
    "failed_tasks": check_failed_tasks,
    "sync": check_sync,
}


def readiness(*, scope: str = "all") -> dict:
    names = WEB_CHECKS if scope == "web" else tuple(CHECKS)
    results: dict[str, dict] = {}
    for name in names:
        if name != "database" and not results["database"]["ok"]:
            results[name] = {"ok": False, "error": "skipped: database unreachable"}
            continue
        try:
            result = CHECKS[name]()
        except DatabaseError as exc:
            # The class only: a driver's message can name hosts and users.
            result = {"ok": False, "error": type(exc).__name__}
        if result is not None:
            results[name] = result
    ok = all(result["ok"] for result in results.values())
    return {"status": "ok" if ok else "failing", "scope": scope, "checks": results}


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    scope = "web" if request.GET.get("scope") == "web" else "all"
    body = readiness(scope=scope)
    return JsonResponse(body, status=200 if body["status"] == "ok" else 503)


PROBES = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    """Answers the probes before host validation and the HTTPS redirect (see module doc).

    Put it right after RequestIdMiddleware, before SecurityMiddleware and CommonMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = PROBES.get(request.path_info.rstrip("/"))
        if view is not None:
            return view(request)
        return self.get_response(request)
