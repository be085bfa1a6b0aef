"""Step-up: sensitive pages need a second factor verified within MFA_STEP_UP_WINDOW.

The time of the last verification lives in the session (and the session key is cycled when it
is set). Views either use ``step_up_required`` (send the user to verify, then back), or take a
code in their own form and call ``verify_and_mark``. Services get the time as ``mfa_at`` and
enforce freshness themselves; this module only carries it from the session.
"""

from __future__ import annotations

from datetime import datetime
from functools import wraps
from urllib.parse import urlencode

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
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


def verify_and_mark(request: HttpRequest, code: str | None) -> datetime:
    """Check a code for request.user (raises NotAllowed/Throttled), mark the session, return the time."""
    from django.db import transaction

    now = timezone.now()
    try:
        device = mfa.verify_code(user=request.user, code=code, now=now)
    except Exception as exc:
        with transaction.atomic():
            audit.record(
                "auth.step_up_failed",
                actor=request.user,
                target=("user", request.user.pk),
                via=Channel.PORTAL,
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
            via=Channel.PORTAL,
            ip=client_ip(request),
            subject=request.user.get_username(),
            data={"device": device.persistent_id},
        )
    return now


def step_up_url(request: HttpRequest, next_url: str | None = None) -> str:
    """Where to send the user: verification, or enrolment if they have no device yet."""
    name = "mfa-verify" if user_has_device(request.user) else "mfa-enrol"
    return f"{reverse(name)}?{urlencode({'next': next_url or request.get_full_path()})}"


def step_up_required(view):
    """Decorator for views that need a recent second factor; GET comes back after verifying."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_recent(request):
            return redirect(step_up_url(request))
        return view(request, *args, **kwargs)

    return wrapper
