"""Step-up: sensitive pages need a second factor verified within MFA_STEP_UP_WINDOW.

The time of the last verification lives in the session (and the session key is cycled when it
is set). Views either use ``step_up_required`` (send the user to verify, then back), or take a
code in their own form and call ``mfa_at``, the one helper every channel (portal, email link, API)
uses to tell the services when the caller last proved a second factor. Services enforce freshness
themselves; this module only carries the time from the session or checks the code given now.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime
from functools import wraps
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.models import Device

from accounts import mfa, ratelimit
from accounts.authentication import token_of
from accounts.events import record_auth_event
from broker.errors import BrokerError, NotAllowed, Throttled
from broker.http import client_ip
from broker.models import Channel

SESSION_KEY = "broker_mfa_at"
# Set for a session signed in through the company's identity provider (accounts/oidc.py): its
# step-ups go back to the provider when OIDC_STEP_UP is "idp".
IDP_SESSION_KEY = "broker_idp_sign_in"
# The provider confirmed a strong authentication in this session: counts as a verified second factor
# for the admin site too (like django-otp's device in the session).
IDP_VERIFIED_KEY = "broker_idp_verified"


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


def mark_verified_by_idp(request: HttpRequest, *, at: datetime) -> None:
    """A strong, recent authentication at the identity provider (``auth_time`` = ``at``) counts as a step-up."""
    request.session.cycle_key()
    request.session[SESSION_KEY] = at.isoformat()
    request.session[IDP_VERIFIED_KEY] = True


def verified_by_idp(request: HttpRequest) -> bool:
    return bool(request.session.get(IDP_VERIFIED_KEY))


def idp_step_up(request: HttpRequest) -> bool:
    """Whether this session steps up at the identity provider rather than with the broker's own factor."""
    return bool(settings.OIDC_ISSUER and settings.OIDC_STEP_UP == "idp" and request.session.get(IDP_SESSION_KEY))


def idp_step_up_url(next_url: str) -> str:
    return f"{reverse('oidc-login')}?{urlencode({'step_up': '1', 'next': next_url})}"


def _verify(request: HttpRequest, code: str | None, *, via: str, mark: bool) -> datetime:
    """Check a code for request.user now; count and audit failures; mark the session if asked.

    Wrong codes are counted per user in the shared cache on top of django-otp's own per-device
    throttle, whichever channel they come from (429 past API_OTP_FAILURE_LIMIT within API_RATE_WINDOW).
    """
    user = request.user
    ip = client_ip(request)
    ident = str(user.pk)
    limit, window = settings.API_OTP_FAILURE_LIMIT, settings.API_RATE_WINDOW.total_seconds()
    wait = ratelimit.retry_after("otp", ident, limit=limit, window=window)
    if wait is not None:
        raise Throttled(f"too many wrong one-time codes; try again in {wait} s", retry_after=wait)
    now = timezone.now()
    try:
        device = mfa.verify_code(user=user, code=code, now=now)
    except BrokerError as exc:
        record_auth_event(
            "auth.step_up_failed", user=user, ip=ip, via=via, data={"reason": exc.code, "path": request.path[:200]}
        )
        if exc.code == "mfa_invalid":
            wait = ratelimit.fail("otp", ident, limit=limit, window=window)
            if wait is not None:
                raise Throttled(f"too many wrong one-time codes; try again in {wait} s", retry_after=wait) from None
        raise
    if mark:
        mark_verified(request, device, now=now)
    record_auth_event("auth.step_up", user=user, ip=ip, via=via, data={"device": device.persistent_id})
    return now


def verify_and_mark(request: HttpRequest, code: str | None, *, via: str = Channel.PORTAL) -> datetime:
    """Check a code for request.user (raises NotAllowed/Throttled), mark the session, return the time.

    ``via`` is the channel written to the audit trail (the email-link page passes ``email``).
    """
    return _verify(request, code, via=via, mark=True)


def mfa_at(request: HttpRequest, code: str | None, *, via: str) -> datetime | None:
    """When the caller last proved a second factor: the services' ``mfa_at``, for every channel.

    - A token from the identity provider whose ``auth_time`` is recent and whose ``amr``/``acr`` is
      strong (accounts/idp.py) stands for that step-up, like a session that stepped up.
    - A browser session that stepped up within MFA_STEP_UP_WINDOW needs no new code, also when one
      was typed: it may be the code a first attempt of this very form just accepted, and checking it
      again would be a replay. A bearer token never borrows the step-up of a session cookie.
    - Otherwise a code, when given, is checked now; the portal and email-link pages also mark the
      session, so a decision at 3 a.m. is one form. API calls do not upgrade a session.
    - Without a code: None, and a service that needs a fresh factor refuses with ``mfa_required``.
    """
    token = token_of(request)
    from_token = token is not None
    if not from_token and is_recent(request):
        return verified_at(request)
    if from_token and mfa.is_fresh(getattr(token, "mfa_at", None)):
        return token.mfa_at  # the provider's token says the person just authenticated strongly
    if not code:
        return None
    return _verify(request, code, via=via, mark=not from_token and via != Channel.API)


def drop_code_if_fresh(request: HttpRequest, form) -> None:
    """After a code was accepted but the action failed, show the form again without the code field."""
    if form is not None and "code" in form.fields and is_recent(request):
        del form.fields["code"]
        if form.is_bound and "code" in form.errors:
            del form.errors["code"]


@contextlib.contextmanager
def enrol_hint(user) -> Iterator[None]:
    """Turn a service's ``mfa_required`` into ``mfa_not_enrolled`` with the enrolment hint, for
    callers who have no device to take a code from."""
    try:
        yield
    except NotAllowed as exc:
        if exc.code == "mfa_required" and not user_has_device(user):
            raise NotAllowed(
                f"{exc.detail}; you have no MFA device: {mfa.ENROL_HINT}", code="mfa_not_enrolled"
            ) from None
        raise


def step_up_url(request: HttpRequest, next_url: str | None = None) -> str:
    """Where to send the user: the identity provider (sessions signed in there, OIDC_STEP_UP=idp),
    verification, or enrolment if they have no device yet."""
    if idp_step_up(request):
        return idp_step_up_url(next_url or request.get_full_path())
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
