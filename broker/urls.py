"""Every route of the broker: the admin, health, the API, and each app's portal pages."""

from django.contrib import admin
from django.urls import include, path

from broker.portal.home import home

urlpatterns = [
    # admin.site is accounts.admin_site.BrokerAdminSite (settings: accounts.apps.BrokerAdminConfig).
    path("admin/", admin.site.urls),
    # /healthz, /readyz and /metrics.
    path("", include("broker.ops.urls")),
    path("api/", include(("broker.api.urls", "api"), namespace="api")),
    # SCIM 2.0 provisioning from the company's identity provider (bearer token: SCIM_TOKEN).
    path("scim/v2/", include("accounts.scim")),
    path("", home, name="portal-home"),
    path("", include("accounts.urls")),
    path("", include("approvals.urls")),
    path("", include("grants.urls")),
    path("", include("broker.audit.urls")),
]

# Errors under /api/ are JSON; everywhere else Django's pages.
handler400 = "broker.error_views.bad_request"
handler403 = "broker.error_views.permission_denied"
handler404 = "broker.error_views.page_not_found"
handler500 = "broker.error_views.server_error"
