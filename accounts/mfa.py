"""Verifying people explicitly: one-time codes checked by django-otp, and freshness of a step-up.

Services that guard sensitive changes take ``mfa_at``, the moment the caller last proved a
second factor (a session's step-up time, or "now" when the API request carried a valid code),
and refuse with ``mfa_required`` when it is missing or older than MFA_STEP_UP_WINDOW. The check
lives in the services so that no channel (portal, API, email link, admin) can forget it.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone
from django_otp import devices_for_user, user_has_device
from django_otp.models import Device

from broker.errors import NotAllowed, Throttled

ENROL_HINT = "enrol an authenticator app at /account/mfa/ (portal → Security) first"


def verify_code(*, user: AbstractBaseUser, code: str | None, now: datetime | None = None) -> Device:
    """Check a TOTP or backup code against the user's confirmed devices.

    The devices are locked while checking, so two requests with the same code cannot both pass;
    django-otp refuses a TOTP code at or before the last accepted time step (replay) and throttles
    failures with an exponential delay per device.
    """
    now = now or timezone.now()
    if not user_has_device(user):
        raise NotAllowed(
            f"a one-time code is required but you have no MFA device: {ENROL_HINT}", code="mfa_not_enrolled"
        )
    # Spaces and hyphens are how codes are shown (backup codes "abcde-fghjk"); letters in any case.
    code = "".join(ch for ch in (code or "") if not ch.isspace() and ch != "-").lower()
    if not code:
        raise NotAllowed("a one-time code from your authenticator (otp) is required", code="mfa_required")
    if len(code) > 32 or not code.isalnum():
        raise NotAllowed("the one-time code is malformed", code="mfa_invalid")
    with transaction.atomic():
        devices = list(devices_for_user(user, for_verify=True))
        allowed = []
        locked_until = None
        for device in devices:
            ok, details = device.verify_is_allowed()
            if ok:
                allowed.append(device)
            elif details and details.get("locked_until"):
                until = details["locked_until"]
                locked_until = until if locked_until is None else min(locked_until, until)
        if not allowed:
            wait = max(1, int((locked_until - now).total_seconds()) + 1) if locked_until else 60
            raise Throttled(f"too many wrong codes; try again in {wait} s", retry_after=wait)
        for device in allowed:
            if device.verify_token(code):
                return device
    raise NotAllowed("the one-time code is wrong, expired or was already used", code="mfa_invalid")


def is_fresh(mfa_at: datetime | None, now: datetime | None = None) -> bool:
    """A verification within the step-up window (and not from the future: a few seconds of skew)."""
    if mfa_at is None:
        return False
    age = (now or timezone.now()) - mfa_at
    return age.total_seconds() >= -5 and age <= settings.MFA_STEP_UP_WINDOW


def ensure_fresh(mfa_at: datetime | None, *, action: str, now: datetime | None = None) -> None:
    """Raise mfa_required unless a second factor was proven within MFA_STEP_UP_WINDOW."""
    if not is_fresh(mfa_at, now):
        raise NotAllowed(f"{action} needs a fresh MFA verification (a one-time code)", code="mfa_required")
