"""Small helpers for views: the client address written to the audit trail."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, or the address the nearest trusted proxy saw (TRUSTED_PROXY_COUNT)."""
    hops = settings.TRUSTED_PROXY_COUNT
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR")


def device_posture(request: HttpRequest) -> str | None:
    """The device posture signal (DEVICE_POSTURE_HEADER), only when the hop that sent the request is
    trusted to set it (DEVICE_POSTURE_TRUSTED_PROXIES): anyone else could simply write the header."""
    header = settings.DEVICE_POSTURE_HEADER
    if not header:
        return None
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return None
    if not any(peer.version == net.version and peer in net for net in settings.DEVICE_POSTURE_TRUSTED_PROXIES):
        return None
    value = request.headers.get(header, "").strip()
    return value[:200] or None
