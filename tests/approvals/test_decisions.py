"""The approval policy: stages in order, N distinct approvals each, no self-approval, one deny ends it, TTL."""

from datetime import timedelta

import pytest

from approvals import services
from broker.errors import Conflict, Invalid, NotAllowed
from broker.models import AuditEvent, Channel
from grants.models import Grant
from tests.conftest import T0
from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db


def approve(req, user, **kwargs):
    return services.request_approve(request_id=req.pk, approver=user, via=Channel.PORTAL, **kwargs)


def deny(req, user, comment="not now", **kwargs):
    return services.request_deny(request_id=req.pk, approver=user, comment=comment, via=Channel.PORTAL, **kwargs)


def test_one_approval_of_a_one_stage_role_approves_and_schedules_a_grant(role, request_role, approver, clock):
    req = approve(request_role(role), approver)
    assert req.status == "approved"
    assert req.decided_at == T0
    assert req.grant.status == Grant.Status.SCHEDULED


def test_approval_is_audited_with_the_approver(role, request_role, approver):
    approve(request_role(role), approver, comment="ok")
    event = AuditEvent.objects.get(action="request.approved")
    assert event.actor == approver
    assert event.data["approvers"] == ["carol"]


def test_requester_cannot_approve_own_request(make_role, request_role, requester):
    role = make_role(stages=[[requester]])
    req = request_role(role)
    with pytest.raises(NotAllowed, match="own request"):
        approve(req, requester)


def test_requester_in_the_approver_group_still_cannot_approve_own_request(make_role, request_role, requester):
    leads = GroupFactory(name="leads")
    requester.groups.add(leads)
    role = make_role(stages=[[]])
    role.stages.get().groups.add(leads)
    with pytest.raises(NotAllowed, match="own request"):
        approve(request_role(role), requester)


def test_user_who_is_not_an_approver_cannot_approve(role, request_role, outsider):
    with pytest.raises(NotAllowed, match="not an approver"):
        approve(request_role(role), outsider)


def test_member_of_an_approver_group_can_approve(make_role, request_role, outsider):
    leads = GroupFactory(name="leads")
    outsider.groups.add(leads)
    role = make_role(stages=[[]])
    role.stages.get().groups.add(leads)
    assert approve(request_role(role), outsider).status == "approved"


def test_inactive_approver_cannot_approve(role, request_role, approver):
    approver.is_active = False
    approver.save()
    with pytest.raises(NotAllowed):
        approve(request_role(role), approver)


def test_two_of_three_needs_two_distinct_approvals(make_role, request_role, approver, approver2):
    third = UserFactory(username="trent")
    role = make_role(stages=[[approver, approver2, third]], required=[2])
    req = request_role(role)
    assert approve(req, approver).status == "pending"
    with pytest.raises(Conflict, match="already decided"):
        approve(req, approver)
    assert approve(req, approver2).status == "approved"


def test_stages_are_decided_in_order(make_role, request_role, approver, approver2):
    role = make_role(stages=[[approver], [approver2]])
    req = request_role(role)
    with pytest.raises(NotAllowed, match="stage 1"):
        approve(req, approver2)
    req = approve(req, approver)
    assert (req.status, req.current_stage) == ("pending", 1)
    assert approve(req, approver2).status == "approved"


def test_one_person_counts_once_even_when_named_in_two_stages(make_role, request_role, approver, approver2):
    role = make_role(stages=[[approver], [approver, approver2]])
    req = approve(request_role(role), approver)
    with pytest.raises(Conflict):
        approve(req, approver)
    assert approve(req, approver2).status == "approved"


def test_one_deny_ends_the_request(make_role, request_role, approver, approver2):
    role = make_role(stages=[[approver, approver2]], required=[2])
    req = request_role(role)
    approve(req, approver)
    req = deny(req, approver2, comment="no change ticket")
    assert req.status == "denied"
    assert not Grant.objects.exists()
    assert AuditEvent.objects.get(action="request.denied").data["comment"] == "no change ticket"


def test_deny_needs_a_comment(role, request_role, approver):
    with pytest.raises(Invalid, match="comment"):
        deny(request_role(role), approver, comment="")


