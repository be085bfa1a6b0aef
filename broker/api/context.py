"""What every service call from the API records: the channel and the client address."""

from __future__ import annotations

from django.http import HttpRequest

from broker.http import client_ip
from broker.models import Channel


def audit_context(request: HttpRequest) -> dict:
    """The channel and client address every service call from the API records."""
    return {"via": Channel.API, "ip": client_ip(request)}
