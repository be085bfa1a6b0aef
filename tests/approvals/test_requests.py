"""Rules for asking for a role."""

from datetime import timedelta

import pytest

from approvals import services
from approvals.models import AccessRequest
from broker.errors import Conflict, Invalid, NotAllowed, NotFound
from broker.models import AuditEvent, Channel
from tests.conftest import T0
from tests.factories import EligibilityFactory, GroupFactory

pytestmark = pytest.mark.django_db


def test_eligible_user_creates_a_pending_request(role, request_role, clock):
    req = request_role(role)
    assert req.status == AccessRequest.Status.PENDING
    assert req.created_at == T0
    assert req.expires_at == T0 + role.request_ttl


def test_request_creation_is_audited_with_actor_and_channel(role, request_role, requester):
    req = request_role(role)
    event = AuditEvent.objects.get(action="request.created")
    assert (event.actor, event.channel, event.target_id, event.role) == (requester, "portal", str(req.pk), role.slug)


def test_user_who_is_not_eligible_is_refused(role, request_role, outsider):
    with pytest.raises(NotAllowed, match="not eligible"):
        request_role(role, user=outsider)


def test_membership_of_an_eligible_group_makes_a_user_eligible(make_role, request_role, outsider, approver):
    group = GroupFactory(name="dba")
    outsider.groups.add(group)
    role = make_role(stages=[[approver]], eligible=[])
    EligibilityFactory(role=role, group=group)
    assert request_role(role, user=outsider).status == "pending"


def test_retired_role_cannot_be_requested(role, request_role):
    role.retired_at = T0
    role.save()
    with pytest.raises(NotFound):
        request_role(role)


def test_duration_defaults_to_the_role_default(role, request_role):
    req = request_role(role, duration=None)
    assert req.duration == role.default_duration


def test_duration_above_the_role_maximum_is_refused(role, request_role):
    with pytest.raises(Invalid, match="maximum") as info:
        request_role(role, duration=role.max_duration + timedelta(seconds=1))
    assert "duration_seconds" in info.value.fields


def test_duration_equal_to_the_role_maximum_is_accepted(role, request_role):
    assert request_role(role, duration=role.max_duration).duration == role.max_duration


def test_duration_below_the_role_minimum_is_refused(make_role, approver, request_role):
    role = make_role(stages=[[approver]], min_duration=timedelta(minutes=5))
    with pytest.raises(Invalid, match="minimum"):
        request_role(role, duration=timedelta(minutes=4))


def test_zero_duration_is_refused(role, request_role):
    with pytest.raises(Invalid):
        request_role(role, duration=timedelta(0))


def test_justification_is_required_when_the_role_says_so(role, request_role):
    with pytest.raises(Invalid, match="justification") as info:
        request_role(role, justification="   ")
    assert "justification" in info.value.fields


def test_justification_is_optional_when_the_role_does_not_require_it(make_role, approver, request_role):
    role = make_role(stages=[[approver]], requires_justification=False)
    assert request_role(role, justification="").status == "pending"


def test_ticket_is_required_when_the_role_says_so(make_role, approver, request_role):
    role = make_role(stages=[[approver]], requires_ticket=True)
    with pytest.raises(Invalid, match="ticket"):
        request_role(role)
    assert request_role(role, ticket="CHG-42").ticket == "CHG-42"


def test_scheduled_start_must_be_in_the_future(role, request_role, clock):
    with pytest.raises(Invalid, match="future"):
        request_role(role, starts_at=T0)


def test_scheduled_start_must_be_within_thirty_days(role, request_role, clock):
    with pytest.raises(Invalid, match="too far"):
        request_role(role, starts_at=T0 + timedelta(days=30, seconds=1))
    assert request_role(role, starts_at=T0 + timedelta(days=30)).starts_at == T0 + timedelta(days=30)


def test_scheduled_start_without_time_zone_is_refused(role, request_role, clock):
    with pytest.raises(Invalid, match="time zone"):
        request_role(role, starts_at=(T0 + timedelta(hours=1)).replace(tzinfo=None))


def test_second_pending_request_for_the_same_role_is_refused(role, request_role):
    request_role(role)
    with pytest.raises(Conflict, match="pending"):
        request_role(role)


def test_requester_may_cancel_a_pending_request(role, request_role, requester):
    req = request_role(role)
    services.request_cancel(request_id=req.pk, requester=requester, via=Channel.API)
    req.refresh_from_db()
    assert req.status == "cancelled"
    assert AuditEvent.objects.filter(action="request.cancelled", actor=requester).exists()


def test_after_cancelling_the_role_can_be_requested_again(role, request_role, requester):
    req = request_role(role)
    services.request_cancel(request_id=req.pk, requester=requester, via=Channel.API)
    assert request_role(role).status == "pending"


def test_someone_else_cannot_cancel_a_request(role, request_role, outsider):
    req = request_role(role)
    with pytest.raises(NotFound):
        services.request_cancel(request_id=req.pk, requester=outsider, via=Channel.API)


def test_a_decided_request_cannot_be_cancelled(role, request_role, requester, approver):
    req = request_role(role)
    services.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    with pytest.raises(Conflict):
        services.request_cancel(request_id=req.pk, requester=requester, via=Channel.API)


def test_role_without_approvers_refuses_requests_instead_of_approving_them(make_role, request_role):
    role = make_role(stages=[])
    with pytest.raises(Conflict, match="no approvers"):
        request_role(role)
    assert not AccessRequest.objects.exists()


def test_a_refused_request_leaves_no_row_and_no_audit_event(role, request_role, outsider):
    with pytest.raises(NotAllowed):
        request_role(role, user=outsider)
    assert not AccessRequest.objects.exists()
    assert not AuditEvent.objects.exists()
