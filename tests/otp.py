"""Helpers for second factors and messages in tests.

A person's authenticator app is a confirmed TOTP device named "phone"; ``code_of`` reads the code it
shows, given the device or its owner.
"""

import re

from django.core import mail
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

LINK = re.compile(r"https?://[^\s\"<>]+/email-link/[^\s\"<>/]+/")


def authenticator(user) -> TOTPDevice:
    """Give the user a confirmed authenticator app."""
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def code_of(device_or_user, *, steps_ahead: int = 0) -> str:
    """The code a TOTP device shows now (or ``steps_ahead`` time steps later).

    Given a user, the device is their confirmed one (there must be exactly one); given a device,
    that device, confirmed or not (enrolment confirms a device with its first code).
    """
    device = (
        device_or_user
        if isinstance(device_or_user, TOTPDevice)
        else TOTPDevice.objects.get(user=device_or_user, confirmed=True)
    )
    code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits, drift=steps_ahead)
    return f"{code:0{device.digits}d}"


def wrong_code_of(device_or_user) -> str:
    """A well-formed code that is not the one the device shows now."""
    code = code_of(device_or_user)
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def messages_to(user) -> list:
    return [m for m in mail.outbox if user.email in m.to]


def link_in(message) -> str:
    """The approval link of a message, as a path (the test client speaks to the site itself)."""
    found = LINK.findall(message.body)
    assert len(set(found)) == 1, found
    return "/" + found[0].split("/", 3)[3]


def html_of(message) -> str:
    (html, mimetype), *_ = message.alternatives
    assert mimetype == "text/html"
    return html


def sign_in_verified(client, user, *, fresh: bool = True) -> TOTPDevice:
    """Sign ``user`` in on the test client with a second factor verified in the session (as the
    step-up page or the admin's sign-in would), and, when ``fresh``, verified just now."""
    from django.utils import timezone
    from django_otp import DEVICE_ID_SESSION_KEY

    from accounts import stepup

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or authenticator(user)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    if fresh:
        session[stepup.SESSION_KEY] = timezone.now().isoformat()
    session.save()
    return device
