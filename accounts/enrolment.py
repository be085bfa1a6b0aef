"""Second-factor devices: adding an authenticator app, backup codes, removing devices. Audited.

Views call these after checking the step-up (adding a device when one exists, listing, removing).
The very first device has no second factor to step up with, so a signed-in session alone is not
enough (a stolen session could enrol the thief's phone): the person re-enters their password
and, where the operator requires it (MFA_ENROLMENT_CODE_REQUIRED), an enrolment code an
administrator issued (``enrolment_code_issue``; single use, expiring, stored hashed, audited).
That authorises enrolment in this session for ENROLMENT_WINDOW. Every device added is audited and
mailed to its owner (through the outbox), and enrolling is never a verification: confirming the
first device does not count as a step-up.
"""

from __future__ import annotations

import base64
import io
import secrets
from datetime import datetime, timedelta

import segno
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django_otp import devices_for_user
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import login, ratelimit
from accounts.events import record_auth_event
from accounts.models import EnrolmentCode
from broker.catalog import stages_naming
from broker.errors import NotAllowed, NotFound, Throttled
from broker.notify import Message, notify_on_commit

BACKUP_CODE_COUNT = 10
BACKUP_DEVICE_NAME = "backup codes"
# Letters and digits that cannot be mistaken for one another when read off paper.
_BACKUP_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def confirmed_devices(user: AbstractBaseUser) -> list[Device]:
    return list(devices_for_user(user, confirmed=True))


def totp_start(*, user: AbstractBaseUser, device_id: int | None = None) -> TOTPDevice:
    """An unconfirmed authenticator for the user: the one being set up (device_id), or a new one."""
    if device_id:
        device = TOTPDevice.objects.filter(pk=device_id, user=user, confirmed=False).first()
        if device is not None:
            return device
    with transaction.atomic():
        # Half-finished enrolments are never usable; keep only the newest.
        TOTPDevice.objects.filter(user=user, confirmed=False).delete()
        count = TOTPDevice.objects.filter(user=user).count()
        return TOTPDevice.objects.create(
            user=user, name="authenticator app" if not count else f"authenticator app {count + 1}", confirmed=False
        )


def totp_qr_data_uri(device: TOTPDevice) -> str:
    """The otpauth:// URL as an SVG QR code in a data: URI (no external service, no inline script)."""
    buffer = io.BytesIO()
    # A standalone SVG document (with its namespace): browsers render nothing without it in an <img>.
    segno.make(device.config_url, error="m").save(
        buffer, kind="svg", scale=5, border=2, xmldecl=False, dark="#000", light="#fff"
    )
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def totp_secret(device: TOTPDevice) -> str:
    """The key as people type it into an app without a camera (base32, in groups of four)."""
    text = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def totp_confirm(*, user: AbstractBaseUser, device_id: int, code: str, ip: str | None = None) -> TOTPDevice:
    """Confirm the authenticator with one current code; refuse wrong codes with django-otp's throttle."""
    code = "".join((code or "").split())
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(pk=device_id, user=user, confirmed=False).first()
        if device is None:
            raise NotFound("this enrolment has expired; start again")
        allowed, _details = device.verify_is_allowed()
        if not allowed:
            raise Throttled("too many wrong codes; wait a little and try again", retry_after=30)
        if not code.isdigit() or not device.verify_token(code):
            raise NotAllowed("the code does not match; check the time on your phone and try again", code="mfa_invalid")
        first = not confirmed_devices(user)
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        device_added(user=user, ip=ip, data={"device": device.persistent_id, "type": "totp", "first": first})
    return device


def device_added(*, user: AbstractBaseUser, ip: str | None, data: dict) -> None:
    """Audit a new second factor and mail its owner (after the commit), whatever the kind of device."""
    with transaction.atomic():
        event = record_auth_event("mfa.device_added", user=user, ip=ip, data=data)
        notify_on_commit(Message.MFA_DEVICE_ADDED, event.pk)


def has_backup_codes(user: AbstractBaseUser) -> bool:
    return StaticDevice.objects.filter(user=user, confirmed=True, token_set__isnull=False).exists()


