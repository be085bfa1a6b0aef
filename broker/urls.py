from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_GET

from approvals import email_views
from broker import account_views, passkeys
from broker.login import LoginView, ThrottledAdminAuthenticationForm

# The admin's own sign-in page counts failures like ours.
admin.site.login_form = ThrottledAdminAuthenticationForm


@require_GET
def healthz(request):
    return HttpResponse("ok\n", content_type="text/plain")


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/", include(("broker.api_urls", "api"), namespace="api")),
    path("account/login/", LoginView.as_view(), name="login"),
    path("account/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/mfa/", account_views.mfa_devices, name="mfa-devices"),
    path("account/mfa/enrol/", account_views.mfa_enrol, name="mfa-enrol"),
    path("account/mfa/verify/", account_views.mfa_verify, name="mfa-verify"),
    path("account/mfa/backup-codes/", account_views.mfa_backup_codes, name="mfa-backup-codes"),
    path("account/mfa/remove/", account_views.mfa_device_remove, name="mfa-device-remove"),
    path("account/passkeys/", include((passkeys.urlpatterns, "otp_webauthn"))),
    path("email-link/<str:token>/", email_views.approval_link, name="approval-link"),
    # The web portal (last: its patterns start at the root).
    path("", include("broker.portal_urls")),
]

# Errors under /api/ are JSON; everywhere else Django's pages.
handler400 = "broker.error_views.bad_request"
handler403 = "broker.error_views.permission_denied"
handler404 = "broker.error_views.page_not_found"
handler500 = "broker.error_views.server_error"
