"""Adding an authenticator (QR code, one code to confirm), backup codes shown once, listing and removing."""

import base64
import re
from datetime import timedelta

import pytest
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import mfa, stepup
from broker.errors import NotAllowed
from broker.models import AuditEvent
from tests.otp import authenticator, code_of, wrong_code_of

pytestmark = pytest.mark.django_db


def pending_device(user) -> TOTPDevice:
    return TOTPDevice.objects.get(user=user, confirmed=False)


PASSWORD = "correct horse battery staple"  # the factories' password


def enrolling(client, user) -> None:
    """Sign in and re-enter the password, as a first enrolment asks."""
    client.force_login(user)
    response = client.post("/account/mfa/enrol/", {"password": PASSWORD})
    assert response.status_code == 302, response.content


def fresh_session(client):
    session = client.session
    session[stepup.SESSION_KEY] = "2026-03-02T09:00:00+00:00"
    session.save()


def test_enrolment_page_shows_a_server_rendered_qr_code_and_the_key(client, requester, clock):
    enrolling(client, requester)
    response = client.get("/account/mfa/enrol/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    (data_uri,) = re.findall(r'src="(data:image/svg\+xml;base64,[^"]+)"', page)
    svg = base64.b64decode(data_uri.split(",", 1)[1]).decode()
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"') and "<script" not in svg
    device = pending_device(requester)
    key = base64.b32encode(device.bin_key).decode().rstrip("=")
    assert key[:4] in page
    assert "otpauth://totp/Access%20broker" in device.config_url


def test_reloading_the_page_keeps_the_same_key(client, requester):
    enrolling(client, requester)
    client.get("/account/mfa/enrol/")
    first = pending_device(requester).key
    client.get("/account/mfa/enrol/")
    assert pending_device(requester).key == first


def test_one_code_confirms_the_device_and_ten_backup_codes_are_shown_once(client, requester, clock):
    enrolling(client, requester)
    client.get("/account/mfa/enrol/")
    device = pending_device(requester)
    response = client.post("/account/mfa/enrol/", {"code": code_of(device)})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    codes = re.findall(r"<code>([a-z0-9]{5}-[a-z0-9]{5})</code>", response.content.decode())
    assert len(set(codes)) == 10
    device.refresh_from_db()
    assert device.confirmed
    # Setting a device up is not a verification: the session is not stepped up, nor OTP-verified.
    assert stepup.SESSION_KEY not in client.session
    assert "otp_device_id" not in client.session
    assert AuditEvent.objects.filter(action="mfa.device_added", actor=requester).exists()
    assert AuditEvent.objects.filter(action="mfa.backup_codes_generated", actor=requester).exists()

    # Each backup code works once, typed as shown or without the hyphen.
    assert isinstance(mfa.verify_code(user=requester, code=codes[0]), StaticDevice)
    assert isinstance(mfa.verify_code(user=requester, code=codes[1].replace("-", "").upper()), StaticDevice)
    with pytest.raises(NotAllowed):
        mfa.verify_code(user=requester, code=codes[0])


def test_a_wrong_code_does_not_confirm(client, requester, clock):
    enrolling(client, requester)
    client.get("/account/mfa/enrol/")
    device = pending_device(requester)
    wrong = wrong_code_of(device)
    response = client.post("/account/mfa/enrol/", {"code": wrong})
    assert b"does not match" in response.content
    assert not TOTPDevice.objects.filter(user=requester, confirmed=True).exists()


def test_an_unconfirmed_device_never_verifies(client, requester, clock):
    enrolling(client, requester)
    client.get("/account/mfa/enrol/")
    with pytest.raises(NotAllowed) as info:
        mfa.verify_code(user=requester, code=code_of(pending_device(requester)))
    assert info.value.code == "mfa_not_enrolled"


def test_a_user_without_a_device_is_sent_to_enrolment_and_back_where_they_were(client, requester, clock):
    client.force_login(requester)
    response = client.get("/account/mfa/")  # a page behind step_up_required
    assert response["Location"] == "/account/mfa/enrol/?next=%2Faccount%2Fmfa%2F"
    asked = client.get(response["Location"])
    assert b"enter your password again" in asked.content
    response = client.post(response["Location"], {"password": PASSWORD})
    assert response["Location"] == "/account/mfa/enrol/?next=%2Faccount%2Fmfa%2F"
    client.get(response["Location"])
    device = pending_device(requester)
    response = client.post("/account/mfa/enrol/", {"code": code_of(device), "next": "/account/mfa/"})
    assert b'href="/account/mfa/"' in response.content  # the backup-codes page continues to next
    # Enrolling was not a step-up: the page asks for a code (the next one the app shows).
    assert client.get("/account/mfa/")["Location"].startswith("/account/mfa/verify/")
    clock.shift(timedelta(seconds=30))
    client.post("/account/mfa/verify/", {"code": code_of(device)})
    assert client.get("/account/mfa/").status_code == 200


def test_verify_page_sends_a_user_without_device_to_enrolment(client, requester):
    client.force_login(requester)
    response = client.get("/account/mfa/verify/?next=/grants/3/")
    assert response["Location"] == "/account/mfa/enrol/?next=%2Fgrants%2F3%2F"


def test_adding_a_second_device_needs_a_fresh_step_up(client, requester, clock):
    authenticator(requester)
    client.force_login(requester)
    response = client.get("/account/mfa/enrol/")
    assert response["Location"].startswith("/account/mfa/verify/?next=")
    fresh_session(client)
    assert client.get("/account/mfa/enrol/").status_code == 200


def test_devices_are_listed_and_removed_only_after_a_fresh_verification(client, requester, clock):
    device = authenticator(requester)
    client.force_login(requester)
    assert client.get("/account/mfa/")["Location"].startswith("/account/mfa/verify/")
    response = client.post("/account/mfa/remove/", {"device": device.persistent_id}, HTTP_REFERER="/account/mfa/")
    assert response["Location"] == "/account/mfa/verify/?next=%2Faccount%2Fmfa%2F"
    assert TOTPDevice.objects.filter(pk=device.pk).exists()

    client.post("/account/mfa/verify/", {"code": code_of(device)})
    page = client.get("/account/mfa/").content.decode()
    assert "phone" in page and "Authenticator app" in page
    client.post("/account/mfa/remove/", {"device": device.persistent_id})
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    assert AuditEvent.objects.filter(action="mfa.device_removed", actor=requester).exists()


def test_nobody_removes_someone_elses_device(client, requester, approver, clock):
    theirs = authenticator(approver)
    authenticator(requester)
    client.force_login(requester)
    fresh_session(client)
    client.post("/account/mfa/remove/", {"device": theirs.persistent_id})
    assert TOTPDevice.objects.filter(pk=theirs.pk).exists()


def test_new_backup_codes_replace_the_old_ones(client, requester, clock):
    authenticator(requester)
    client.force_login(requester)
    fresh_session(client)
    first = re.findall(r"<code>([a-z0-9-]{11})</code>", client.post("/account/mfa/backup-codes/").content.decode())
    second = re.findall(r"<code>([a-z0-9-]{11})</code>", client.post("/account/mfa/backup-codes/").content.decode())
    assert len(first) == len(second) == 10
    with pytest.raises(NotAllowed):
        mfa.verify_code(user=requester, code=first[0])
    clock.shift(timedelta(seconds=2))  # past the throttle delay of that failure
    assert mfa.verify_code(user=requester, code=second[0])


def test_a_replayed_code_is_refused_on_the_verify_page(client, approver, clock):
    device = authenticator(approver)
    client.force_login(approver)
    code = code_of(device)
    client.post("/account/mfa/verify/", {"code": code})
    clock.shift(timedelta(seconds=5))
    response = client.post("/account/mfa/verify/", {"code": code})
    assert b"already used" in response.content


def test_wrong_codes_are_throttled_on_the_verify_page(client, approver, clock):
    device = authenticator(approver)
    client.force_login(approver)
    client.post("/account/mfa/verify/", {"code": wrong_code_of(device)})
    response = client.post("/account/mfa/verify/", {"code": code_of(device)})
    assert b"too many wrong codes" in response.content


def test_code_for_the_next_time_step_is_accepted_once(approver, clock):
    device = authenticator(approver)
    assert mfa.verify_code(user=approver, code=code_of(device, steps_ahead=1)) == device
