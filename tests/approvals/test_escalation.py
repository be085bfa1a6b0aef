"""Escalation: a stage nobody decided within the role's escalation delay goes to its escalation
approvers, who are told and may then decide that stage; audited as an escalation."""

from datetime import timedelta

import pytest
from django.test import override_settings

from approvals import selectors, services
from approvals.models import AccessRequest, Decision
from approvals.tasks import escalate_requests
from broker.audit.timeline import request_timeline
from broker.errors import NotAllowed
from broker.models import AuditEvent, Channel
from notifications.models import Notification
from tests.factories import GroupFactory, UserFactory
from tests.otp import messages_to

pytestmark = pytest.mark.django_db

DEFAULT_GROUP = "duty-managers"


@pytest.fixture
def boss(db):
    """Escalation approver named by the role itself."""
    return UserFactory(username="bea")


@pytest.fixture
def escalating(make_role, approver, boss):
    """One stage (carol), a 24 h request TTL, escalated to bea after half of it (the default delay)."""
    role = make_role(stages=[[approver]], slug="db-admin")
    role.escalation_users.add(boss)
    return role


@pytest.fixture
def sent(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def escalated_events(req):
    return AuditEvent.objects.filter(action="request.escalated", target_id=str(req.pk))


def test_a_stage_undecided_for_half_the_ttl_is_escalated(escalating, request_role, boss, clock):
    req = request_role(escalating)
    clock.shift(timedelta(hours=11, minutes=59))
    assert services.requests_escalate() == 0
    clock.shift(timedelta(minutes=1))
    assert services.requests_escalate() == 1

    req.refresh_from_db()
    assert (req.escalated_stage, req.escalated_at, req.is_escalated) == (0, req.created_at + timedelta(hours=12), True)
    event = escalated_events(req).get()
    assert (event.actor_name, event.channel, event.role, event.subject) == ("system", "worker", "db-admin", "alice")
    assert event.data == {"stage": 1, "waited_seconds": 12 * 3600, "escalated_to": ["bea"]}


def test_the_role_may_set_its_own_escalation_delay(escalating, request_role, clock):
    escalating.escalation_after = timedelta(hours=2)
    escalating.save()
    req = request_role(escalating)
    clock.shift(timedelta(hours=2))
    assert services.requests_escalate() == 1
    assert escalated_events(req).count() == 1


def test_escalating_twice_escalates_once_and_tells_once(escalating, request_role, boss, clock, sent):
    req = request_role(escalating)
    clock.shift(timedelta(hours=12))
    with sent():
        assert escalate_requests() == 1
        assert escalate_requests() == 0
        assert services.request_escalate(request_id=req.pk) is False
    assert escalated_events(req).count() == 1
    assert len(messages_to(boss)) == 1
    assert Notification.objects.filter(kind="escalated", object_id=req.pk, recipient=boss).count() == 1


def test_the_escalation_message_tells_the_escalation_approver_what_waits_and_how_to_decide(
    escalating, request_role, boss, approver, clock, sent
):
    with sent():
        req = request_role(escalating)
        clock.shift(timedelta(hours=12))
        services.requests_escalate()
    message = messages_to(boss)[-1]
    assert message.subject == f"[Access broker] Escalated: alice has waited 12 h for db-admin (request #{req.pk})"
    assert "Stage 1 has waited 12 h without a decision, so it was escalated to you" in message.body
    assert "because you are an escalation approver for the role db-admin" in message.body
    assert "/email-link/" in message.body
    # The stage's own approvers got their request and their reminder, not the escalation.
    assert not [m for m in messages_to(approver) if "Escalated" in m.subject]


def test_without_anyone_to_escalate_to_nothing_is_escalated(role, request_role, clock):
    req = request_role(role)
    clock.shift(timedelta(hours=13))
    assert services.requests_escalate() == 0
    assert not escalated_events(req).exists()


def test_the_escalation_group_setting_serves_roles_that_name_no_escalation_approvers(role, request_role, clock, sent):
    duty = UserFactory(username="dora")
    duty.groups.add(GroupFactory(name=DEFAULT_GROUP))
    req = request_role(role)
    clock.shift(timedelta(hours=12))
    with override_settings(ESCALATION_GROUP=DEFAULT_GROUP):
        with sent():
            assert services.requests_escalate() == 1
        services.request_approve(request_id=req.pk, approver=duty, comment="covering for carol", via=Channel.API)
    assert escalated_events(req).get().data["escalated_to"] == ["dora"]
    assert "in the duty-managers group, which decides escalated requests" in messages_to(duty)[0].body
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.APPROVED


def test_a_role_with_its_own_escalation_approvers_does_not_use_the_group_setting(escalating, request_role, clock):
    duty = UserFactory(username="dora")
    duty.groups.add(GroupFactory(name=DEFAULT_GROUP))
    req = request_role(escalating)
    clock.shift(timedelta(hours=12))
    with override_settings(ESCALATION_GROUP=DEFAULT_GROUP):
        services.requests_escalate()
        with pytest.raises(NotAllowed) as refused:
            services.request_approve(request_id=req.pk, approver=duty, via=Channel.PORTAL)
    assert refused.value.code == "not_approver"


def test_an_escalation_approver_cannot_decide_before_the_stage_is_escalated(escalating, request_role, boss, clock):
    req = request_role(escalating)
    clock.shift(timedelta(hours=11))
    with pytest.raises(NotAllowed) as refused:
        services.request_approve(request_id=req.pk, approver=boss, via=Channel.PORTAL)
    assert refused.value.code == "not_approver"


def test_an_escalation_approver_decides_the_escalated_stage_and_the_decision_says_so(
    escalating, request_role, boss, clock
):
    req = request_role(escalating)
    clock.shift(timedelta(hours=12))
    services.requests_escalate()
    services.request_approve(request_id=req.pk, approver=boss, comment="carol is away", via=Channel.PORTAL)

    req.refresh_from_db()
    assert req.status == AccessRequest.Status.APPROVED
    decision = req.decisions.get()
    assert (decision.approver, decision.escalation) == (boss, True)
    given = AuditEvent.objects.get(action="request.approval_given", target_id=str(req.pk))
    assert given.data == {"stage": 1, "comment": "carol is away", "escalation": True}
    titles = [entry.title for entry in request_timeline(req)]
    assert "Stage 1 escalated after 12 h without a decision" in titles
    assert "bea approved (stage 1, as escalation approver)" in titles


def test_an_escalation_approver_may_deny_the_escalated_stage(escalating, request_role, boss, clock):
    req = request_role(escalating)
    clock.shift(timedelta(hours=12))
    services.requests_escalate()
    services.request_deny(request_id=req.pk, approver=boss, comment="not during the freeze", via=Channel.PORTAL)
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.DENIED
    assert AuditEvent.objects.get(action="request.denied", target_id=str(req.pk)).data["escalation"] is True


def test_the_stage_s_own_approver_still_decides_an_escalated_stage_as_usual(escalating, request_role, approver, clock):
    req = request_role(escalating)
    clock.shift(timedelta(hours=12))
    services.requests_escalate()
    services.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    assert req.decisions.get().escalation is False


def test_an_escalation_approval_counts_as_one_of_the_approvals_the_stage_requires(
    make_role, request_role, approver, approver2, boss, clock
):
    role = make_role(stages=[[approver, approver2]], required=[2], slug="two-of-two")
    role.escalation_users.add(boss)
    req = request_role(role)
    clock.shift(timedelta(hours=12))
    services.requests_escalate()
    services.request_approve(request_id=req.pk, approver=boss, via=Channel.PORTAL)
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.PENDING
    services.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.APPROVED


def test_each_stage_gets_its_own_time_before_it_is_escalated(make_role, request_role, approver, approver2, boss, clock):
    role = make_role(stages=[[approver], [approver2]], slug="two-stages")
    role.escalation_users.add(boss)
    req = request_role(role)
    clock.shift(timedelta(hours=12))
    services.requests_escalate()
    services.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    req.refresh_from_db()
    assert (req.current_stage, req.stage_started_at, req.is_escalated) == (
        1,
        req.created_at + timedelta(hours=12),
        False,
    )

    # Stage 2 is not escalated: bea may not decide it yet, and its clock started when stage 1 passed.
    with pytest.raises(NotAllowed):
        services.request_approve(request_id=req.pk, approver=boss, via=Channel.PORTAL)
    clock.shift(timedelta(hours=11, minutes=59))
    assert services.requests_escalate() == 0  # the request expires before stage 2 waited 12 h


def test_the_second_stage_is_escalated_on_its_own(make_role, request_role, approver, approver2, boss, clock):
    role = make_role(stages=[[approver], [approver2]], slug="two-stages", request_ttl=timedelta(hours=48))
    role.escalation_users.add(boss)
    req = request_role(role)
    clock.shift(timedelta(hours=1))
    services.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    clock.shift(timedelta(hours=23, minutes=59))
    assert services.requests_escalate() == 0
    clock.shift(timedelta(minutes=1))
    assert services.requests_escalate() == 1
    assert escalated_events(req).get().data["stage"] == 2
    services.request_approve(request_id=req.pk, approver=boss, via=Channel.PORTAL)
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.APPROVED
    assert list(req.decisions.values_list("stage", "escalation")) == [(0, False), (1, True)]


def test_a_requester_who_is_an_escalation_approver_still_cannot_decide_their_own_request(
    escalating, request_role, requester, clock
):
    escalating.escalation_users.add(requester)
    req = request_role(escalating)
    clock.shift(timedelta(hours=12))
    services.requests_escalate()
    assert escalated_events(req).get().data["escalated_to"] == ["bea"]
    with pytest.raises(NotAllowed) as refused:
        services.request_approve(request_id=req.pk, approver=requester, via=Channel.PORTAL)
    assert refused.value.code == "self_approval"


def test_decided_and_expired_requests_are_not_escalated(escalating, request_role, approver, clock):
    decided = request_role(escalating)
    services.request_deny(request_id=decided.pk, approver=approver, comment="no", via=Channel.PORTAL)
    clock.shift(timedelta(hours=24))
    assert services.requests_escalate() == 0


def test_break_glass_and_auto_approved_roles_never_escalate(make_role, request_role, boss, clock):
    auto = make_role(auto_approve=True, slug="sandbox", requires_justification=False)
    auto.escalation_users.add(boss)
    request_role(auto)
    clock.shift(timedelta(hours=13))
    assert services.requests_escalate() == 0


def test_escalated_requests_reach_the_escalation_approver_s_inbox_and_view(escalating, request_role, boss, clock):
    req = request_role(escalating)
    assert not selectors.requests_visible_to(boss).filter(pk=req.pk).exists()
    assert not selectors.requests_awaiting(boss).exists()
    clock.shift(timedelta(hours=12))
    services.requests_escalate()
    assert selectors.requests_visible_to(boss).filter(pk=req.pk).exists()
    assert list(selectors.requests_awaiting(boss)) == [req]
    assert services.may_decide(AccessRequest.objects.get(pk=req.pk), boss)
    services.request_approve(request_id=req.pk, approver=boss, via=Channel.PORTAL)
    assert not selectors.requests_awaiting(boss).exists()
    assert selectors.requests_visible_to(boss).filter(pk=req.pk).exists()


def test_the_api_shows_the_escalation_and_who_decided_as_escalation_approver(
    escalating, request_role, boss, clock, client
):
    from rest_framework.test import APIClient

    req = request_role(escalating)
    clock.shift(timedelta(hours=12))
    services.requests_escalate()
    services.request_approve(request_id=req.pk, approver=boss, via=Channel.PORTAL)
    api = APIClient()
    api.force_authenticate(boss)
    body = api.get(f"/api/v1/requests/{req.pk}/").json()
    assert (body["escalated_stage"], body["escalated_at"]) == (1, "2026-03-02T21:00:00Z")
    assert [(d["approver"], d["escalation"]) for d in body["approvals"]] == [("bea", True)]
    assert Decision.objects.get(request=req).escalation


def test_the_escalation_approver_decides_through_the_link_in_the_escalation_email(
    escalating, request_role, boss, clock, sent, client
):
    from tests.otp import authenticator, code_of, link_in

    device = authenticator(boss)
    with sent():
        req = request_role(escalating)
        clock.shift(timedelta(hours=12))
        services.requests_escalate()
    client.force_login(boss)
    link = link_in(messages_to(boss)[-1])
    response = client.post(link, {"decision": "approve", "code": code_of(device), "comment": "covering"})
    assert response.status_code == 200
    req.refresh_from_db()
    assert req.status == AccessRequest.Status.APPROVED
    decision = req.decisions.get()
    assert (decision.approver, decision.channel, decision.escalation) == (boss, "email", True)


def test_the_escalation_approver_decides_in_the_portal(escalating, request_role, boss, clock, client):
    from tests.otp import sign_in_verified

    req = request_role(escalating)
    clock.shift(timedelta(hours=12))
    services.requests_escalate()
    sign_in_verified(client, boss)
    assert f"/requests/{req.pk}/" in client.get("/approvals/").content.decode()
    page = client.get(f"/requests/{req.pk}/")
    assert page.status_code == 200 and b"Your decision" in page.content
    response = client.post(f"/requests/{req.pk}/decide/", {"verdict": "approve", "comment": "covering"})
    assert response.status_code in (200, 302)
    req.refresh_from_db()
    assert (req.status, req.decisions.get().escalation) == (AccessRequest.Status.APPROVED, True)
