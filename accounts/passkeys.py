"""Passkeys (WebAuthn) as a second factor, through django-otp-webauthn, wired to our step-up.

The package's views do the WebAuthn ceremonies (challenges kept in the session, popped before
use, so an assertion can never be replayed). We subclass them to keep our rules:

- registering a passkey needs a fresh step-up when the user already has a device (the package
  only asks that the session was verified once, at any time), and a first passkey needs the
  password again (and an enrolment code where required), like a first authenticator app; the
  package's habit of marking the session verified on registration is undone (not a step-up);
- a successful passkey verification marks the session exactly as a code does (stepup.mark_verified:
  verification time, new session key) and is audited;
- passwordless sign-in stays off (OTP_WEBAUTHN_ALLOW_PASSWORDLESS_LOGIN = False).

The scripts are the package's own static files (no CDN, no inline script: the configuration is a
``<script type="application/json">`` data block), so they work under a strict Content-Security-Policy.
"""

from __future__ import annotations

from django.urls import path
from django.views.i18n import JavaScriptCatalog
from django_otp import DEVICE_ID_SESSION_KEY, user_has_device
from django_otp_webauthn import exceptions, views

from accounts import enrolment, stepup
from accounts.events import record_auth_event
from broker.http import client_ip


class StepUpNeeded(exceptions.OTPWebAuthnApiError):
    status_code = 403
    default_detail = "Verify it's you again (a one-time code) before adding a passkey."
    default_code = "step_up_required"


class EnrolmentNotAuthorised(exceptions.OTPWebAuthnApiError):
    status_code = 403
    default_detail = "Enter your password again (at /account/mfa/enrol/) before setting up your first second factor."
    default_code = "enrolment_not_authorised"


class _FreshStepUpToRegister:
    def check_can_register(self):
        if user_has_device(self.request.user):
            if not stepup.is_recent(self.request):
                raise StepUpNeeded()
        elif not enrolment.enrolment_authorised(self.request):
            # A first passkey is a first second factor: the same password (and code) as an app.
            raise EnrolmentNotAuthorised()


class BeginRegistration(_FreshStepUpToRegister, views.BeginCredentialRegistrationView):
    pass


class CompleteRegistration(_FreshStepUpToRegister, views.CompleteCredentialRegistrationView):
    def post(self, *args, **kwargs):
        request = self.request
        first = not user_has_device(request.user)
        was_verified = request.user.is_verified()
        response = super().post(*args, **kwargs)
        if response.status_code == 200:
            if not was_verified:
                # The package marks the session verified when a passkey is registered; setting a
                # device up proves nothing about who holds the session, so it does not count.
                request.session.pop(DEVICE_ID_SESSION_KEY, None)
            if first:
                enrolment.clear_enrolment_authorised(request)
            enrolment.device_added(user=request.user, ip=client_ip(request), data={"type": "passkey", "first": first})
        return response


class CompleteAuthentication(views.CompleteCredentialAuthenticationView):
    def complete_auth(self, device):
        request = self.request
        if not request.user.is_authenticated or device.user_id != request.user.pk:
            raise exceptions.PasswordlessLoginDisabled()
        stepup.mark_verified(request, device)
        record_auth_event(
            "auth.step_up",
            user=request.user,
            ip=client_ip(request),
            data={"device": device.persistent_id, "type": "passkey"},
        )


# Same names as django_otp_webauthn.urls, so that its template tags find them.
urlpatterns = [
    path("registration/begin/", BeginRegistration.as_view(), name="credential-registration-begin"),
    path("registration/complete/", CompleteRegistration.as_view(), name="credential-registration-complete"),
    path(
        "authentication/begin/",
        views.BeginCredentialAuthenticationView.as_view(),
        name="credential-authentication-begin",
    ),
    path("authentication/complete/", CompleteAuthentication.as_view(), name="credential-authentication-complete"),
    path("jsi18n/", JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]), name="js-i18n-catalog"),
]
