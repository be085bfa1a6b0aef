"""Sign-in, password reset, second factors, step-up, passkeys, the account page and personal API tokens."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from accounts import oidc, passkeys, recovery, views
from accounts.login import LoginView

urlpatterns = [
    path("account/login/", LoginView.as_view(), name="login"),
    path("account/oidc/login/", oidc.oidc_login, name="oidc-login"),
    path("account/oidc/callback/", oidc.oidc_callback, name="oidc-callback"),
    path("account/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/mfa/", views.mfa_devices, name="mfa-devices"),
    path("account/mfa/enrol/", views.mfa_enrol, name="mfa-enrol"),
    path("account/mfa/verify/", views.mfa_verify, name="mfa-verify"),
    path("account/mfa/backup-codes/", views.mfa_backup_codes, name="mfa-backup-codes"),
    path("account/mfa/remove/", views.mfa_device_remove, name="mfa-device-remove"),
    path("account/passkeys/", include((passkeys.urlpatterns, "otp_webauthn"))),
    path("", include(recovery.urlpatterns)),
    path("account/", views.account, name="portal-account"),
    path("account/tokens/", views.tokens, name="portal-tokens"),
    path("account/tokens/<int:pk>/revoke/", views.token_revoke_view, name="portal-token-revoke"),
]
