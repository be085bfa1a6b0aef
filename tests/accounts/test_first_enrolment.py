"""The first second factor: the password again, an enrolment code where the operator requires one,
a message to the person, an audit event, and never a step-up."""

import json
from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core import mail
from django.core.management import call_command
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import enrolment, stepup
from broker.errors import NotAllowed
from broker.models import AuditEvent, Channel
from tests.factories import StageFactory
from tests.otp import code_of, messages_to, sign_in_verified

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"
ENROL = "/account/mfa/enrol/"


def pending_device(user) -> TOTPDevice:
    return TOTPDevice.objects.get(user=user, confirmed=False)


@pytest.fixture
def named_approver(approver):
    """carol, named in an approval stage."""
    StageFactory(users=[approver])
    return approver


def test_a_first_enrolment_asks_for_the_password_before_showing_any_key(client, requester):
    client.force_login(requester)
    page = client.get(ENROL)
    assert page.status_code == 200
    assert b'name="password"' in page.content and b"data:image/svg+xml" not in page.content
    assert not TOTPDevice.objects.filter(user=requester).exists()


def test_a_wrong_password_does_not_authorise_enrolment_and_counts_as_a_failed_sign_in(client, requester):
    client.force_login(requester)
    for _ in range(5):
        response = client.post(ENROL, {"password": "nope"})
        assert response.status_code == 400
    assert b"data:image/svg+xml" not in client.get(ENROL).content
    # Past the sign-in limit even the right password waits.
    response = client.post(ENROL, {"password": PASSWORD})
    assert b"too many failed attempts" in response.content
    assert AuditEvent.objects.filter(action="mfa.enrolment_refused", subject="alice").count() == 5


def test_confirming_the_first_device_does_not_count_as_a_step_up(client, requester, clock):
    client.force_login(requester)
    client.post(ENROL, {"password": PASSWORD})
    client.get(ENROL)
    response = client.post(ENROL, {"code": code_of(pending_device(requester))})
    assert response.status_code == 200  # the backup codes
    assert not stepup.is_recent(response.wsgi_request)
    assert "otp_device_id" not in client.session
    # Nor does it open the way to another device: that needs a step-up now.
    assert client.get(ENROL)["Location"].startswith("/account/mfa/verify/")


def test_the_first_device_is_mailed_to_its_owner_and_audited(
    client, requester, clock, django_capture_on_commit_callbacks
):
    client.force_login(requester)
    client.post(ENROL, {"password": PASSWORD}, REMOTE_ADDR="198.51.100.7")
    client.get(ENROL)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(ENROL, {"code": code_of(pending_device(requester))}, REMOTE_ADDR="198.51.100.7")
    (message,) = messages_to(requester)
    assert message.subject == "[Access broker] A second factor was added to your account"
    assert "an authenticator app" in message.body.lower() and "198.51.100.7" in message.body
    assert "tell your security team" in message.body
    event = AuditEvent.objects.get(action="mfa.device_added", subject="alice")
    assert (event.data["type"], event.data["first"], event.ip) == ("totp", True, "198.51.100.7")
    assert AuditEvent.objects.filter(action="mfa.enrolment_authorised", subject="alice").exists()


# --- Enrolment codes -----------------------------------------------------------------------------------


def test_approvers_need_an_enrolment_code_when_the_operator_requires_it(client, named_approver, settings):
    settings.MFA_ENROLMENT_CODE_REQUIRED = "approvers"
    client.force_login(named_approver)
    assert b'name="enrolment_code"' in client.get(ENROL).content
    response = client.post(ENROL, {"password": PASSWORD, "enrolment_code": "abcd-efgh-jkmn-pqrs"})
    assert response.status_code == 400
    assert b"data:image/svg+xml" not in client.get(ENROL).content
    code = enrolment.enrolment_code_issue(user=named_approver, actor=None, via=Channel.CLI)
    assert client.post(ENROL, {"password": PASSWORD, "enrolment_code": code.upper()}).status_code == 302
    assert b"data:image/svg+xml" in client.get(ENROL).content


def test_people_who_approve_nothing_need_no_code_under_approvers(client, requester, settings):
    settings.MFA_ENROLMENT_CODE_REQUIRED = "approvers"
    client.force_login(requester)
    assert b'name="enrolment_code"' not in client.get(ENROL).content
    assert client.post(ENROL, {"password": PASSWORD}).status_code == 302


@pytest.mark.parametrize(("rule", "needs"), [("all", True), ("off", False)])
def test_the_rule_all_asks_everyone_and_off_asks_nobody(requester, named_approver, settings, rule, needs):
    settings.MFA_ENROLMENT_CODE_REQUIRED = rule
    assert enrolment.enrolment_code_required(requester) is needs
    assert enrolment.enrolment_code_required(named_approver) is needs


def test_staff_count_as_approvers(admin_user, settings):
    settings.MFA_ENROLMENT_CODE_REQUIRED = "approvers"
    assert enrolment.enrolment_code_required(admin_user)


def test_an_enrolment_code_works_once(named_approver, settings):
    settings.MFA_ENROLMENT_CODE_REQUIRED = "approvers"
    code = enrolment.enrolment_code_issue(user=named_approver, actor=None, via=Channel.CLI)
    enrolment.first_enrolment_authorise(user=named_approver, password=PASSWORD, code=code)
    with pytest.raises(NotAllowed) as refused:
        enrolment.first_enrolment_authorise(user=named_approver, password=PASSWORD, code=code)
    assert refused.value.code == "enrolment_code_invalid"


