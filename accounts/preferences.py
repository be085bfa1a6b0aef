"""A person's preferences, saved on their account: for now the time zone their times are shown in.

Saved in the database (``Preference``), not in the session or a cookie, so that it follows the
person to every browser and into their emails (notifications/messages.py renders each message in
its recipient's zone). The portal's ``TimeZoneMiddleware`` (broker/portal/middleware.py, kernel:
it imports no app) reads it from ``request.saved_time_zone``, which ``PreferenceMiddleware`` sets
for the signed-in person with one primary-key read.

Changing a display preference is not audited: it grants nothing and hides nothing (times always
carry their zone's name).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from accounts.models import Preference
from broker.errors import Invalid
from broker.portal.middleware import SAVED_TIME_ZONE, valid_zone


def time_zone_of(user: AbstractBaseUser | None) -> str:
    """The zone the person chose ("" when they did not, or chose a zone this machine no longer knows)."""
    if user is None or not user.pk:
        return ""
    saved = Preference.objects.filter(user_id=user.pk).values_list("time_zone", flat=True).first()
    return valid_zone(saved) or ""


def email_time_zones(users) -> dict[int, str]:
    """The zone of each person's emails, by user id: their choice, else the server's (UTC). One query."""
    ids = [u.pk for u in users]
    saved = dict(Preference.objects.filter(user_id__in=ids).values_list("user_id", "time_zone"))
    return {pk: valid_zone(saved.get(pk)) or settings.TIME_ZONE for pk in ids}


def time_zone_set(*, user: AbstractBaseUser, zone: str) -> str:
    """Save the person's zone ("" to follow the browser again); return what was saved."""
    zone = (zone or "").strip()
    if zone and valid_zone(zone) is None:
        raise Invalid(f"unknown time zone {zone!r}", fields={"tz": ["Choose a time zone from the list."]})
    Preference.objects.update_or_create(user_id=user.pk, defaults={"time_zone": zone})
    return zone


class PreferenceMiddleware:
    """Put the signed-in person's saved zone on the request for the portal. After AuthenticationMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            setattr(request, SAVED_TIME_ZONE, time_zone_of(user))
        return self.get_response(request)
