"""The approvals inbox count in every portal page's navigation, counted only if a page shows it."""

from __future__ import annotations

from approvals.selectors import requests_awaiting


def inbox(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def inbox_count() -> int:
        if not hasattr(request, "_inbox_count"):
            request._inbox_count = requests_awaiting(user).count()
        return request._inbox_count

    return {"inbox_count": inbox_count}
