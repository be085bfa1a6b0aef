"""A real worker against PostgreSQL and Redis ends the grant of someone who left the eligible group,
in the target too, within seconds: by the task queued on commit, not by the periodic sweep."""

import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from approvals import services as approvals
from broker import audit
from broker.models import AuditEvent, Channel
from grants.models import Grant
from tests.factories import EligibilityFactory, GroupFactory, RoleFactory, UserFactory
from tests.integration.conftest import Worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def slow_sweeper_worker(transactional_db, tmp_path):
    """A worker whose sweepers run only every 10 minutes: within a test, only queued tasks act."""
    w = Worker(tmp_path, sweep_interval="10m")
    w.start()
    yield w
    w.stop()


def in_target(user) -> bool:
    return Group.objects.filter(name="db-admins", user=user).exists()


def fresh(grant: Grant) -> Grant:
    grant.refresh_from_db()
    return grant


def test_leaving_the_eligible_group_removes_the_access_from_the_target_within_ten_seconds(
    slow_sweeper_worker, report_figure
):
    alice, dba = UserFactory(username="alice"), GroupFactory(name="dba")
    alice.groups.add(dba)
    role = RoleFactory(slug="db-admin", auto_approve=True, connector_config={"group": "db-admins"})
    EligibilityFactory(role=role, group=dba)
    grant = approvals.request_create(
        requester=alice, role=role, duration=timedelta(hours=1), justification="x", via=Channel.API
    ).grant
    wait_for(lambda: fresh(grant).status == "active", timeout=10, what="activation by the worker")
    assert in_target(alice)

    removed_at, started = timezone.now(), time.monotonic()
    alice.groups.remove(dba)  # committed at once (autocommit): the reaction is queued to Redis
    wait_for(lambda: not in_target(alice), timeout=10, what="removal from the target by the worker")
    seen_after = time.monotonic() - started
    grant = fresh(grant)
    lag = (grant.ended_at - removed_at).total_seconds()
    report_figure(
        f"eligibility lost -> grant ended in the target (real worker, task queued on commit): {lag:.3f} s "
        f"(seen by the test after {seen_after:.3f} s)"
    )
    assert (grant.status, grant.end_reason) == ("revoked", "eligibility_lost")
    assert lag < 10
    event = AuditEvent.objects.get(action="grant.revoked", target_id=str(grant.pk))
    assert (event.channel, event.data["end_reason"]) == ("worker", "eligibility_lost")
    assert "approvals.tasks.enforce_eligibility" in slow_sweeper_worker.logs()
    assert audit.verify().ok


def test_an_eligibility_removed_by_review_ends_the_grant_in_the_target(slow_sweeper_worker):
    from approvals import recertification
    from approvals.models import Recertification
    from broker.models import Eligibility
    from tests.factories import StageFactory

    alice, carol = UserFactory(username="alice"), UserFactory(username="carol")
    role = RoleFactory(slug="db-admin", auto_approve=True, connector_config={"group": "db-admins"})
    role.owner_users.add(carol)
    StageFactory(role=role, position=0, users=[carol])
    EligibilityFactory(
        role=role, user=alice, created_at=timezone.now() - timedelta(days=100), recertify_every=timedelta(days=90),
        recertify_grace=timedelta(days=14),
    )  # fmt: skip
    grant = approvals.request_create(
        requester=alice, role=role, duration=timedelta(hours=1), justification="x", via=Channel.API
    ).grant
    wait_for(lambda: fresh(grant).status == "active", timeout=10, what="activation by the worker")
    assert recertification.recertifications_open() == 1
    review = Recertification.objects.get()
    recertification.recertification_decide(
        task_id=review.pk, reviewer=carol, verdict="remove", comment="left the team", via=Channel.PORTAL
    )
    wait_for(lambda: not in_target(alice), timeout=10, what="removal from the target by the worker")
    assert (fresh(grant).status, fresh(grant).end_reason) == ("revoked", "eligibility_lost")
    assert not Eligibility.objects.filter(role=role, user=alice).exists()
    assert audit.verify().ok
