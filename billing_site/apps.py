from django.apps import AppConfig
from django.contrib.admin import checks as admin_checks
from django.contrib.admin.apps import SimpleAdminConfig
from django.core import checks
from django.core.checks.registry import registry


class BillingSiteConfig(AppConfig):
    """The project itself as an app: no models; wiring that needs the app registry (task-id
    logging, deploy checks) and the `release` command."""

    name = "billing_site"
    verbose_name = "Site"

    def ready(self) -> None:
        from django_q.signals import post_execute_in_worker, pre_enqueue, pre_execute

        from billing_site import checks  # noqa: F401 - registers the deploy checks
        from billing_site import structured_logging as logs

        pre_enqueue.connect(logs.remember_request_id, dispatch_uid="billing_site.request_id")
        pre_execute.connect(logs.task_started, dispatch_uid="billing_site.task_started")
        post_execute_in_worker.connect(
            logs.task_finished, dispatch_uid="billing_site.task_finished"
        )


class AdminConfig(SimpleAdminConfig):
    """The Django admin without autodiscovery at start-up: `billing_site.urls` discovers the
    admin modules when the URLconf loads (the first request, `check`, the tests), so a
    management command or a task worker never imports the admin, and through it every
    integration's SDK (issue #12: a command started in 2.5 s, 1.4 s of it admin imports).

    The admin's own system checks need the registrations: they discover first."""

    default_site = "django.contrib.admin.sites.AdminSite"

    def ready(self) -> None:
        super().ready()
        # Replace the admin's check (registered by super) with one that discovers first.
        registry.registered_checks.discard(admin_checks.check_admin_app)
        checks.register(check_admin_modules, checks.Tags.admin)


def check_admin_modules(app_configs=None, **kwargs):
    from django.contrib import admin

    admin.autodiscover()
    return admin_checks.check_admin_app(app_configs, **kwargs)
