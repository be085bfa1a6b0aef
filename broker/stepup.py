"""Step-up: sensitive pages need a second factor verified within MFA_STEP_UP_WINDOW.

The time of the last verification lives in the session (and the session key is cycled when it
is set). Views either use ``step_up_required`` (send the user to verify, then back), or take a
code in their own form and call ``verify_and_mark``. Services get the time as ``mfa_at`` and
enforce freshness themselves; this module only carries it from the session.
"""

from __future__ import annotations

from datetime import datetime
from functools import wraps
from urllib.parse import urlencode, urlsplit

from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.models import Device

from broker import audit, mfa
from broker.http import client_ip
from broker.models import Channel

SESSION_KEY = "broker_mfa_at"


def verified_at(request: HttpRequest) -> datetime | None:
    raw = request.session.get(SESSION_KEY)
    value = parse_datetime(raw) if isinstance(raw, str) else None
    return value if value is not None and timezone.is_aware(value) else None


def is_recent(request: HttpRequest, now: datetime | None = None) -> bool:
    return mfa.is_fresh(verified_at(request), now)


def mark_verified(request: HttpRequest, device: Device, *, now: datetime | None = None) -> None:
    """Record a successful verification in the session, with a new session key."""
    otp_login(request, device)
    request.session.cycle_key()
    request.session[SESSION_KEY] = (now or timezone.now()).isoformat()


def verify_and_mark(request: HttpRequest, code: str | None, *, via: str = Channel.PORTAL) -> datetime:
    """Check a code for request.user (raises NotAllowed/Throttled), mark the session, return the time.

    ``via`` is the channel written to the audit trail (the email-link page passes ``email``).
    """
    now = timezone.now()
    try:
        device = mfa.verify_code(user=request.user, code=code, now=now)
    except Exception as exc:
        with transaction.atomic():
            audit.record(
                "auth.step_up_failed",
                actor=request.user,
                target=("user", request.user.pk),
                via=via,
                ip=client_ip(request),
                subject=request.user.get_username(),
                data={"reason": getattr(exc, "code", "error")},
            )
        raise
    mark_verified(request, device, now=now)
    with transaction.atomic():
        audit.record(
            "auth.step_up",
            actor=request.user,
            target=("user", request.user.pk),
            via=via,
            ip=client_ip(request),
            subject=request.user.get_username(),
            data={"device": device.persistent_id},
        )
    return now


def step_up_url(request: HttpRequest, next_url: str | None = None) -> str:
    """Where to send the user: verification, or enrolment if they have no device yet."""
    name = "mfa-verify" if user_has_device(request.user) else "mfa-enrol"
    return f"{reverse(name)}?{urlencode({'next': next_url or request.get_full_path()})}"


def _return_to(request: HttpRequest) -> str:
    """Where to come back after verifying: this page for GET, the page that posted otherwise.

    A POST cannot be replayed through a redirect, so the user returns to the form and sends it again.
    """
    if request.method in ("GET", "HEAD"):
        return request.get_full_path()
    referer = request.META.get("HTTP_REFERER", "")
    if referer and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        parts = urlsplit(referer)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return "/"


def step_up_required(view):
    """Decorator for views that need a recent second factor; the user comes back after verifying.

    Users without any device are sent to enrolment first (step_up_url), and back here after it.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_recent(request):
            return redirect(step_up_url(request, _return_to(request)))
        return view(request, *args, **kwargs)

    return wrapper


class StepUpRequiredMixin:
    """The same for class-based views: put it first among the bases."""

    @classmethod
    def as_view(cls, **initkwargs):
        return step_up_required(super().as_view(**initkwargs))
