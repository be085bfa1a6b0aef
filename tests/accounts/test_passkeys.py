"""Passkeys (django-otp-webauthn) as a second factor, held to our step-up rules."""

import json
from datetime import timedelta
from unittest import mock

import pytest
from django_otp_webauthn.models import WebAuthnCredential

from accounts import stepup
from broker.models import AuditEvent
from tests.otp import authenticator, code_of

pytestmark = pytest.mark.django_db

BEGIN_REGISTRATION = "/account/passkeys/registration/begin/"
BEGIN_AUTHENTICATION = "/account/passkeys/authentication/begin/"
COMPLETE_AUTHENTICATION = "/account/passkeys/authentication/complete/"


def post_json(client, url, data=None):
    return client.post(url, json.dumps(data or {}), content_type="application/json")


def passkey(user) -> WebAuthnCredential:
    return WebAuthnCredential.objects.create(
        user=user, name="laptop", confirmed=True, credential_id=b"cred-1", public_key=b"key", sign_count=0
    )


def test_adding_a_passkey_next_to_an_authenticator_needs_a_fresh_step_up(client, approver, clock):
    device = authenticator(approver)
    client.force_login(approver)
    assert post_json(client, BEGIN_REGISTRATION).status_code == 403

    client.post("/account/mfa/verify/", {"code": code_of(device)})
    response = post_json(client, BEGIN_REGISTRATION)
    assert response.status_code == 200
    assert response.json()["challenge"]
    assert response.json()["rp"]["id"] == "localhost"

    clock.shift(timedelta(minutes=5, seconds=1))
    response = post_json(client, BEGIN_REGISTRATION)
    assert response.status_code == 403
    assert response.json()["code"] == "step_up_required"


def test_passkeys_never_replace_the_password(client):
    response = post_json(client, BEGIN_AUTHENTICATION)
    assert response.status_code == 403
    assert response.json()["code"] == "passwordless_login_disabled"


def test_a_passkey_verification_marks_the_session_fresh_with_a_new_key(client, approver, clock):
    device = passkey(approver)
    client.force_login(approver)
    assert post_json(client, BEGIN_AUTHENTICATION).status_code == 200
    old_key = client.session.session_key
    with mock.patch("django_otp_webauthn.helpers.WebAuthnHelper.authenticate_complete", return_value=device):
        response = post_json(client, COMPLETE_AUTHENTICATION, {"id": "x"})
    assert response.status_code == 200, response.content
    assert client.session[stepup.SESSION_KEY] == "2026-03-02T09:00:00+00:00"
    assert client.session.session_key != old_key
    event = AuditEvent.objects.get(action="auth.step_up", actor=approver)
    assert event.data["type"] == "passkey"


def test_someone_elses_passkey_does_not_verify_my_session(client, approver, outsider, clock):
    theirs = passkey(outsider)
    client.force_login(approver)
    post_json(client, BEGIN_AUTHENTICATION)
    with mock.patch("django_otp_webauthn.helpers.WebAuthnHelper.authenticate_complete", return_value=theirs):
        response = post_json(client, COMPLETE_AUTHENTICATION, {"id": "x"})
    assert response.status_code == 403
    assert stepup.SESSION_KEY not in client.session


def test_the_verify_page_offers_a_passkey_with_scripts_from_our_own_origin(client, approver):
    passkey(approver)
    client.force_login(approver)
    page = client.get("/account/mfa/verify/").content.decode()
    assert 'id="passkey-verification-button"' in page
    assert '<script type="module" src="/static/django_otp_webauthn/otp_webauthn_auth.js"' in page
    assert 'type="application/json"' in page  # configuration as data, not an inline script
    assert "http" not in page.split("<script", 1)[1].split(">", 1)[0]


def test_passkeys_are_listed_among_the_devices(client, approver, clock):
    passkey(approver)
    client.force_login(approver)
    session = client.session
    session[stepup.SESSION_KEY] = "2026-03-02T09:00:00+00:00"
    session.save()
    page = client.get("/account/mfa/").content.decode()
    assert "laptop" in page and "Passkey" in page
