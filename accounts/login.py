"""Sign-in: Django's login view with failed attempts throttled per username and per client address.

Counting lives in the cache (shared by all web processes when CACHE_URL points at Redis). Past the
limit, a sign-in is refused without checking the password, with the time left, until the lockout
passes; a successful sign-in clears the username's count. Locking a username out can be abused to
keep its owner out for LOGIN_LOCKOUT: the price of not letting passwords be guessed.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time

from django import forms
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.core.cache import cache
from django.db import transaction

from broker import audit
from broker.http import client_ip
from broker.models import Channel

log = logging.getLogger(__name__)


def _key(kind: str, value: str) -> str:
    digest = hashlib.sha256(value.strip().lower().encode()).hexdigest()[:32]
    return f"login-fail:{kind}:{digest}"


def _limits(username: str, ip: str | None) -> list[tuple[str, int]]:
    limits = [(_key("user", username), settings.LOGIN_MAX_FAILURES_PER_USER)]
    if ip:
        limits.append((_key("ip", ip), settings.LOGIN_MAX_FAILURES_PER_IP))
    return limits


def seconds_locked(username: str, ip: str | None) -> int:
    """How long sign-in stays refused for this username or address (0: not locked)."""
    now = time.time()
    waits = [cache.get(f"{key}:until", 0) - now for key, _ in _limits(username, ip)]
    return max(0, math.ceil(max(waits)))


def record_failure(username: str, ip: str | None) -> bool:
    """Count one failure; return True when it locked the username or the address."""
    lockout = int(settings.LOGIN_LOCKOUT.total_seconds())
    locked = False
    for key, limit in _limits(username, ip):
        cache.add(key, 0, timeout=lockout)
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=lockout)
            count = 1
        if count >= limit:
            cache.set(f"{key}:until", time.time() + lockout, timeout=lockout)
            cache.delete(key)
            locked = True
    return locked


def clear_failures(username: str) -> None:
    key = _key("user", username)
    cache.delete_many([key, f"{key}:until"])


class ThrottleMixin:
    """For AuthenticationForm and its subclasses (the admin's login form too)."""

    throttled_message = "Too many failed sign-ins. Try again in %(wait)s."

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
                with transaction.atomic():
                    audit.record(
                        "auth.login_throttled",
                        actor=None,
                        target=None,
                        via=Channel.PORTAL,
                        ip=ip,
                        subject=username[:150],
                        data={"lockout_seconds": int(settings.LOGIN_LOCKOUT.total_seconds())},
                    )
            raise


class ThrottledAuthenticationForm(ThrottleMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottleMixin, AdminAuthenticationForm):
    pass


def _humanize(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


class LoginView(auth_views.LoginView):
    """Django's login (which cycles the session key), throttled and audited."""

    form_class = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_valid(self, form):
        response = super().form_valid(form)
        user = form.get_user()
        clear_failures(user.get_username())
        with transaction.atomic():
            audit.record(
                "auth.login",
                actor=user,
                target=("user", user.pk),
                via=Channel.PORTAL,
                ip=client_ip(self.request),
                subject=user.get_username(),
            )
        return response

    def form_invalid(self, form):
        response = super().form_invalid(form)
        wait = getattr(form, "throttled", 0)
        if wait:
            response.status_code = 429
            response["Retry-After"] = str(wait)
        return response