def test_denying_a_role_that_requires_mfa_needs_a_fresh_second_factor(make_role, request_role, approver, clock):
    role = make_role(stages=[[approver]], requires_mfa=True)
    req = request_role(role, mfa_at=T0)
    for stale in (None, T0 - timedelta(minutes=6)):
        with pytest.raises(NotAllowed) as refused:
            deny(req, approver, mfa_at=stale)
        assert refused.value.code == "mfa_required"
    req.refresh_from_db()
    assert req.status == "pending"
    assert deny(req, approver, mfa_at=T0 - timedelta(minutes=1)).status == "denied"


def test_denying_a_role_without_mfa_needs_no_second_factor(role, request_role, approver):
    assert deny(request_role(role), approver).status == "denied"


def test_denied_request_cannot_be_approved(role, request_role, approver, approver2):
    req = deny(request_role(role), approver)
    with pytest.raises(Conflict, match="already denied"):
        approve(req, approver2)


def test_auto_approve_role_is_approved_at_once(make_role, request_role):
    role = make_role(auto_approve=True)
    req = request_role(role)
    assert req.status == "approved"
    assert AuditEvent.objects.get(action="request.approved").actor is None


def test_pending_request_expires_after_the_role_ttl(role, request_role, clock):
    req = request_role(role)
    clock.shift(role.request_ttl - timedelta(seconds=1))
    services.requests_sweep(now=T0 + role.request_ttl - timedelta(seconds=1))
    req.refresh_from_db()
    assert req.status == "pending"
    clock.shift(timedelta(seconds=1))
    assert services.requests_sweep(now=T0 + role.request_ttl) == 1
    req.refresh_from_db()
    assert req.status == "expired"
    assert AuditEvent.objects.get(action="request.expired").actor is None


def test_request_past_its_ttl_cannot_be_approved_even_before_the_sweeper_runs(role, request_role, approver, clock):
    req = request_role(role)
    clock.shift(role.request_ttl)
    with pytest.raises(Conflict, match="expired"):
        approve(req, approver)


def test_break_glass_activates_without_approval_and_is_marked_for_review(make_role, request_role, clock):
    role = make_role(break_glass=True)
    req = request_role(role, justification="prod down, INC-9", mfa_at=T0)
    assert req.status == "approved"
    assert req.grant.break_glass is True
    assert req.grant.reviewed_at is None


def test_break_glass_requires_a_justification(make_role, request_role, clock):
    role = make_role(break_glass=True, requires_justification=False)
    with pytest.raises(Invalid, match="justification"):
        request_role(role, justification="", mfa_at=T0)


def test_break_glass_cannot_be_scheduled(make_role, request_role, clock):
    role = make_role(break_glass=True)
    with pytest.raises(Invalid, match="break-glass"):
        request_role(role, starts_at=T0 + timedelta(hours=1), mfa_at=T0)


class TestMfa:
    def test_approving_a_role_that_requires_mfa_needs_a_fresh_verification(
        self, make_role, request_role, approver, clock
    ):
        role = make_role(stages=[[approver]], requires_mfa=True)
        req = request_role(role, mfa_at=T0)
        with pytest.raises(NotAllowed, match="fresh MFA") as info:
            approve(req, approver)
        assert info.value.code == "mfa_required"
        with pytest.raises(NotAllowed, match="fresh MFA"):
            approve(req, approver, mfa_at=T0 - timedelta(minutes=5, seconds=1))
        assert approve(req, approver, mfa_at=T0 - timedelta(minutes=5)).status == "approved"

    def test_requesting_a_role_that_requires_mfa_needs_a_fresh_verification(
        self, make_role, request_role, approver, clock
    ):
        role = make_role(stages=[[approver]], requires_mfa=True)
        with pytest.raises(NotAllowed, match="fresh MFA"):
            request_role(role)
        assert request_role(role, mfa_at=T0).status == "pending"

    def test_break_glass_needs_a_fresh_verification(self, make_role, request_role, clock):
        role = make_role(break_glass=True)
        with pytest.raises(NotAllowed, match="fresh MFA"):
            request_role(role, justification="outage")

    def test_roles_without_mfa_do_not_ask_for_it(self, role, request_role, approver):
        assert approve(request_role(role), approver).status == "approved"
