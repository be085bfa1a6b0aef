"""Races that only a real database with real concurrent connections can reproduce (PostgreSQL)."""

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from approvals import services as approvals
from broker import audit
from broker.errors import Conflict
from broker.models import AuditEvent, Channel
from grants import services as grant_services
from grants.connectors import REGISTRY
from grants.connectors.django_group import DjangoGroupConnector
from grants.models import Grant
from tests.factories import EligibilityFactory, RoleFactory, StageFactory, UserFactory
from tests.integration.conftest import ROOT, database_url

pytestmark = pytest.mark.django_db(transaction=True)


def run_together(*calls):
    """Run the calls in threads (each with its own database connection), released at the same moment."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:  # noqa: BLE001 - the outcome is what the test inspects
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    close_old_connections()
    return results


@pytest.fixture
def cast(transactional_db):
    alice, carol, dave = (UserFactory(username=n) for n in ("alice", "carol", "dave"))
    return alice, carol, dave


def make_role(alice, approvers, required):
    role = RoleFactory(slug=f"db-{required}")
    StageFactory(role=role, required=required, users=approvers)
    EligibilityFactory(role=role, user=alice)
    return role


@pytest.mark.parametrize("required", [1, 2])
def test_two_approvers_approving_at_once_produce_exactly_one_grant(cast, required):
    alice, carol, dave = cast
    role = make_role(alice, [carol, dave], required)
    req = approvals.request_create(requester=alice, role=role, justification="x", via=Channel.API)

    outcomes = run_together(
        lambda: approvals.request_approve(request_id=req.pk, approver=carol, via=Channel.API),
        lambda: approvals.request_approve(request_id=req.pk, approver=dave, via=Channel.API),
    )
    assert Grant.objects.filter(request=req).count() == 1
    assert AuditEvent.objects.filter(action="request.approved").count() == 1
    conflicts = [o for o in outcomes if isinstance(o, Conflict)]
    assert len(conflicts) == (1 if required == 1 else 0), outcomes
    assert audit.verify().ok


class CountingConnector(DjangoGroupConnector):
    name = "counting"
    revokes = 0
    lock = threading.Lock()

    def revoke(self, user, event=None):
        with CountingConnector.lock:
            CountingConnector.revokes += 1
        super().revoke(user, event)


def test_three_concurrent_sweeps_revoke_once_and_audit_once(cast, monkeypatch):
    alice, _carol, _ = cast
    monkeypatch.setitem(REGISTRY, "counting", CountingConnector)
    CountingConnector.revokes = 0
    role = RoleFactory(slug="counted", auto_approve=True, connector="counting", connector_config={"group": "counted"})
    EligibilityFactory(role=role, user=alice)
    grant = approvals.request_create(
        requester=alice, role=role, duration=timedelta(minutes=5), justification="x", via=Channel.API
    ).grant
    assert grant_services.grant_activate(grant_id=grant.pk).status == "active"

    later = timezone.now() + timedelta(minutes=6)
    run_together(*[lambda: grant_services.sweep(now=later)] * 3)

    grant.refresh_from_db()
    assert grant.status == "expired"
    assert CountingConnector.revokes == 1
    assert AuditEvent.objects.filter(action="grant.expired", target_id=str(grant.pk)).count() == 1


def test_concurrent_writers_never_fork_the_audit_chain(cast):
    _alice, _carol, _dave = cast
    role = RoleFactory(slug="busy", auto_approve=True)
    people = [UserFactory(username=f"user{i}") for i in range(8)]
    for person in people:
        EligibilityFactory(role=role, user=person)
    run_together(
        *[
            (lambda p=p: approvals.request_create(requester=p, role=role, justification="x", via=Channel.API))
            for p in people
        ]
    )
    result = audit.verify()
    assert result.ok, result.reason
    assert result.checked == AuditEvent.objects.count() == 8 * 3  # created, approved, scheduled


def test_editing_an_audit_row_by_sql_makes_audit_verify_fail_naming_that_row(cast):
    alice, carol, _ = cast
    role = make_role(alice, [carol], 1)
    req = approvals.request_create(requester=alice, role=role, justification="routine", via=Channel.API)
    approvals.request_approve(request_id=req.pk, approver=carol, via=Channel.API)
    target = AuditEvent.objects.get(action="request.created")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE broker_auditevent SET data = jsonb_set(data, '{justification}', '\"nothing to see\"') WHERE id = %s",
            [target.pk],
        )

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "broker.settings",
        "DATABASE_URL": database_url(),
        "SECRET_KEY": settings.SECRET_KEY,
        "ALLOWED_HOSTS": "localhost",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "audit_verify"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert f"BROKEN at event #{target.seq} (row id {target.pk})" in result.stderr
    assert "edited" in result.stderr


class SlowRemovalConnector(DjangoGroupConnector):
    """A django_group whose removals take a moment, as a remote target's would."""

    name = "slow_removal"

    def revoke(self, user, event=None):
        time.sleep(0.3)
        super().revoke(user, event)


