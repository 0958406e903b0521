from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from billing_site import health

# Registers every app's admin (billing_site.admin_app.AdminConfig does not, at start-up).
admin.autodiscover()

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    # Also answered by health.ProbeMiddleware before host checks; see billing_site/health.py.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
