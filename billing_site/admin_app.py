"""The admin's app config, apart from `billing_site.apps`: Django picks an app's config from
its `apps` module only when that module defines exactly one."""

from django.contrib.admin import checks as admin_checks
from django.contrib.admin.apps import SimpleAdminConfig
from django.core import checks
from django.core.checks.registry import registry


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
