"""Portal middleware: a strict Content-Security-Policy, and times in the viewer's time zone."""

from __future__ import annotations

import zoneinfo
from functools import cache

from django.conf import settings
from django.utils import timezone

TZ_SESSION_KEY = "broker_tz"
TZ_COOKIE = "broker_tz"


@cache
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def valid_zone(name: str | None) -> str | None:
    """The name if it is an IANA zone this machine knows (never a path: ZoneInfo reads files)."""
    return name if name and len(name) < 64 and name in known_zones() else None


class ContentSecurityPolicyMiddleware:
    """Everything from our own origin; no inline script or style, no plugins, no framing.

    img-src allows data: URIs because the MFA enrolment page renders its QR code as one.
    """

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response


class TimeZoneMiddleware:
    """Activate the viewer's zone: their saved choice, else their browser's (a cookie set by portal.js), else UTC."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        chosen = valid_zone(request.session.get(TZ_SESSION_KEY)) if hasattr(request, "session") else None
        browser = valid_zone(request.COOKIES.get(TZ_COOKIE))
        name = chosen or browser or settings.TIME_ZONE
        request.tz_name = name
        request.tz_source = "saved" if chosen else "browser" if browser else "default"
        timezone.activate(zoneinfo.ZoneInfo(name))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