def backup_codes_generate(*, user: AbstractBaseUser, ip: str | None = None) -> list[str]:
    """Replace the user's backup codes with ten new single-use ones; returned once, stored as is.

    django-otp's static tokens are compared in clear; they are random, single-use and only valid
    together with the password, like the TOTP keys stored beside them.
    """
    codes = ["".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(10)) for _ in range(BACKUP_CODE_COUNT)]
    with transaction.atomic():
        device, _created = StaticDevice.objects.select_for_update().get_or_create(
            user=user, name=BACKUP_DEVICE_NAME, defaults={"confirmed": True}
        )
        device.token_set.all().delete()
        StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
        record_auth_event(
            "mfa.backup_codes_generated", user=user, ip=ip, data={"device": device.persistent_id, "count": len(codes)}
        )
    return [f"{code[:5]}-{code[5:]}" for code in codes]


def backup_codes_left(user: AbstractBaseUser) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def device_remove(*, user: AbstractBaseUser, persistent_id: str, ip: str | None = None) -> None:
    """Remove one of the user's own devices."""
    for device in devices_for_user(user, confirmed=None):
        if device.persistent_id == persistent_id:
            with transaction.atomic():
                device.delete()
                record_auth_event(
                    "mfa.device_removed", user=user, ip=ip, data={"device": persistent_id, "name": device.name}
                )
            return
    raise NotFound("no such device")


def _kind(device: Device) -> str:
    if isinstance(device, TOTPDevice):
        return _("Authenticator app")
    if isinstance(device, StaticDevice):
        return _("Backup codes")
    if device._meta.app_label == "django_otp_webauthn":
        return _("Passkey")
    return str(device._meta.verbose_name).capitalize()


def device_rows(user: AbstractBaseUser) -> list[dict]:
    """The user's confirmed devices, for display."""
    return [
        {
            "persistent_id": device.persistent_id,
            "name": device.name,
            "kind": _kind(device),
            "backup_codes": isinstance(device, StaticDevice),
            "created_at": getattr(device, "created_at", None),
            "last_used_at": getattr(device, "last_used_at", None),
        }
        for device in confirmed_devices(user)
    ]


def has_passkey(user: AbstractBaseUser) -> bool:
    return any(device._meta.app_label == "django_otp_webauthn" for device in confirmed_devices(user))


# --- Authorising the first enrolment ---------------------------------------------------------------

ENROLMENT_WINDOW = timedelta(minutes=10)
ENROL_AUTHORISED_KEY = "broker_enrol_authorised_at"
_CODE_ALPHABET = _BACKUP_ALPHABET


def enrolment_code_required(user: AbstractBaseUser) -> bool:
    """Whether setting up a first second factor needs an enrolment code (MFA_ENROLMENT_CODE_REQUIRED).

    "approvers": people named in any approval stage (directly or through a group), and staff, who
    reach the admin; "all": everyone; "off": nobody.
    """
    rule = settings.MFA_ENROLMENT_CODE_REQUIRED
    if rule == "all":
        return True
    if rule == "approvers":
        return user.is_staff or stages_naming(user).exists()
    return False


def _code_digest(code: str) -> str:
    normal = "".join(ch for ch in (code or "").lower() if ch.isalnum())
    return salted_hmac("broker.enrolment-code", normal, algorithm="sha256").hexdigest()


