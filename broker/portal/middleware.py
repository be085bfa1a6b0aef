"""Portal middleware: a strict Content-Security-Policy, and times in the viewer's time zone."""

from __future__ import annotations

import zoneinfo
from functools import cache

from django.conf import settings
from django.utils import timezone

TZ_COOKIE = "broker_tz"
# The zone saved on the signed-in person's account, put on the request by accounts.preferences
# (the kernel imports no app; accounts fills this in before TimeZoneMiddleware runs).
SAVED_TIME_ZONE = "saved_time_zone"


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
    """Activate the viewer's zone: the one saved on their account, else their browser's (a cookie
    set by portal.js), else the server's (UTC). ``request.tz_source`` says which, for the footer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        chosen = valid_zone(getattr(request, SAVED_TIME_ZONE, None))
        browser = valid_zone(request.COOKIES.get(TZ_COOKIE))
        name = chosen or browser or settings.TIME_ZONE
        request.tz_name = name
        request.tz_source = "saved" if chosen else "browser" if browser else "default"
        timezone.activate(zoneinfo.ZoneInfo(name))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def use_server_zone(request) -> None:
    """Show this page's times in the server's zone (UTC), whatever the viewer's: for pages that
    strangers may open, such as an approver link before anyone signs in."""
    request.tz_name = settings.TIME_ZONE
    request.tz_source = "server"
    timezone.activate(zoneinfo.ZoneInfo(settings.TIME_ZONE))