def _shared_group_roles(alice, group="shared-admins", connector="django_group"):
    roles = []
    for slug in ("shared-a", "shared-b"):
        role = RoleFactory(slug=slug, auto_approve=True, connector=connector, connector_config={"group": group})
        EligibilityFactory(role=role, user=alice)
        roles.append(role)
    return roles


def _granted(alice, role, *, activate=True):
    grant = approvals.request_create(
        requester=alice, role=role, duration=timedelta(minutes=5), justification="x", via=Channel.API
    ).grant
    return grant_services.grant_activate(grant_id=grant.pk) if activate else grant


def test_two_grants_on_one_group_ended_at_once_remove_the_membership(cast):
    alice, _carol, _ = cast
    first, second = _shared_group_roles(alice)
    for _ in range(5):  # each round is one chance for the race; without the access lock most rounds lose
        a, b = _granted(alice, first), _granted(alice, second)
        run_together(
            lambda a=a: grant_services.grant_relinquish(grant_id=a.pk, user=alice, via=Channel.API),
            lambda b=b: grant_services.grant_relinquish(grant_id=b.pk, user=alice, via=Channel.API),
        )
        assert set(Grant.objects.filter(pk__in=[a.pk, b.pk]).values_list("status", flat=True)) == {"revoked"}
        assert not alice.groups.filter(name="shared-admins").exists(), "both grants ended, and the membership stayed"


def test_two_grants_on_one_group_expiring_in_two_sweepers_remove_the_membership(cast):
    alice, _carol, _ = cast
    first, second = _shared_group_roles(alice)
    for _ in range(5):
        a, b = _granted(alice, first), _granted(alice, second)
        later = timezone.now() + timedelta(minutes=6)
        run_together(
            lambda a=a, later=later: grant_services.grant_expire(grant_id=a.pk, now=later),
            lambda b=b, later=later: grant_services.grant_expire(grant_id=b.pk, now=later),
        )
        assert set(Grant.objects.filter(pk__in=[a.pk, b.pk]).values_list("status", flat=True)) == {"expired"}
        assert not alice.groups.filter(name="shared-admins").exists()


def test_activation_racing_the_removal_of_a_sibling_keeps_the_membership(cast, monkeypatch):
    alice, _carol, _ = cast
    monkeypatch.setitem(REGISTRY, SlowRemovalConnector.name, SlowRemovalConnector)
    # The removal decides "no sibling is active" and then takes 0.3 s to remove: without the access
    # lock, the sibling's activation completes inside that gap and the removal undoes it.
    first, second = _shared_group_roles(alice, connector=SlowRemovalConnector.name)
    for _ in range(3):
        a = _granted(alice, first)
        b = _granted(alice, second, activate=False)
        run_together(
            lambda a=a: grant_services.grant_relinquish(grant_id=a.pk, user=alice, via=Channel.API),
            lambda b=b: grant_services.grant_activate(grant_id=b.pk),
        )
        b.refresh_from_db()
        assert b.status == "active"
        assert alice.groups.filter(name="shared-admins").exists(), (
            "an active grant lost its access to a sibling's removal"
        )
        grant_services.grant_relinquish(grant_id=b.pk, user=alice, via=Channel.API)
        assert not alice.groups.filter(name="shared-admins").exists()
