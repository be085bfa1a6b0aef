"""Helpers for second factors and messages in tests."""

import re

from django.core import mail
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

LINK = re.compile(r"https?://[^\s\"<>]+/email-link/[^\s\"<>/]+/")


def authenticator(user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def code_of(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


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
