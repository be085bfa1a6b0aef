"""Eligibility lost acts at once: whatever removes it, pending requests are cancelled and grants end."""

from datetime import timedelta
from unittest import mock

import pytest
from django import forms
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import ProtectedError
from django.utils import timezone

from approvals import services as approvals
from approvals.models import AccessRequest
from broker import jobs
from broker.errors import Conflict
from broker.models import AuditEvent, Channel, Eligibility
from grants import services as grants
from grants.models import Grant
from tests.factories import EligibilityFactory, GroupFactory, RoleFactory, StageFactory, UserFactory
from tests.otp import sign_in_verified

pytestmark = pytest.mark.django_db


@pytest.fixture
def dba(db):
    return GroupFactory(name="dba")


@pytest.fixture
def member(requester, dba):
    requester.groups.add(dba)
    return requester


@pytest.fixture
def world(member, dba, approver, request_role):
    """alice is eligible for two roles through the group dba: she holds one and asks for the other."""
    held = RoleFactory(slug="db-admin", auto_approve=True, connector_config={"group": "db-admins"})
    asked = RoleFactory(slug="db-reader")
    StageFactory(role=asked, users=[approver])
    for role in (held, asked):
        EligibilityFactory(role=role, group=dba)
    grant = grants.grant_activate(grant_id=request_role(held).grant.pk)
    assert grant.status == Grant.Status.ACTIVE
    pending = request_role(asked)
    return grant, pending


def fresh(obj):
    obj.refresh_from_db()
    return obj


def in_target(user) -> bool:
    return user.groups.filter(name="db-admins").exists()


def assert_lost(grant, pending, *, why="no longer eligible for the role"):
    grant, pending = fresh(grant), fresh(pending)
    assert (grant.status, grant.end_reason, grant.end_comment) == ("revoked", "eligibility_lost", why)
    assert grant.ended_at is not None and not in_target(grant.user)
    assert (pending.status, pending.closed_reason) == ("cancelled", why)
    revoked = AuditEvent.objects.get(action="grant.revoked", target_id=str(grant.pk))
    assert revoked.data["end_reason"] == "eligibility_lost"
    cancelled = AuditEvent.objects.get(action="request.cancelled", target_id=str(pending.pk))
    assert cancelled.data["end_reason"] == "eligibility_lost"


def assert_kept(grant, pending):
    assert fresh(grant).status == "active" and in_target(grant.user)
    assert fresh(pending).status == "pending"


# --- Every change that removes eligibility ---------------------------------------------------------


def test_leaving_the_eligible_group_ends_the_grant_and_cancels_the_request(
    world, member, dba, django_capture_on_commit_callbacks
):
    grant, pending = world
    with django_capture_on_commit_callbacks(execute=True):
        member.groups.remove(dba)
    assert_lost(grant, pending)
    event = AuditEvent.objects.get(action="request.cancelled", target_id=str(pending.pk))
    assert (event.channel, event.actor_name, event.data["cause"]) == (
        "worker",
        "system",
        "left a group that made them eligible",
    )


def test_the_group_dropping_the_member_acts_the_same(world, member, dba, django_capture_on_commit_callbacks):
    grant, pending = world
    with django_capture_on_commit_callbacks(execute=True):
        dba.user_set.remove(member)
    assert_lost(grant, pending)


@pytest.mark.parametrize(
    "change",
    [
        lambda user, group: user.groups.clear(),
        lambda user, group: group.user_set.clear(),
        lambda user, group: user.groups.set([GroupFactory(name="web")]),
        lambda user, group: group.user_set.set([UserFactory(username="zoe")]),
        lambda user, group: group.delete(),
    ],
    ids=["user-clears-groups", "group-clears-members", "user-groups-set", "group-members-set", "group-deleted"],
)
def test_every_way_of_leaving_the_group_acts(world, member, dba, change, django_capture_on_commit_callbacks):
    grant, pending = world
    with django_capture_on_commit_callbacks(execute=True):
        change(member, dba)
    assert_lost(grant, pending)


def test_deactivating_the_account_ends_the_grant_and_cancels_the_request(
    world, member, django_capture_on_commit_callbacks
):
    grant, pending = world
    member.is_active = False
    with django_capture_on_commit_callbacks(execute=True):
        member.save()
    assert_lost(grant, pending, why="account deactivated")


