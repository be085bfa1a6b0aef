"""Plumbing shared by every API view: errors, parsers, strict input, filters, pagination, schema.

Kept free of Django REST framework's views: REST_FRAMEWORK's settings name modules of this package,
and DRF imports them while its own views are still loading.
"""

from __future__ import annotations

from django.http import HttpRequest

from broker.http import client_ip
from broker.models import Channel


def audit_context(request: HttpRequest) -> dict:
    """The channel and client address every service call from the API records."""
    return {"via": Channel.API, "ip": client_ip(request)}
