"""A real worker and beat against PostgreSQL and Redis switch a grant on and off on time, even after a crash."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from approvals import services as approvals
from broker import audit
from broker.models import AuditEvent, Channel
from grants.models import Grant
from tests.factories import EligibilityFactory, RoleFactory, UserFactory
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox(transactional_db):
    user = UserFactory(username="alice")
    role = RoleFactory(slug="sandbox", auto_approve=True, connector_config={"group": "sandbox-admins"})
    EligibilityFactory(role=role, user=user)
    return user, role


def in_group(user) -> bool:
    return Group.objects.filter(name="sandbox-admins", user=user).exists()


def fresh(grant: Grant) -> Grant:
    grant.refresh_from_db()
    return grant


def test_worker_activates_a_short_grant_and_removes_it_within_two_seconds_of_expiry(worker, sandbox, report_figure):
    user, role = sandbox
    req = approvals.request_create(
        requester=user, role=role, duration=timedelta(seconds=4), justification="x", via=Channel.API
    )
    grant = req.grant
    wait_for(lambda: fresh(grant).status == "active", timeout=10, what="activation by the worker")
    assert in_group(user)
    assert grant.activated_at - grant.starts_at < timedelta(seconds=2)

    wait_for(lambda: fresh(grant).status == "expired", timeout=15, what="removal by the worker")
    lag = grant.ended_at - grant.expires_at
    report_figure(f"revocation lag after expires_at (real worker, ETA task): {lag.total_seconds():.3f} s")
    assert timedelta(0) <= lag < timedelta(seconds=2)
    assert not in_group(user)
    assert AuditEvent.objects.filter(action="grant.expired", target_id=str(grant.pk), channel="worker").count() == 1
    assert audit.verify().ok


def test_sweeper_of_a_new_worker_removes_the_grant_after_the_first_worker_was_killed(worker, sandbox, report_figure):
    user, role = sandbox
    req = approvals.request_create(
        requester=user, role=role, duration=timedelta(seconds=5), justification="x", via=Channel.API
    )
    grant = req.grant
    wait_for(lambda: fresh(grant).status == "active", timeout=10, what="activation")
    # The ETA revoke task now sits in this worker's memory, unacknowledged; SIGKILL loses it
    # until Redis's visibility timeout (an hour). Only the sweeper can save the day.
    worker.kill()
    assert timezone.now() < grant.expires_at, "the worker must die before the grant expires"
    worker.start()
    wait_for(lambda: fresh(grant).status == "expired", timeout=20, what="removal by the new worker's sweeper")
    lag = grant.ended_at - grant.expires_at
    report_figure(f"revocation lag after SIGKILL of the worker (new worker's sweeper): {lag.total_seconds():.3f} s")
    assert lag < timedelta(seconds=5)
    assert not in_group(user)
