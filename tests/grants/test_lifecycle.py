"""A grant's life: scheduled, activated in the target, effective until expires_at, removed, audited."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from approvals import services as approvals
from broker.errors import Conflict, Invalid, NotAllowed
from broker.models import AuditEvent, Channel
from grants import services
from grants.models import Grant
from tests.conftest import T0

pytestmark = pytest.mark.django_db


def in_group(user, role) -> bool:
    return user.groups.filter(name=role.connector_config["group"]).exists()


def test_grant_clock_starts_at_approval_not_at_request(role, request_role, approver, clock):
    req = request_role(role, duration=timedelta(hours=1))
    clock.shift(timedelta(minutes=20))
    req = approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    assert req.grant.starts_at == T0 + timedelta(minutes=20)
    assert req.grant.expires_at == T0 + timedelta(minutes=80)


def test_scheduled_request_starts_at_its_scheduled_time(role, request_role, approver, clock):
    req = request_role(role, starts_at=T0 + timedelta(days=1), duration=timedelta(hours=2))
    req = approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    assert (req.grant.starts_at, req.grant.expires_at) == (T0 + timedelta(days=1), T0 + timedelta(days=1, hours=2))


def test_activation_adds_the_user_to_the_target_group(active_grant, requester, role):
    grant = active_grant()
    assert grant.status == "active"
    assert in_group(requester, role)
    assert AuditEvent.objects.filter(action="grant.activated", target_id=str(grant.pk)).count() == 1


def test_scheduled_grant_is_not_activated_before_its_start(role, request_role, approver, clock, requester):
    req = request_role(role, starts_at=T0 + timedelta(hours=1))
    req = approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    assert services.grant_activate(grant_id=req.grant.pk).status == "scheduled"
    assert not in_group(requester, role)
    clock.shift(timedelta(hours=1))
    assert services.grant_activate(grant_id=req.grant.pk).status == "active"


def test_activation_is_idempotent(active_grant):
    grant = active_grant()
    services.grant_activate(grant_id=grant.pk)
    assert AuditEvent.objects.filter(action="grant.activated").count() == 1


def test_activation_rechecks_eligibility(role, request_role, approver, requester):
    req = approvals.request_approve(request_id=request_role(role).pk, approver=approver, via=Channel.PORTAL)
    role.eligibilities.all().delete()
    grant = services.grant_activate(grant_id=req.grant.pk)
    assert (grant.status, grant.end_reason, grant.end_comment) == (
        "revoked",
        "eligibility_lost",
        "no longer eligible for the role",
    )
    assert not in_group(requester, role)


def test_activation_rechecks_that_the_role_still_exists(role, request_role, approver):
    req = approvals.request_approve(request_id=request_role(role).pk, approver=approver, via=Channel.PORTAL)
    role.retired_at = T0
    role.save()
    grant = services.grant_activate(grant_id=req.grant.pk)
    assert grant.end_reason == "role_retired"


@pytest.mark.parametrize(
    ("offset", "effective"),
    [
        (timedelta(seconds=-1), True),
        (timedelta(microseconds=-1), True),
        (timedelta(0), False),
        (timedelta(seconds=1), False),
    ],
)
def test_effective_rule_at_and_around_expiry(active_grant, clock, offset, effective):
    grant = active_grant(duration=timedelta(minutes=30))
    at = grant.expires_at + offset
    assert grant.is_effective(at) is effective
    assert Grant.objects.effective(at).filter(pk=grant.pk).exists() is effective


def test_a_grant_becomes_effective_exactly_at_its_start(active_grant):
    grant = active_grant()
    assert not grant.is_effective(grant.starts_at - timedelta(microseconds=1))
    assert grant.is_effective(grant.starts_at)


def test_a_late_worker_never_extends_access(active_grant, clock):
    grant = active_grant(duration=timedelta(minutes=5))
    clock.shift(timedelta(minutes=10))  # nobody revoked yet: still "active" in the table
    grant.refresh_from_db()
    assert grant.status == "active"
    assert not grant.is_effective()
    assert not Grant.objects.effective().exists()


def test_expiry_removes_the_member_and_audits_once(active_grant, clock, requester, role):
    grant = active_grant(duration=timedelta(minutes=5))
    clock.shift(timedelta(minutes=5))
    grant = services.grant_expire(grant_id=grant.pk)
    assert (grant.status, grant.end_reason) == ("expired", "expiry")
    assert grant.ended_at is not None
    assert not in_group(requester, role)
    event = AuditEvent.objects.get(action="grant.expired")
    assert event.data["lag_seconds"] == 0
    services.grant_expire(grant_id=grant.pk)
    assert AuditEvent.objects.filter(action="grant.expired").count() == 1


def test_expire_before_expires_at_does_nothing(active_grant, clock):
    grant = active_grant(duration=timedelta(minutes=5))
    clock.shift(timedelta(minutes=4))
    assert services.grant_expire(grant_id=grant.pk).status == "active"


def test_holder_may_relinquish_early(active_grant, requester, role):
    grant = active_grant()
    grant = services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API, comment="done")
    assert (grant.status, grant.end_reason) == ("revoked", "relinquished")
    assert not in_group(requester, role)
    assert AuditEvent.objects.get(action="grant.relinquished").actor == requester


def test_someone_else_cannot_relinquish_a_grant(active_grant, outsider):
    grant = active_grant()
    with pytest.raises(NotAllowed):
        services.grant_relinquish(grant_id=grant.pk, user=outsider, via=Channel.API)


def test_admin_may_revoke_any_grant(active_grant, admin_user, requester, role):
    grant = services.grant_revoke(grant_id=active_grant().pk, actor=admin_user, reason="left the team", via=Channel.API)
    assert (grant.status, grant.end_reason, grant.ended_by) == ("revoked", "revoked", admin_user)
    assert not in_group(requester, role)


@pytest.mark.parametrize("reason", ["", "   "])
def test_an_admin_revoke_without_a_reason_is_refused_by_the_service_itself(active_grant, admin_user, reason):
    grant = active_grant()
    events = AuditEvent.objects.count()
    with pytest.raises(Invalid) as refused:
        services.grant_revoke(grant_id=grant.pk, actor=admin_user, reason=reason, via=Channel.PORTAL)
    assert "reason" in refused.value.fields
    grant.refresh_from_db()
    assert grant.status == Grant.Status.ACTIVE
    assert AuditEvent.objects.count() == events


def test_non_admin_cannot_revoke_someone_elses_grant(active_grant, approver):
    with pytest.raises(NotAllowed):
        services.grant_revoke(grant_id=active_grant().pk, actor=approver, reason="x", via=Channel.API)


def test_an_ended_grant_cannot_be_ended_again(active_grant, requester):
    grant = active_grant()
    services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
    with pytest.raises(Conflict):
        services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)


def test_requesting_a_role_already_held_is_refused(active_grant, request_role, role):
    active_grant()
    with pytest.raises(Conflict, match="already hold"):
        request_role(role)


def test_member_stays_in_group_while_another_role_with_the_same_group_is_held(
    make_role, request_role, approver, requester, active_grant
):
    first = make_role(stages=[[approver]], connector_config={"group": "shared"})
    second = make_role(stages=[[approver]], connector_config={"group": "shared"})
    a = active_grant(target_role=first)
    active_grant(target_role=second)
    services.grant_relinquish(grant_id=a.pk, user=requester, via=Channel.API)
    assert requester.groups.filter(name="shared").exists()


class TestExtension:
    def test_approved_extension_moves_the_same_grants_expiry(self, active_grant, requester, approver, clock):
        grant = active_grant(duration=timedelta(hours=1))
        ext = approvals.request_create(
            extends_grant_id=grant.pk,
            requester=requester,
            duration=timedelta(hours=1),
            justification="still fixing",
            via=Channel.API,
        )
        assert (ext.kind, ext.status) == ("extension", "pending")
        approvals.request_approve(request_id=ext.pk, approver=approver, via=Channel.PORTAL)
        grant.refresh_from_db()
        assert grant.expires_at == T0 + timedelta(hours=2)
        assert Grant.objects.count() == 1
        assert AuditEvent.objects.get(action="grant.extended").data["to"] == "2026-03-02T11:00:00Z"

    def test_extension_is_capped_by_the_role_maximum_from_the_original_start(self, active_grant, requester, role):
        grant = active_grant(duration=timedelta(hours=3))  # role max is 4h
        with pytest.raises(Invalid, match="At most 1 h more"):
            approvals.request_create(
                extends_grant_id=grant.pk,
                requester=requester,
                duration=timedelta(hours=2),
                justification="x",
                via=Channel.API,
            )

    def test_policy_may_allow_a_longer_total_lifetime(self, make_role, approver, requester, active_grant):
        role = make_role(stages=[[approver]], max_total_duration=timedelta(hours=10))
        grant = active_grant(duration=timedelta(hours=4), target_role=role)
        ext = approvals.request_create(
            extends_grant_id=grant.pk,
            requester=requester,
            duration=timedelta(hours=4),
            justification="x",
            via=Channel.API,
        )
        approvals.request_approve(request_id=ext.pk, approver=approver, via=Channel.PORTAL)
        grant.refresh_from_db()
        assert grant.expires_at - grant.starts_at == timedelta(hours=8)

    def test_extension_of_someone_elses_grant_is_not_found(self, active_grant, outsider):
        from broker.errors import NotFound

        with pytest.raises(NotFound):
            approvals.request_create(
                extends_grant_id=active_grant().pk,
                requester=outsider,
                duration=timedelta(minutes=5),
                justification="x",
                via=Channel.API,
            )

    def test_extension_approved_after_the_grant_ended_is_refused(self, active_grant, requester, approver, clock):
        grant = active_grant(duration=timedelta(hours=1))
        ext = approvals.request_create(
            extends_grant_id=grant.pk,
            requester=requester,
            duration=timedelta(minutes=30),
            justification="x",
            via=Channel.API,
        )
        services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
        with pytest.raises(Conflict, match="ended"):
            approvals.request_approve(request_id=ext.pk, approver=approver, via=Channel.PORTAL)

    def test_pending_extension_expires_when_its_grant_ends(self, active_grant, requester, clock):
        grant = active_grant(duration=timedelta(hours=1))
        ext = approvals.request_create(
            extends_grant_id=grant.pk,
            requester=requester,
            duration=timedelta(minutes=30),
            justification="x",
            via=Channel.API,
        )
        services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
        approvals.requests_sweep(now=T0)
        ext.refresh_from_db()
        assert ext.status == "expired"

    def test_extension_by_an_auto_approve_role_applies_at_once(self, make_role, requester, active_grant):
        role = make_role(auto_approve=True)
        grant = active_grant(duration=timedelta(minutes=30), target_role=role)
        approvals.request_create(
            extends_grant_id=grant.pk,
            requester=requester,
            duration=timedelta(minutes=30),
            justification="x",
            via=Channel.API,
        )
        grant.refresh_from_db()
        assert grant.expires_at - grant.starts_at == timedelta(hours=1)


def test_break_glass_grant_review_is_recorded_by_someone_else(make_role, request_role, approver, requester):
    from grants.services import grant_review

    role = make_role(break_glass=True)
    grant = request_role(role, justification="outage", mfa_at=timezone.now()).grant
    with pytest.raises(NotAllowed):
        grant_review(grant_id=grant.pk, reviewer=requester, note="fine", via=Channel.PORTAL)
    grant = grant_review(grant_id=grant.pk, reviewer=approver, note="justified by INC-9", via=Channel.PORTAL)
    assert grant.reviewed_by == approver


def test_extending_a_reviewed_break_glass_grant_reopens_its_review(make_role, request_role, approver, requester):
    from grants.services import grant_review

    role = make_role(break_glass=True, max_total_duration=timedelta(hours=8))
    grant = request_role(role, justification="outage", mfa_at=timezone.now()).grant
    grant_review(grant_id=grant.pk, reviewer=approver, note="justified by INC-9", via=Channel.PORTAL)
    extension = approvals.request_create(
        requester=requester,
        extends_grant_id=grant.pk,
        duration=timedelta(hours=1),
        justification="still burning",
        via=Channel.PORTAL,
        mfa_at=timezone.now(),
    )
    grant.refresh_from_db()
    assert (grant.reviewed_at, grant.reviewed_by, grant.review_note) == (None, None, "")
    event = AuditEvent.objects.get(action="grant.review_reopened", target_id=str(grant.pk))
    assert event.data["request"] == extension.pk
    assert event.data["previous"]["by"] == approver.username
    assert event.data["previous"]["note"] == "justified by INC-9"


def test_the_target_group_is_created_on_demand(active_grant, role):
    Group.objects.filter(name=role.connector_config["group"]).delete()
    active_grant()
    assert Group.objects.filter(name=role.connector_config["group"]).exists()


def test_a_deactivated_account_holds_nothing_by_the_effective_rule(active_grant, requester):
    grant = active_grant()
    type(requester).objects.filter(pk=requester.pk).update(is_active=False)
    grant = Grant.objects.select_related("user").get(pk=grant.pk)
    assert grant.status == "active"
    assert not grant.is_effective()
    assert not Grant.objects.effective().exists()
