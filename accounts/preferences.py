"""A person's preferences, saved on their account: the time zone their times are shown in and
the language they read the broker in.

Saved in the database (``Preference``), not in the session or a cookie, so that it follows the
person to every browser and into their emails (notifications/messages.py renders each message in
its recipient's zone). The portal's ``TimeZoneMiddleware`` (broker/portal/middleware.py, kernel:
it imports no app) reads it from ``request.saved_time_zone``, which ``PreferenceMiddleware`` sets
for the signed-in person with one primary-key read; the same middleware activates their saved
language (else LocaleMiddleware's choice from the browser's Accept-Language stays). Emails are
rendered in each recipient's language (``email_languages``), whoever caused them.

Changing a display preference is not audited: it grants nothing and hides nothing (times always
carry their zone's name).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import translation
from django.utils.translation import gettext as _

from accounts.models import Preference
from broker.errors import Invalid
from broker.portal.middleware import SAVED_TIME_ZONE, valid_zone


def valid_language(code: str | None) -> str | None:
    """The code if it is one of the broker's languages (settings.LANGUAGES)."""
    return code if code and code in dict(settings.LANGUAGES) else None


def _saved(user: AbstractBaseUser | None) -> tuple[str, str]:
    if user is None or not user.pk:
        return "", ""
    row = Preference.objects.filter(user_id=user.pk).values_list("time_zone", "language").first()
    return (valid_zone(row[0]) or "", valid_language(row[1]) or "") if row else ("", "")


def time_zone_of(user: AbstractBaseUser | None) -> str:
    """The zone the person chose ("" when they did not, or chose a zone this machine no longer knows)."""
    return _saved(user)[0]


def language_of(user: AbstractBaseUser | None) -> str:
    """The language the person chose ("" when they did not: the browser's is used)."""
    return _saved(user)[1]


def email_time_zones(users) -> dict[int, str]:
    """The zone of each person's emails, by user id: their choice, else the server's (UTC). One query."""
    ids = [u.pk for u in users]
    saved = dict(Preference.objects.filter(user_id__in=ids).values_list("user_id", "time_zone"))
    return {pk: valid_zone(saved.get(pk)) or settings.TIME_ZONE for pk in ids}


def email_languages(users) -> dict[int, str]:
    """The language of each person's emails, by user id: their choice, else the default. One query."""
    ids = [u.pk for u in users]
    saved = dict(Preference.objects.filter(user_id__in=ids).values_list("user_id", "language"))
    return {pk: valid_language(saved.get(pk)) or settings.LANGUAGE_CODE for pk in ids}


def time_zone_set(*, user: AbstractBaseUser, zone: str) -> str:
    """Save the person's zone ("" to follow the browser again); return what was saved."""
    zone = (zone or "").strip()
    if zone and valid_zone(zone) is None:
        raise Invalid(f"unknown time zone {zone!r}", fields={"tz": [_("Choose a time zone from the list.")]})
    Preference.objects.update_or_create(user_id=user.pk, defaults={"time_zone": zone})
    return zone


def language_set(*, user: AbstractBaseUser, language: str) -> str:
    """Save the person's language ("" to follow the browser again); return what was saved."""
    language = (language or "").strip()
    if language and valid_language(language) is None:
        raise Invalid(f"unknown language {language!r}", fields={"language": [_("Choose a language from the list.")]})
    Preference.objects.update_or_create(user_id=user.pk, defaults={"language": language})
    return language


API_PREFIX = "/api/"


class PreferenceMiddleware:
    """Put the signed-in person's saved zone on the request for the portal, and switch to their saved
    language. After AuthenticationMiddleware and LocaleMiddleware (whose browser choice it overrides)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(API_PREFIX):
            # The API answers in English whatever the Accept-Language: its messages are part of
            # what scripts read (the error codes are English and stable in any case).
            translation.activate(settings.LANGUAGE_CODE)
            request.LANGUAGE_CODE = settings.LANGUAGE_CODE
            return self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            zone, language = _saved(user)
            setattr(request, SAVED_TIME_ZONE, zone)
            if language:
                translation.activate(language)
                request.LANGUAGE_CODE = language
        return self.get_response(request)