def test_an_enrolment_code_expires(named_approver, settings, clock):
    settings.MFA_ENROLMENT_CODE_REQUIRED = "approvers"
    code = enrolment.enrolment_code_issue(user=named_approver, actor=None, via=Channel.CLI, lifetime=timedelta(hours=1))
    clock.shift(timedelta(hours=1, seconds=1))
    with pytest.raises(NotAllowed):
        enrolment.first_enrolment_authorise(user=named_approver, password=PASSWORD, code=code)


def test_an_enrolment_code_is_someone_elses_no_more(named_approver, requester, settings):
    settings.MFA_ENROLMENT_CODE_REQUIRED = "all"
    code = enrolment.enrolment_code_issue(user=requester, actor=None, via=Channel.CLI)
    with pytest.raises(NotAllowed):
        enrolment.first_enrolment_authorise(user=named_approver, password=PASSWORD, code=code)


def test_issuing_a_new_code_withdraws_the_older_one(named_approver, settings):
    settings.MFA_ENROLMENT_CODE_REQUIRED = "approvers"
    old = enrolment.enrolment_code_issue(user=named_approver, actor=None, via=Channel.CLI)
    new = enrolment.enrolment_code_issue(user=named_approver, actor=None, via=Channel.CLI)
    with pytest.raises(NotAllowed):
        enrolment.first_enrolment_authorise(user=named_approver, password=PASSWORD, code=old)
    enrolment.first_enrolment_authorise(user=named_approver, password=PASSWORD, code=new)


def test_enrolment_codes_are_stored_only_as_a_hash_and_their_issue_is_audited(named_approver, admin_user):
    from accounts.models import EnrolmentCode

    code = enrolment.enrolment_code_issue(user=named_approver, actor=admin_user, via=Channel.PORTAL)
    row = EnrolmentCode.objects.get(user=named_approver)
    assert code.replace("-", "") not in row.digest and len(row.digest) == 64
    event = AuditEvent.objects.get(action="mfa.enrolment_code_issued")
    assert (event.subject, event.actor_name) == ("carol", "root")
    assert code not in json.dumps(event.data)


def test_the_command_prints_only_a_code_that_works(named_approver, settings):
    settings.MFA_ENROLMENT_CODE_REQUIRED = "approvers"
    out = StringIO()
    call_command("mfa_enrolment_code", "carol", "--expires-in", "1h", stdout=out)
    code = out.getvalue().strip()
    assert len(code) == 19 and code.count("-") == 3
    enrolment.first_enrolment_authorise(user=named_approver, password=PASSWORD, code=code)
    assert AuditEvent.objects.get(action="mfa.enrolment_code_issued").channel == Channel.CLI


def test_the_admin_action_shows_each_code_once_and_audits_it(client, admin_user, named_approver, settings):
    settings.MFA_ENROLMENT_CODE_REQUIRED = "approvers"
    sign_in_verified(client, admin_user)
    response = client.post(
        "/admin/auth/user/",
        {"action": "issue_enrolment_code", "_selected_action": [str(named_approver.pk)], "index": "0"},
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    code = response.content.decode().split("<code>")[1].split("</code>")[0]
    enrolment.first_enrolment_authorise(user=named_approver, password=PASSWORD, code=code)
    event = AuditEvent.objects.get(action="mfa.enrolment_code_issued")
    assert (event.actor_name, event.subject, event.channel) == ("root", "carol", Channel.PORTAL)


# --- Passkeys ----------------------------------------------------------------------------------------


BEGIN_REGISTRATION = "/account/passkeys/registration/begin/"
COMPLETE_REGISTRATION = "/account/passkeys/registration/complete/"


def post_json(client, url, data=None):
    return client.post(url, json.dumps(data or {}), content_type="application/json")


def test_a_first_passkey_needs_the_password_too(client, requester):
    client.force_login(requester)
    response = post_json(client, BEGIN_REGISTRATION)
    assert response.status_code == 403
    assert response.json()["code"] == "enrolment_not_authorised"
    client.post(ENROL, {"password": PASSWORD})
    assert post_json(client, BEGIN_REGISTRATION).status_code == 200


def test_a_first_passkey_is_not_a_step_up_and_is_mailed(client, requester, django_capture_on_commit_callbacks):
    from django_otp_webauthn.models import WebAuthnCredential

    client.force_login(requester)
    client.post(ENROL, {"password": PASSWORD})
    assert post_json(client, BEGIN_REGISTRATION).status_code == 200
    created = WebAuthnCredential(
        user=requester, name="laptop", confirmed=True, credential_id=b"c", public_key=b"k", sign_count=0
    )
    mail.outbox.clear()

    def register(*args, **kwargs):
        created.save()
        return created

    with (
        mock.patch("django_otp_webauthn.helpers.WebAuthnHelper.register_complete", side_effect=register),
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = post_json(client, COMPLETE_REGISTRATION, {"id": "x"})
    assert response.status_code == 200, response.content
    assert "otp_device_id" not in client.session
    assert not stepup.is_recent(response.wsgi_request)
    (message,) = messages_to(requester)
    assert "a passkey" in message.body.lower()
    assert AuditEvent.objects.get(action="mfa.device_added").data == {"type": "passkey", "first": True}
