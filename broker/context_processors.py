"""What every portal page needs for its navigation: the viewer's powers and the inbox count."""

from __future__ import annotations

from approvals.selectors import requests_awaiting
from broker.portal import viewer


def portal(request):
    user = getattr(request, "user", None)
    section = request.path.strip("/").split("/", 1)[0]
    if user is None or not user.is_authenticated:
        return {"tz_name": getattr(request, "tz_name", "UTC"), "section": section}

    def inbox_count() -> int:
        if not hasattr(request, "_inbox_count"):
            request._inbox_count = requests_awaiting(user).count()
        return request._inbox_count

    return {
        "viewer": viewer(request),
        "inbox_count": inbox_count,
        "tz_name": getattr(request, "tz_name", "UTC"),
        "tz_source": getattr(request, "tz_source", "default"),
        "section": section,
    }
