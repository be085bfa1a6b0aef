"""Sign-in: Django's login view with failed attempts throttled per username and per client address.

Counting is the one rate limiter (accounts/ratelimit.py), per username and per client address, in a
window of LOGIN_LOCKOUT. Past the limit, a sign-in is refused without checking the password, with
the time left, until the window passes; a successful sign-in clears the username's count. Locking a username out can be abused to
keep its owner out for LOGIN_LOCKOUT: the price of not letting passwords be guessed.
"""

from __future__ import annotations

import logging
import math

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpResponseForbidden
from django.utils.translation import gettext_lazy

from accounts import mfa, ratelimit
from accounts.events import record_auth_event
from broker.errors import BrokerError
from broker.http import client_ip

log = logging.getLogger(__name__)


def _limits(username: str, ip: str | None) -> list[tuple[str, str, int]]:
    limits = [("login-user", username, settings.LOGIN_MAX_FAILURES_PER_USER)]
    if ip:
        limits.append(("login-ip", ip, settings.LOGIN_MAX_FAILURES_PER_IP))
    return limits


def seconds_locked(username: str, ip: str | None) -> int:
    """How long sign-in stays refused for this username or address (0: not locked)."""
    window = settings.LOGIN_LOCKOUT.total_seconds()
    waits = [
        ratelimit.retry_after(scope, ident, limit=limit, window=window) for scope, ident, limit in _limits(username, ip)
    ]
    return max((w for w in waits if w), default=0)


def record_failure(username: str, ip: str | None) -> bool:
    """Count one failure; return True when it locked the username or the address."""
    window = settings.LOGIN_LOCKOUT.total_seconds()
    for scope, ident, limit in _limits(username, ip):
        ratelimit.fail(scope, ident, limit=limit, window=window)
    return seconds_locked(username, ip) > 0


class ThrottleMixin:
    """For AuthenticationForm and its subclasses (the admin's login form too)."""

    throttled_message = gettext_lazy("Too many failed sign-ins. Try again in %(wait)s.")

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request else None
        wait = seconds_locked(username, ip)
        if wait:
            self.throttled = wait
            raise forms.ValidationError(self.throttled_message, code="throttled", params={"wait": _humanize(wait)})
        try:
            return super().clean()
        except forms.ValidationError:
            if username and record_failure(username, ip):
                log.warning("sign-in locked for %s after repeated failures (address %s)", username, ip)
                record_auth_event(
                    "auth.login_throttled",
                    user=None,
                    username=username,
                    ip=ip,
                    data={"lockout_seconds": int(settings.LOGIN_LOCKOUT.total_seconds())},
                )
            raise


class ThrottledAuthenticationForm(ThrottleMixin, AuthenticationForm):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")  # the portal's labels have no trailing colon
        super().__init__(*args, **kwargs)


class OTPAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's sign-in: password and a one-time code (TOTP or backup code) in one form.

    The code is checked like every other code (accounts.mfa.verify_code: any of the person's devices,
    replays refused, django-otp's per-device throttle); the device goes into the session through
    django-otp's login hook, so the session counts as verified (OTPAdminSite).
    """

    otp_token = forms.CharField(
        label=gettext_lazy("One-time code"),
        max_length=32,
        required=False,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
    )

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        if not settings.LOCAL_LOGIN and not user.is_superuser:
            # The break-glass path only: everyone else signs in through the identity provider.
            raise forms.ValidationError(
                gettext_lazy("Local passwords are switched off (LOCAL_LOGIN=off): sign in through single sign-on."),
                code="local_login_off",
            )

    def clean(self):
        cleaned = super().clean()
        user = self.get_user()
        if user is not None:
            try:
                user.otp_device = mfa.verify_code(user=user, code=cleaned.get("otp_token"))
            except BrokerError as exc:
                raise forms.ValidationError(exc.detail, code=exc.code) from None
        return cleaned


class ThrottledOTPAdminAuthenticationForm(ThrottleMixin, OTPAdminAuthenticationForm):
    """A wrong password or a wrong code counts as one failed sign-in."""


def _humanize(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


class LoginView(auth_views.LoginView):
    """Django's login (which cycles the session key), throttled and audited; with LOCAL_LOGIN=off only
    the single sign-on button is offered, and a posted password is refused."""

    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        if not settings.LOCAL_LOGIN:
            return HttpResponseForbidden(
                gettext_lazy("Local passwords are switched off: sign in through single sign-on.")
            )
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        response = super().form_valid(form)
        user = form.get_user()
        ratelimit.reset("login-user", user.get_username())
        record_auth_event("auth.login", user=user, ip=client_ip(self.request))
        return response

    def form_invalid(self, form):
        response = super().form_invalid(form)
        wait = getattr(form, "throttled", 0)
        if wait:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response
