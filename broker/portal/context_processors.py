"""What every portal page needs for its navigation: the viewer's powers, their time zone, the section."""

from __future__ import annotations

from broker.portal.helpers import viewer


def portal(request):
    user = getattr(request, "user", None)
    section = request.path.strip("/").split("/", 1)[0]
    zone = {"tz_name": getattr(request, "tz_name", "UTC"), "tz_source": getattr(request, "tz_source", "default")}
    if user is None or not user.is_authenticated:
        return {**zone, "section": section}
    return {"viewer": viewer(request), **zone, "section": section}
