"""Second-factor devices: adding an authenticator app, backup codes, removing devices. Audited.

Views call these after checking the step-up (adding a device when one exists, listing, removing);
enrolment of the very first device needs only the signed-in session, since there is nothing else
to verify with.
"""

from __future__ import annotations

import base64
import io
import secrets

import segno
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django_otp import devices_for_user
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts.events import record_auth_event
from broker.errors import NotAllowed, NotFound, Throttled

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
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        record_auth_event("mfa.device_added", user=user, ip=ip, data={"device": device.persistent_id, "type": "totp"})
    return device


def has_backup_codes(user: AbstractBaseUser) -> bool:
    return StaticDevice.objects.filter(user=user, confirmed=True, token_set__isnull=False).exists()


def backup_codes_generate(*, user: AbstractBaseUser, ip: str | None = None) -> list[str]:
    """Replace the user's backup codes with ten new single-use ones; returned once, stored as is.

    django-otp's static tokens are compared in clear; they are random, single-use and only valid
    together with the password, like the TOTP keys stored beside them.
    """
    codes = ["".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(10)) for _ in range(BACKUP_CODE_COUNT)]
    with transaction.atomic():
        device, _ = StaticDevice.objects.select_for_update().get_or_create(
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
        return "Authenticator app"
    if isinstance(device, StaticDevice):
        return "Backup codes"
    if device._meta.app_label == "django_otp_webauthn":
        return "Passkey"
    return device._meta.verbose_name.capitalize()


def device_rows(user: AbstractBaseUser) -> list[dict]:
    """The user's confirmed devices, for display."""
    return [
        {
            "persistent_id": device.persistent_id,
            "name": device.name,
            "kind": _kind(device),
            "created_at": getattr(device, "created_at", None),
            "last_used_at": getattr(device, "last_used_at", None),
        }
        for device in confirmed_devices(user)
    ]


def has_passkey(user: AbstractBaseUser) -> bool:
    return any(device._meta.app_label == "django_otp_webauthn" for device in confirmed_devices(user))