def enrolment_code_issue(
    *,
    user: AbstractBaseUser,
    actor: AbstractBaseUser | None,
    via: str,
    ip: str | None = None,
    lifetime: timedelta | None = None,
    now: datetime | None = None,
) -> str:
    """A new single-use enrolment code for ``user`` (returned once, stored hashed); older open ones
    are withdrawn. Audited."""
    now = now or timezone.now()
    lifetime = lifetime or settings.MFA_ENROLMENT_CODE_LIFETIME
    if lifetime <= timedelta(0):
        raise NotAllowed("an enrolment code must live a while", code="invalid")
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
    code = "-".join(raw[i : i + 4] for i in range(0, 16, 4))
    with transaction.atomic():
        withdrawn = EnrolmentCode.objects.filter(user=user, used_at__isnull=True, withdrawn_at__isnull=True).update(
            withdrawn_at=now
        )
        row = EnrolmentCode.objects.create(
            user=user,
            digest=_code_digest(code),
            issued_by=actor if actor is not None and actor.pk else None,
            created_at=now,
            expires_at=now + lifetime,
        )
        record_auth_event(
            "mfa.enrolment_code_issued",
            user=user,
            actor=actor,
            via=via,
            ip=ip,
            data={"code": row.pk, "expires_at": row.expires_at, "withdrawn": withdrawn},
        )
    return code


def _redeem_code(*, user: AbstractBaseUser, code: str, ip: str | None, now: datetime) -> None:
    """Use up the person's enrolment code, inside the caller's transaction; refuse anything else."""
    row = (
        EnrolmentCode.objects.select_for_update()
        .filter(user=user, digest=_code_digest(code), used_at__isnull=True, withdrawn_at__isnull=True)
        .first()
    )
    if row is None or row.expires_at <= now:
        raise NotAllowed(
            "the enrolment code is wrong, expired or used; ask an administrator for a new one",
            code="enrolment_code_invalid",
        )
    row.used_at = now
    row.save(update_fields=["used_at"])
    record_auth_event("mfa.enrolment_code_used", user=user, ip=ip, data={"code": row.pk})


def first_enrolment_authorise(
    *, user: AbstractBaseUser, password: str, code: str = "", ip: str | None = None, now: datetime | None = None
) -> None:
    """Check the re-entered password (and the enrolment code where required) before a first device.

    Wrong passwords count as failed sign-ins (the same lockout); wrong codes count like wrong
    one-time codes. Raises NotAllowed or Throttled; audits the outcome.
    """
    now = now or timezone.now()
    username = user.get_username()
    wait = login.seconds_locked(username, ip)
    if wait:
        raise Throttled(f"too many failed attempts; try again in {wait} s", retry_after=wait)
    if not user.check_password(password or ""):
        login.record_failure(username, ip)
        record_auth_event("mfa.enrolment_refused", user=user, ip=ip, data={"reason": "password"})
        raise NotAllowed("the password is wrong", code="password_invalid")
    if enrolment_code_required(user):
        limit, window = settings.API_OTP_FAILURE_LIMIT, settings.API_RATE_WINDOW.total_seconds()
        wait = ratelimit.retry_after("enrol-code", str(user.pk), limit=limit, window=window)
        if wait is not None:
            raise Throttled(f"too many wrong enrolment codes; try again in {wait} s", retry_after=wait)
        try:
            with transaction.atomic():
                _redeem_code(user=user, code=code, ip=ip, now=now)
        except NotAllowed:
            ratelimit.fail("enrol-code", str(user.pk), limit=limit, window=window)
            record_auth_event("mfa.enrolment_refused", user=user, ip=ip, data={"reason": "enrolment_code"})
            raise
    record_auth_event(
        "mfa.enrolment_authorised", user=user, ip=ip, data={"enrolment_code": enrolment_code_required(user)}
    )


def mark_enrolment_authorised(request: HttpRequest, *, now: datetime | None = None) -> None:
    request.session[ENROL_AUTHORISED_KEY] = (now or timezone.now()).isoformat()


def enrolment_authorised(request: HttpRequest, *, now: datetime | None = None) -> bool:
    """This session re-entered the password (and code) for a first enrolment within ENROLMENT_WINDOW."""
    raw = request.session.get(ENROL_AUTHORISED_KEY)
    at = parse_datetime(raw) if isinstance(raw, str) else None
    if at is None or timezone.is_naive(at):
        return False
    age = (now or timezone.now()) - at
    return timedelta(seconds=-5) <= age <= ENROLMENT_WINDOW


def clear_enrolment_authorised(request: HttpRequest) -> None:
    request.session.pop(ENROL_AUTHORISED_KEY, None)