def test_deleting_the_eligibility_acts_on_every_member_of_its_group(
    world, member, dba, django_capture_on_commit_callbacks
):
    grant, pending = world
    with django_capture_on_commit_callbacks(execute=True):
        Eligibility.objects.filter(group=dba).delete()
    assert_lost(grant, pending)


def _as_posted(response) -> dict:
    """The data the admin's change form would post back unchanged (main form and inlines)."""
    data = {}

    def add(form):
        for field in form:
            value = field.value()
            if isinstance(field.field, forms.BooleanField):
                if value:
                    data[field.html_name] = "on"
            elif value is not None:
                data[field.html_name] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


def test_deleting_the_eligibility_in_the_admin_acts_on_every_member_of_its_group(
    world, client, admin_user, django_capture_on_commit_callbacks
):
    grant, pending = world
    sign_in_verified(client, admin_user)  # the admin needs a verified, fresh second factor
    for role in (grant.role, pending.role):
        page = f"/admin/broker/role/{role.pk}/change/"
        data = _as_posted(client.get(page))
        data["eligibilities-0-DELETE"] = "on"
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(page, data)
        assert response.status_code == 302, response.context["adminform"].form.errors
    assert not Eligibility.objects.exists()
    assert_lost(grant, pending)


def test_changing_an_eligibility_to_another_group_acts_on_the_old_members(
    world, dba, django_capture_on_commit_callbacks
):
    grant, pending = world
    with django_capture_on_commit_callbacks(execute=True):
        for row in Eligibility.objects.filter(group=dba):
            row.group = GroupFactory(name="web")
            row.save()
    assert_lost(grant, pending)


def test_retiring_the_role_ends_its_grants_as_role_retired(world, django_capture_on_commit_callbacks):
    grant, _ = world
    with django_capture_on_commit_callbacks(execute=True):
        grant.role.retired_at = timezone.now()
        grant.role.save()
    grant = fresh(grant)
    assert (grant.status, grant.end_reason, grant.end_comment) == ("revoked", "role_retired", "the role was retired")


def test_someone_still_eligible_another_way_keeps_everything(world, member, dba, django_capture_on_commit_callbacks):
    grant, pending = world
    for role in (grant.role, pending.role):
        EligibilityFactory(role=role, user=member)
    with django_capture_on_commit_callbacks(execute=True):
        member.groups.remove(dba)
    assert_kept(grant, pending)


def test_leaving_a_group_that_gives_no_eligibility_changes_nothing(world, member, django_capture_on_commit_callbacks):
    grant, pending = world
    member.groups.add(GroupFactory(name="web"))
    with django_capture_on_commit_callbacks(execute=True):
        member.groups.remove(Group.objects.get(name="web"))
    assert_kept(grant, pending)


def test_a_scheduled_grant_ends_too(member, dba, make_role, request_role, approver, django_capture_on_commit_callbacks):
    role = make_role(stages=[[approver]], slug="later", eligible=[])
    EligibilityFactory(role=role, group=dba)
    req = request_role(role, starts_at=timezone.now() + timedelta(days=1))
    grant = approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL).grant
    with django_capture_on_commit_callbacks(execute=True):
        member.groups.remove(dba)
    assert (fresh(grant).status, grant.end_reason) == ("revoked", "eligibility_lost")


def test_a_person_who_ever_asked_for_a_role_cannot_be_deleted_only_deactivated(world, member):
    grant, _ = world
    with pytest.raises(ProtectedError):
        member.delete()
    assert fresh(grant).status == "active"


# --- When it acts ------------------------------------------------------------------------------


def test_the_reaction_is_queued_for_after_the_commit_and_not_before(
    world, member, dba, django_capture_on_commit_callbacks
):
    grant, pending = world
    with django_capture_on_commit_callbacks() as callbacks:
        member.groups.remove(dba)
    assert_kept(grant, pending)  # the change has not committed yet
    assert len(callbacks) == 1
    callbacks[0]()  # the commit: the task runs (eagerly here, in the worker in production)
    assert_lost(grant, pending)


def test_a_change_that_rolls_back_queues_nothing(world, member, dba, django_capture_on_commit_callbacks):
    grant, pending = world
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        member.groups.remove(dba)
        raise RuntimeError("the admin's save failed")
    assert callbacks == []
    assert_kept(grant, pending)


