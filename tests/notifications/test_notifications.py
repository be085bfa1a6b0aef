"""Every notification: who gets it, what it says, why, where it links, and that it goes out once."""

from datetime import timedelta
from unittest import mock

import pytest
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from approvals import services as approvals
from broker.catalog import SECURITY_GROUP
from broker.models import AuditEvent, Channel
from broker.tasks import verify_audit
from grants import services as grants
from grants import sweeper as grant_sweeper
from grants.connectors import REGISTRY, ConnectorError
from grants.connectors.django_group import DjangoGroupConnector
from notifications import services, tasks
from notifications.messages import _when
from notifications.models import Notification
from tests.factories import EligibilityFactory, GroupFactory, RoleFactory, UserFactory
from tests.otp import html_of, messages_to, sign_in_verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent(django_capture_on_commit_callbacks):
    """Run the block with on-commit callbacks executed (tasks are eager): its messages are sent."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def security(db):
    frank = UserFactory(username="frank")
    frank.groups.add(GroupFactory(name=SECURITY_GROUP))
    return frank


def only(messages):
    assert len(messages) == 1, [m.subject for m in messages]
    return messages[0]


def test_decision_needed_tells_the_approver_the_facts_why_and_where(role, request_role, approver, sent, clock):
    with sent():
        req = request_role(role, ticket="CHG-1")
    message = only(messages_to(approver))
    assert message.subject == f"[Access broker] Decision needed: alice asks for db-admin (request #{req.pk})"
    for part in (message.body, html_of(message)):
        assert "alice" in part and "db-admin" in part and "1 h" in part and "incident INC-1" in part
        assert "CHG-1" in part
        assert "because you are an approver of stage 1 for the role db-admin" in part
        assert f"http://127.0.0.1:8000/requests/{req.pk}/" in part
        assert "/email-link/" in part
    assert message.to == ["carol@example.com"]
    assert message.extra_headers["Auto-Submitted"] == "auto-generated"


def test_the_next_stage_is_asked_only_when_the_first_has_passed(make_role, request_role, approver, approver2, sent):
    role = make_role(stages=[[approver], [approver2]], slug="two-stages")
    with sent():
        req = request_role(role)
    assert len(messages_to(approver)) == 1 and messages_to(approver2) == []
    with sent():
        approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    message = only(messages_to(approver2))
    assert "stage 2" in message.body
    assert len(messages_to(approver)) == 1


def test_auto_approved_requests_ask_nobody(make_role, request_role, sent):
    with sent():
        request_role(make_role(auto_approve=True))
    assert not [m for m in mail.outbox if "Decision needed" in m.subject]


def test_reminder_goes_to_waiting_approvers_once_half_the_ttl_has_passed(role, request_role, approver, sent, clock):
    with sent():
        req = request_role(role)
    clock.shift(timedelta(hours=11, minutes=59))
    assert services.scan() == {"reminders": 0, "expiry_warnings": 0}
    clock.shift(timedelta(minutes=1))
    assert services.scan()["reminders"] == 1
    assert services.scan()["reminders"] == 0
    reminder = messages_to(approver)[-1]
    assert reminder.subject.startswith("[Access broker] Reminder: alice is still waiting for db-admin")
    assert "Half of the time to decide has passed" in reminder.body
    assert "/email-link/" in reminder.body
    assert len(messages_to(approver)) == 2
    assert req.email_links.count() == 2


def test_no_reminder_after_a_decision(role, request_role, approver, sent, clock):
    req = request_role(role)
    approvals.request_deny(request_id=req.pk, approver=approver, comment="no", via=Channel.PORTAL)
    clock.shift(timedelta(hours=13))
    assert services.scan()["reminders"] == 0


def test_approved_tells_the_requester_when_the_access_starts_and_ends(role, request_role, requester, approver, sent,
                                                                     clock):  # fmt: skip
    req = request_role(role)
    with sent():
        approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL, comment="ok")
    message = only([m for m in messages_to(requester) if "Approved" in m.subject])
    assert message.subject == f"[Access broker] Approved: db-admin (request #{req.pk})"
    assert "Access from: 2026-03-02 09:00 UTC" in message.body
    assert "Access until: 2026-03-02 10:00 UTC" in message.body
    assert "Approved by: carol" in message.body
    assert "because you requested db-admin" in message.body
    assert f"/requests/{req.pk}/" in html_of(message)


def test_denied_tells_the_requester_the_comment(role, request_role, requester, approver, sent):
    req = request_role(role)
    with sent():
        approvals.request_deny(request_id=req.pk, approver=approver, comment="use the read replica", via=Channel.PORTAL)
    message = only(messages_to(requester))
    assert message.subject == f"[Access broker] Denied: db-admin (request #{req.pk})"
    assert "Comment: use the read replica" in message.body
    assert "use the read replica" in html_of(message)


def test_expired_unanswered_tells_the_requester(role, request_role, requester, sent, clock):
    req = request_role(role)
    clock.shift(timedelta(hours=24))
    with sent():
        approvals.requests_sweep()
    message = only(messages_to(requester))
    assert message.subject == f"[Access broker] Expired unanswered: db-admin (request #{req.pk})"
    assert "nobody decided in time" in message.body


def test_grant_active_and_ended_tell_the_holder_with_a_link_to_the_grant(active_grant, requester, sent, clock):
    with sent():
        grant = active_grant()
    active = only([m for m in messages_to(requester) if "Active" in m.subject])
    assert active.subject == "[Access broker] Active: db-admin until 2026-03-02 10:00 UTC"
    assert f"http://127.0.0.1:8000/grants/{grant.pk}/" in active.body
    assert "because you hold (or held) db-admin through grant" in active.body

    clock.shift(timedelta(hours=1))
    with sent():
        grant_sweeper.sweep()
    ended = only([m for m in messages_to(requester) if "Expired" in m.subject])
    assert ended.subject == f"[Access broker] Expired: db-admin (grant #{grant.pk})"
    assert "has ended (its time was up)" in ended.body
    assert f"/grants/{grant.pk}/" in html_of(ended)


def test_relinquishing_says_so_in_the_ended_message(active_grant, requester, sent):
    grant = active_grant()
    with sent():
        grants.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.PORTAL)
    message = only(messages_to(requester))
    assert message.subject == f"[Access broker] Relinquished: db-admin (grant #{grant.pk})"
    assert "(you gave it back early)" in message.body


def test_expiring_soon_warns_once_at_the_lead_for_long_enough_grants(active_grant, requester, clock):
    grant = active_grant(duration=timedelta(hours=1))
    clock.shift(timedelta(minutes=44))
    assert services.scan()["expiry_warnings"] == 0
    clock.shift(timedelta(minutes=1))
    assert services.scan()["expiry_warnings"] == 1
    assert services.scan()["expiry_warnings"] == 0
    message = only([m for m in messages_to(requester) if "Ends in" in m.subject])
    assert message.subject == "[Access broker] Ends in 15 min: db-admin"
    assert f"/grants/{grant.pk}/" in message.body


def test_grants_shorter_than_twice_the_lead_get_no_warning(active_grant, clock):
    active_grant(duration=timedelta(minutes=30))
    clock.shift(timedelta(minutes=20))
    assert services.scan()["expiry_warnings"] == 0


@override_settings(NOTIFY_EXPIRY_LEAD=timedelta(minutes=5))
def test_the_expiry_lead_is_configurable(active_grant, requester, clock):
    active_grant(duration=timedelta(minutes=30))
    clock.shift(timedelta(minutes=25))
    assert services.scan()["expiry_warnings"] == 1
    assert "Ends in 5 min" in messages_to(requester)[-1].subject


def test_an_extended_grant_is_warned_again_before_its_new_end(active_grant, requester, approver, clock, sent):
    grant = active_grant(duration=timedelta(hours=1))
    clock.shift(timedelta(minutes=46))
    services.scan()
    req = approvals.request_create(
        extends_grant_id=grant.pk,
        requester=requester,
        duration=timedelta(hours=1),
        justification="more",
        via=Channel.PORTAL,
    )
    approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    clock.shift(timedelta(hours=1))
    assert services.scan()["expiry_warnings"] == 1
    assert len([m for m in messages_to(requester) if "Ends in" in m.subject]) == 2


def test_break_glass_activation_alerts_the_security_group(make_role, request_role, security, requester, sent):
    role = make_role(slug="glass", break_glass=True)
    with sent():
        req = request_role(role, mfa_at=timezone.now(), justification="prod is down")
    message = only(messages_to(security))
    assert message.subject == "[Access broker] Break-glass: alice activated glass"
    assert "prod is down" in message.body
    assert "because you are in the security group" in message.body
    assert f"/grants/{req.grant.pk}/" in message.body
    assert messages_to(requester)  # and alice hears her grant is active


def test_a_break_glass_extension_alerts_security_again_with_the_new_expiry(
    make_role, request_role, security, requester, sent
):
    role = make_role(slug="glass", break_glass=True, max_total_duration=timedelta(hours=8))
    with sent():
        grant = request_role(role, mfa_at=timezone.now(), justification="prod is down").grant
    with sent():
        extension = approvals.request_create(
            requester=requester,
            extends_grant_id=grant.pk,
            duration=timedelta(hours=2),
            justification="still down",
            via=Channel.PORTAL,
            mfa_at=timezone.now(),
        )
    grant.refresh_from_db()
    first, second = messages_to(security)
    assert first.subject == "[Access broker] Break-glass: alice activated glass"
    assert second.subject == f"[Access broker] Break-glass extended: alice keeps glass until {_when(grant.expires_at)}"
    assert f"extension #{extension.pk}" in second.body
    assert "2 h more" in second.body and "still down" in second.body
    assert f"Until: {_when(grant.expires_at)}" in second.body


class DeadConnector(DjangoGroupConnector):
    def revoke(self, user, event=None):
        raise ConnectorError("target unreachable")


@override_settings(REVOKE_MAX_ATTEMPTS=1)
def test_a_revocation_that_keeps_failing_alerts_security_every_time(make_role, active_grant, requester, security, sent,
                                                                   monkeypatch, clock):  # fmt: skip
    monkeypatch.setitem(REGISTRY, "dead", DeadConnector)
    role = make_role(stages=[[UserFactory(username="carol")]], connector="dead", connector_config={"group": "g"})
    grant = active_grant(target_role=role)
    with sent():
        grants.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.PORTAL)
    message = only(messages_to(security))
    assert message.subject == f"[Access broker] Revocation failing: {role.slug} of alice (grant #{grant.pk})"
    assert "target unreachable" in message.body
    clock.shift(timedelta(days=1))
    with sent():
        grant_sweeper.sweep()
    assert len(messages_to(security)) == 2


def test_a_task_that_runs_twice_sends_once(role, request_role, approver):
    req = request_role(role)
    tasks.notify.delay(Notification.Kind.DECISION_NEEDED, req.pk, req.version)
    tasks.notify.delay(Notification.Kind.DECISION_NEEDED, req.pk, req.version)
    assert len(messages_to(approver)) == 1
    row = Notification.objects.get()
    assert (row.status, row.recipient, row.revision) == ("sent", approver, req.version)


def test_a_stale_task_for_an_older_version_sends_nothing(make_role, request_role, approver, approver2):
    role = make_role(stages=[[approver, approver2]], required=[2])
    req = request_role(role)
    approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    tasks.notify.delay(Notification.Kind.DECISION_NEEDED, req.pk, 1)
    assert mail.outbox == []


def test_a_refused_send_is_recorded_and_the_retry_sends_it_once(role, request_role, approver):
    req = request_role(role)
    refused = mock.patch("django.core.mail.EmailMultiAlternatives.send", side_effect=OSError("connection refused"))
    with refused, pytest.raises(services.SendFailed):
        services.notify(kind=Notification.Kind.DECISION_NEEDED, object_id=req.pk, revision=req.version)
    row = Notification.objects.get()
    assert (row.status, row.last_error) == ("failed", "OSError: connection refused")
    assert services.notify(kind="decision_needed", object_id=req.pk, revision=req.version) == 1
    assert services.notify(kind="decision_needed", object_id=req.pk, revision=req.version) == 0
    assert len(mail.outbox) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 2)


def test_a_message_being_sent_by_another_worker_is_not_sent_again(role, request_role, approver):
    req = request_role(role)
    assert services.claim(kind="decision_needed", object_id=req.pk, recipient=approver, revision=req.version,
                          now=timezone.now())  # fmt: skip
    assert services.notify(kind="decision_needed", object_id=req.pk, revision=req.version) == 0
    assert mail.outbox == []


def test_people_without_an_address_are_skipped(make_role, request_role, sent):
    nobody = UserFactory(username="nomail", email="")
    role = make_role(stages=[[nobody]])
    with sent():
        request_role(role)
    assert Notification.objects.get(recipient=nobody).status == "skipped"


def test_security_alerts_skip_inactive_members(make_role, request_role, security, sent):
    security.is_active = False
    security.save()
    role = RoleFactory(slug="glass2", break_glass=True)
    EligibilityFactory(role=role, user=UserFactory(username="alice"))
    with sent():
        request_role(role, mfa_at=timezone.now(), justification="x")
    assert messages_to(security) == []


def test_the_outbox_is_readable_in_the_admin(client, admin_user, role, request_role, sent):
    with sent():
        request_role(role)
    sign_in_verified(client, admin_user)
    page = client.get("/admin/notifications/notification/")
    assert page.status_code == 200
    assert b"decision_needed" in page.content


def test_the_scheduled_audit_check_alerts_security_once_when_the_chain_is_broken(active_grant, security, requester):
    active_grant()
    target = AuditEvent.objects.order_by("seq")[1]
    AuditEvent.objects.filter(pk=target.pk).update(data={"edited": "by hand"})  # as an UPDATE in psql would
    mail.outbox.clear()

    first = verify_audit()
    verify_audit()  # the next hour: the same finding is not mailed again

    assert (first["ok"], first["broken_seq"]) == (False, target.seq)
    message = only(messages_to(security))
    assert message.subject == f"[Access broker] Audit trail broken at event #{target.seq}"
    assert "the event was edited" in message.body
    assert "/audit/" in message.body
    assert not messages_to(requester)


def test_the_scheduled_audit_check_of_an_intact_chain_sends_nothing(active_grant, security):
    active_grant()
    mail.outbox.clear()
    result = verify_audit()
    assert result["ok"] and result["checked"] > 0
    assert not mail.outbox


# --- User text in messages: no forged lines, no invisible or direction-changing characters -------

FORGED = "disk full\nTicket: CHG-FAKE\r\nStage: 1 of 1 (approved)\u2028Role: harmless"


def test_a_justification_cannot_forge_fact_lines_in_the_plain_text_email(role, request_role, approver, sent):
    with sent():
        request_role(role, justification=FORGED, ticket="CHG-1")
    lines = only(messages_to(approver)).body.splitlines()
    # The broker's own fact lines start at the margin; every line of the requester's text after
    # the first is indented, so nothing the requester wrote starts where they do.
    assert [line for line in lines if line.startswith("Ticket:")] == ["Ticket: CHG-1"]
    assert [line for line in lines if line.startswith("Stage:")] == ["Stage: 1 of 1"]
    assert [line for line in lines if line.startswith("Role:")] == ["Role: Role db-admin (db-admin)"]
    assert "Justification: disk full" in lines
    assert "    Ticket: CHG-FAKE" in lines and "    Stage: 1 of 1 (approved)" in lines


def test_bidi_controls_and_zero_width_characters_never_reach_the_approver_by_email(role, request_role, approver, sent):
    with sent():
        request_role(role, justification="fix \u202egnp.exe\u202c now\u200b\x07", ticket="CHG\u200b-1\u2066")
    message = only(messages_to(approver))
    for part in (message.body, html_of(message)):
        assert "fix gnp.exe now" in part and "CHG-1" in part
        for char in ("\u202e", "\u202c", "\u200b", "\u2066", "\x07"):
            assert char not in part


def test_each_email_shows_times_in_its_recipients_zone(make_role, request_role, approver, approver2, sent, clock):
    from accounts.preferences import time_zone_set

    time_zone_set(user=approver, zone="Europe/Berlin")
    role = make_role(stages=[[approver, approver2]], slug="db-admin")
    with sent():
        request_role(role)  # created at 09:00 UTC, expires unanswered a day later
    to_carol, to_dave = only(messages_to(approver)), only(messages_to(approver2))
    assert "expires unanswered at 2026-03-03 10:00 CET" in to_carol.body
    assert "expires unanswered at 2026-03-03 10:00 CET" in html_of(to_carol)
    assert "expires unanswered at 2026-03-03 09:00 UTC" in to_dave.body


def test_a_german_approver_gets_a_german_email_while_the_english_requester_gets_english(
    role, request_role, requester, approver, sent, clock
):
    from accounts.preferences import language_set

    language_set(user=approver, language="de")
    with sent():
        req = request_role(role)
    to_carol = only(messages_to(approver))
    assert to_carol.subject == f"[Access Broker] Entscheidung nötig: alice beantragt db-admin (Antrag #{req.pk})"
    for part in (to_carol.body, html_of(to_carol)):
        assert "Hallo carol," in part
        assert "alice beantragt" in part and "für 1 h." in part
        assert "Der Antrag verfällt unbeantwortet am 2026-03-03 09:00 UTC." in part
        assert "Begründung" in part and "Antrag prüfen" in part
        assert "Sie erhalten diese Nachricht, weil Sie Genehmiger/in der Stufe 1 für die Rolle db-admin sind." in part
    assert '<html lang="de">' in html_of(to_carol)
    with sent():
        approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL, mfa_at=timezone.now())
    to_alice = only([m for m in messages_to(requester) if "Approved" in m.subject])
    assert to_alice.subject == f"[Access broker] Approved: db-admin (request #{req.pk})"
    assert "Hello alice," in to_alice.body and "was approved" in to_alice.body


def test_a_holder_who_chose_german_reads_the_end_of_the_grant_in_german(active_grant, requester, sent, clock):
    from accounts.preferences import language_set

    language_set(user=requester, language="de")
    grant = active_grant()
    with sent():
        grants.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.PORTAL)
    ended = only([m for m in messages_to(requester) if "Berechtigung #" in m.subject])
    assert ended.subject == f"[Access Broker] Zurückgegeben: db-admin (Berechtigung #{grant.pk})"
    assert "Ihr Zugriff Role db-admin ist beendet (Sie haben ihn vorzeitig zurückgegeben)" in ended.body


def test_the_holders_emails_follow_the_zone_saved_on_their_account(active_grant, requester, sent, clock):
    from accounts.preferences import time_zone_set

    time_zone_set(user=requester, zone="America/New_York")
    with sent():
        active_grant()
    active = only([m for m in messages_to(requester) if "Active" in m.subject])
    assert active.subject == "[Access broker] Active: db-admin until 2026-03-02 05:00 EST"
