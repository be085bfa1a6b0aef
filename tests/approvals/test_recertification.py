"""Recertification: reviews of eligibilities come due, are reminded, escalated and expire; owners decide."""

from datetime import timedelta

import pytest
from django.core import mail

from approvals import recertification
from approvals.models import Recertification
from broker.errors import Conflict, Invalid, NotAllowed
from broker.models import AuditEvent, Eligibility, EligibilityExclusion
from grants.models import Grant
from tests.conftest import T0
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

EVERY, GRACE = timedelta(days=90), timedelta(days=15)


@pytest.fixture
def reviewed(role, requester, clock):
    """alice's eligibility for db-admin (carol approves stage 1, so reviews it) is recertified every 90 days."""
    Eligibility.objects.filter(role=role, user=requester).update(
        created_at=T0, recertify_every=EVERY, recertify_grace=GRACE, recertify_expire=True
    )
    return Eligibility.objects.get(role=role, user=requester)


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """The periodic task at ``now``, its messages sent."""

    def call(now):
        with django_capture_on_commit_callbacks(execute=True):
            opened = recertification.recertifications_open(now=now)
            return {"opened": opened, **recertification.recertifications_chase(now=now)}

    return call


def test_nothing_is_opened_before_the_review_is_due(reviewed, run):
    assert run(T0 + EVERY - timedelta(seconds=1))["opened"] == 0


def test_a_due_eligibility_gets_one_review_and_its_owners_are_told(reviewed, clock, approver, run):
    clock.move_to(T0 + EVERY)
    assert run(T0 + EVERY)["opened"] == 1
    assert run(T0 + EVERY)["opened"] == 0  # idempotent
    task = Recertification.objects.get()
    assert (task.who, task.status, task.due_at, task.grace_until) == (
        "alice",
        "pending",
        T0 + EVERY,
        T0 + EVERY + GRACE,
    )
    assert [m.to for m in mail.outbox] == [[approver.email]]
    assert "Review needed: may alice still ask for db-admin?" in mail.outbox[0].subject
    assert AuditEvent.objects.filter(action="recertification.opened").count() == 1


def test_an_unanswered_review_is_reminded_after_a_third_of_the_grace(reviewed, clock, run):
    run(T0 + EVERY)
    assert run(T0 + EVERY + GRACE / 3)["reminded"] == 1
    assert run(T0 + EVERY + GRACE / 3)["reminded"] == 0
    assert Recertification.objects.get().reminded_at == T0 + EVERY + GRACE / 3
    assert "Reminder: review" in mail.outbox[-1].subject


def test_an_unanswered_review_is_escalated_after_two_thirds_of_the_grace(reviewed, role, clock, settings, run):
    escalator = UserFactory(username="sre")
    role.escalation_users.add(escalator)
    run(T0 + EVERY)
    assert run(T0 + EVERY + GRACE * 2 / 3)["escalated"] == 1
    task = Recertification.objects.get()
    assert task.escalated_at == T0 + EVERY + GRACE * 2 / 3
    assert recertification.may_decide(task, escalator)
    assert escalator.email in [to for m in mail.outbox for to in m.to]


def test_an_unanswered_review_expires_and_removes_the_eligibility(reviewed, role, requester, clock, run):
    run(T0 + EVERY)
    clock.move_to(T0 + EVERY + GRACE)
    assert run(T0 + EVERY + GRACE)["expired"] == 1
    assert Recertification.objects.get().status == "expired"
    assert not Eligibility.objects.filter(pk=reviewed.pk).exists()
    assert EligibilityExclusion.objects.get(role=role, user=requester).reason == "review"


def test_without_expire_an_unanswered_review_closes_and_the_eligibility_stays(reviewed, clock, run):
    Eligibility.objects.filter(pk=reviewed.pk).update(recertify_expire=False)
    run(T0 + EVERY)
    run(T0 + EVERY + GRACE)
    reviewed.refresh_from_db()
    assert Recertification.objects.get().status == "expired"
    assert reviewed.reviewed_at == T0 + EVERY + GRACE
    assert run(T0 + EVERY + GRACE + timedelta(days=1))["opened"] == 0


def test_an_owner_confirms_and_the_next_review_counts_from_then(reviewed, approver, clock, run):
    run(T0 + EVERY)
    clock.move_to(T0 + EVERY + timedelta(days=2))
    task = recertification.recertification_decide(
        task_id=Recertification.objects.get().pk, reviewer=approver, verdict="confirm", via="portal"
    )
    assert task.status == "confirmed" and task.decided_by == approver
    reviewed.refresh_from_db()
    assert reviewed.reviewed_at == T0 + EVERY + timedelta(days=2)
    assert run(T0 + EVERY * 2)["opened"] == 0
    assert run(T0 + EVERY * 2 + timedelta(days=2))["opened"] == 1


def test_an_owner_removes_and_the_grant_it_allowed_ends(
    reviewed, approver, active_grant, clock, django_capture_on_commit_callbacks, run
):
    grant = active_grant(duration=timedelta(hours=2))
    run(T0 + EVERY)
    with django_capture_on_commit_callbacks(execute=True):
        recertification.recertification_decide(
            task_id=Recertification.objects.get().pk,
            reviewer=approver,
            verdict="remove",
            comment="moved teams",
            via="portal",
        )
    grant.refresh_from_db()
    assert grant.status == Grant.Status.REVOKED and grant.end_reason == "eligibility_lost"
    assert AuditEvent.objects.filter(action="recertification.removed").exists()


def test_removing_needs_a_comment(reviewed, approver, run):
    run(T0 + EVERY)
    with pytest.raises(Invalid, match="say why"):
        recertification.recertification_decide(
            task_id=Recertification.objects.get().pk, reviewer=approver, verdict="remove", via="portal"
        )


def test_someone_who_is_not_an_owner_may_not_decide(reviewed, outsider, run):
    run(T0 + EVERY)
    with pytest.raises(NotAllowed) as caught:
        recertification.recertification_decide(
            task_id=Recertification.objects.get().pk, reviewer=outsider, verdict="confirm", via="portal"
        )
    assert caught.value.code == "not_reviewer"


def test_nobody_reviews_their_own_eligibility(reviewed, role, requester, run):
    role.owner_users.add(requester)
    run(T0 + EVERY)
    with pytest.raises(NotAllowed) as caught:
        recertification.recertification_decide(
            task_id=Recertification.objects.get().pk, reviewer=requester, verdict="confirm", via="portal"
        )
    assert caught.value.code == "self_review"


def test_a_decided_review_cannot_be_decided_again(reviewed, approver, run):
    run(T0 + EVERY)
    pk = Recertification.objects.get().pk
    recertification.recertification_decide(task_id=pk, reviewer=approver, verdict="confirm", via="portal")
    with pytest.raises(Conflict):
        recertification.recertification_decide(task_id=pk, reviewer=approver, verdict="confirm", via="portal")


def test_named_owners_replace_the_first_stages_approvers(reviewed, role, approver, run):
    owner = UserFactory(username="owner")
    role.owner_users.add(owner)
    run(T0 + EVERY)
    task = Recertification.objects.get()
    assert recertification.may_decide(task, owner)
    assert not recertification.may_decide(task, approver)


def test_the_removals_export_as_a_policy_patch(reviewed, approver, run):
    run(T0 + EVERY)
    recertification.recertification_decide(
        task_id=Recertification.objects.get().pk, reviewer=approver, verdict="remove", comment="gone", via="portal"
    )
    patch = recertification.policy_patch(Recertification.objects.all())
    assert patch.endswith("- role: db-admin\n  remove_users: [alice]\n")