def test_the_periodic_check_catches_changes_that_send_no_signal(world, member):
    from approvals.tasks import sweep_eligibility

    grant, pending = world
    type(member).objects.filter(pk=member.pk).update(is_active=False)  # no signal, no task
    assert sweep_eligibility.delay().get() == {"requests_cancelled": [pending.pk], "grants_ended": [grant.pk]}
    assert_lost(grant, pending, why="account deactivated")


def test_running_it_twice_does_nothing_the_second_time(world, member, dba):
    from approvals import eligibility

    grant, pending = world
    with mock.patch("approvals.signals.enqueue_on_commit"):
        member.groups.remove(dba)
    first = eligibility.eligibility_enforce(user_ids=[member.pk], cause="test")
    events = AuditEvent.objects.count()
    second = eligibility.eligibility_enforce(user_ids=[member.pk], cause="test")
    assert (first.requests_cancelled, first.grants_ended) == ([pending.pk], [grant.pk])
    assert not second and AuditEvent.objects.count() == events


def test_an_approver_cannot_approve_for_someone_no_longer_eligible(world, member, dba, approver):
    _, pending = world
    with mock.patch("approvals.signals.enqueue_on_commit"):  # the reaction has not run yet
        member.groups.remove(dba)
    with pytest.raises(Conflict) as refused:
        approvals.request_approve(request_id=pending.pk, approver=approver, via=Channel.PORTAL)
    assert refused.value.code == "requester_not_eligible"
    assert fresh(pending).status == "pending" and not Grant.objects.filter(request=pending).exists()


# --- The broker's own group changes --------------------------------------------------------------


ENFORCE_TASK = "approvals.tasks.enforce_eligibility"


def queued_enforcements(calls) -> list:
    return [c for c in calls.call_args_list if c.args and c.args[0] == ENFORCE_TASK]


def test_removing_access_from_the_target_group_queues_no_reaction(world, member, django_capture_on_commit_callbacks):
    grant, _ = world
    with (
        mock.patch.object(jobs, "enqueue", wraps=jobs.enqueue) as enqueued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        grants.grant_relinquish(grant_id=grant.pk, user=member, via=Channel.PORTAL)
    assert not in_target(member)
    assert queued_enforcements(enqueued) == []


def test_a_target_group_that_is_also_an_eligibility_group_ends_what_it_gave_and_stops(
    member, dba, request_role, django_capture_on_commit_callbacks
):
    # Holding "on-call" puts alice in the group on-call, which makes her eligible for "pager".
    on_call = RoleFactory(slug="on-call", auto_approve=True, connector_config={"group": "on-call"})
    pager = RoleFactory(slug="pager", auto_approve=True, connector_config={"group": "pagers"})
    EligibilityFactory(role=on_call, group=dba)
    EligibilityFactory(role=pager, group=Group.objects.get_or_create(name="on-call")[0])
    with django_capture_on_commit_callbacks(execute=True):
        first = request_role(on_call).grant
    with django_capture_on_commit_callbacks(execute=True):
        second = request_role(pager).grant
    assert (fresh(first).status, fresh(second).status) == ("active", "active")
    with (
        mock.patch.object(jobs, "enqueue", wraps=jobs.enqueue) as enqueued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        member.groups.remove(dba)
    assert (fresh(first).status, first.end_reason) == ("revoked", "eligibility_lost")
    assert (fresh(second).status, second.end_reason) == ("revoked", "eligibility_lost")
    # One reaction for dba, one for the target group on-call that doubled as an eligibility group.
    assert len(queued_enforcements(enqueued)) == 2
    assert AuditEvent.objects.filter(action="grant.revoked").count() == 2


# --- Risk signals keep their own reason ----------------------------------------------------------


def test_a_risk_signal_that_deactivates_the_account_ends_grants_as_a_risk_signal(
    world, member, admin_user, django_capture_on_commit_callbacks
):
    from broker.risk import user_signal_apply

    grant, pending = world
    with django_capture_on_commit_callbacks(execute=True):
        outcome = user_signal_apply(
            user=member, event="account_disabled", reason="left", actor=admin_user, via=Channel.API
        )
    assert outcome.grants_revoked == [grant.pk] and outcome.requests_cancelled == [pending.pk]
    assert fresh(grant).end_reason == "risk_signal"
    assert fresh(pending).status == AccessRequest.Status.CANCELLED
