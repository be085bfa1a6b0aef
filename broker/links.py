"""Where things live in the portal, for links that leave the broker (emails, API answers).

The portal's URL patterns use these same paths; tests check that they agree.
"""

from __future__ import annotations

from django.conf import settings


def absolute(path: str) -> str:
    return f"{settings.SITE_URL}{path}"


def request_path(request_id: int) -> str:
    return f"/requests/{request_id}/"


def grant_path(grant_id: int) -> str:
    return f"/grants/{grant_id}/"


def inbox_path() -> str:
    return "/approvals/"


def reviews_path() -> str:
    """The eligibility reviews (recertification) waiting for the role owners."""
    return "/reviews/"


def home_path() -> str:
    return "/"


def audit_log_path() -> str:
    return "/audit/"


def mfa_devices_path() -> str:
    return "/account/mfa/"
