"""Fault injection with a real worker, PostgreSQL and Redis: whatever fails, nothing is lost and
nothing is left elevated.

Each test ends with every grant it made confirmed ended (status and target) and the audit chain
whole, with exactly one audit event per ended grant.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth.models import Group
from django.db import close_old_connections, connection
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.tokens import token_create
from approvals import services as approvals
from broker import audit, jobs
from broker.models import AuditEvent, Channel
from grants import sweeper
from grants.connectors import REGISTRY
from grants.connectors.django_group import DjangoGroupConnector
from grants.models import Grant
from tests.factories import EligibilityFactory, RoleFactory, UserFactory
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def people(n: int, role) -> list:
    users = [UserFactory(username=f"p{i}") for i in range(n)]
    for user in users:
        EligibilityFactory(role=role, user=user)
    return users


def ask(user, role, seconds: float) -> Grant:
    return approvals.request_create(
        requester=user, role=role, duration=timedelta(seconds=seconds), justification="x", via=Channel.API
    ).grant


def in_group(name: str) -> set[str]:
    group = Group.objects.filter(name=name).first()
    return set(group.user_set.values_list("username", flat=True)) if group else set()


def assert_all_ended_once(grants, group: str) -> None:
    ids = [g.pk for g in grants]
    assert set(Grant.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"expired"}
    assert in_group(group) == set()
    ended = AuditEvent.objects.filter(action="grant.expired", target_id__in=[str(i) for i in ids])
    assert sorted(int(e.target_id) for e in ended) == sorted(ids)  # one event per grant, no more
    assert audit.verify().ok


def test_a_crash_between_commit_and_publish_loses_nothing(worker):
    role = RoleFactory(slug="lost", auto_approve=True, connector_config={"group": "lost"})
    users = people(3, role)
    # The process dies after its commit and before it hands the activation task to Redis: the
    # message is never sent.
    with mock.patch.object(jobs, "enqueue") as never_sent:
        grants = [ask(u, role, 4) for u in users]
    assert never_sent.call_count == 3
    assert {g.status for g in grants} == {"scheduled"}
    wait_for(lambda: Grant.objects.filter(role=role, status="active").count() == 3, timeout=10,
             what="activation by the sweeper")  # fmt: skip
    assert in_group("lost") == {"p0", "p1", "p2"}
    wait_for(lambda: not Grant.objects.filter(role=role, status="active").exists(), timeout=15, what="expiry")
    assert_all_ended_once(grants, "lost")


def test_workers_and_beat_stopped_past_expiries_end_everything_overdue_at_restart(worker):
    role = RoleFactory(slug="outage", auto_approve=True, connector_config={"group": "outage"})
    users = people(6, role)
    grants = [ask(u, role, 3 + i * 0.5) for i, u in enumerate(users)]
    wait_for(lambda: Grant.objects.filter(role=role, status="active").count() == 6, timeout=10, what="activation")
    worker.kill()
    _, token = token_create(user=users[0], scopes=["read"], via=Channel.CLI)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    last = max(g.expires_at for g in Grant.objects.filter(role=role))
    first = Grant.objects.get(user=users[0], role=role)
    while timezone.now() < last + timedelta(seconds=2):
        asked = timezone.now()
        answer = client.get("/api/v1/check/?role=outage").json()
        if asked >= first.expires_at:  # nobody ended the grant, and check/ says no all the same
            assert answer["allowed"] is False
        time.sleep(0.2)
    assert Grant.objects.filter(role=role, status="active").count() == 6  # nobody acted while down
    assert client.get("/api/v1/check/?role=outage").json()["allowed"] is False
    worker.start()
    restarted = timezone.now()
    # The worker sweeps as soon as it is ready: not a whole SWEEP_INTERVAL later (1 s here, so
    # the test also bounds how long the catch-up may take).
    wait_for(lambda: not Grant.objects.filter(role=role, status="active").exists(), timeout=10, what="catch-up")
    ended = list(Grant.objects.filter(role=role).values_list("ended_at", flat=True))
    assert max(ended) - restarted < timedelta(seconds=5)
    assert_all_ended_once(grants, "outage")


class Counting(DjangoGroupConnector):
    """django_group that counts the removals each person gets (in batches too)."""

    name = "counting_batch"
    removed: dict[str, int] = {}
    lock = threading.Lock()

    def revoke(self, user, event=None):
        with Counting.lock:
            Counting.removed[user.get_username()] = Counting.removed.get(user.get_username(), 0) + 1
        super().revoke(user, event)


def test_three_concurrent_sweepers_over_a_batch_remove_and_audit_each_grant_once(transactional_db, monkeypatch):
    monkeypatch.setitem(REGISTRY, Counting.name, Counting)
    Counting.removed = {}
    role = RoleFactory(
        slug="counted", auto_approve=True, connector=Counting.name, connector_config={"group": "counted"}
    )
    users = people(30, role)
    grants = [ask(u, role, 300) for u in users]
    from grants import services

    for g in grants:
        services.grant_activate(grant_id=g.pk)
    later = timezone.now() + timedelta(minutes=6)
    barrier = threading.Barrier(3)

    def sweep():
        try:
            barrier.wait()
            sweeper.sweep(now=later)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    close_old_connections()
    assert Counting.removed == {u.username: 1 for u in users}
    assert_all_ended_once(grants, "counted")


def test_an_expiry_task_delivered_twice_ends_each_grant_once(worker):
    role = RoleFactory(slug="twice", auto_approve=True, connector_config={"group": "twice"})
    users = people(5, role)
    grants = [ask(u, role, 3) for u in users]
    wait_for(lambda: Grant.objects.filter(role=role, status="active").count() == 5, timeout=10, what="activation")
    eta = max(g.expires_at for g in Grant.objects.filter(role=role))
    for _ in range(2):  # the same tick delivered twice, and the old one-grant task twice too
        jobs.enqueue("grants.tasks.expire_due", eta=eta)
        jobs.enqueue("grants.tasks.expire_grant", grants[0].pk, eta=eta)
    wait_for(lambda: not Grant.objects.filter(role=role, status="active").exists(), timeout=15, what="expiry")
    time.sleep(1)  # the duplicates have run by now
    assert_all_ended_once(grants, "twice")


def test_an_audit_append_that_fails_rolls_back_the_batch_and_the_next_attempt_succeeds(transactional_db):
    role = RoleFactory(slug="rollback", auto_approve=True, connector_config={"group": "rollback"})
    users = people(4, role)
    from grants import services

    grants = [services.grant_activate(grant_id=ask(u, role, 300).pk) for u in users]
    later = timezone.now() + timedelta(minutes=6)
    with mock.patch.object(audit, "record_many", side_effect=RuntimeError("disk full")), pytest.raises(RuntimeError):
        sweeper.expire_due(now=later)
    assert set(Grant.objects.filter(role=role).values_list("status", flat=True)) == {"active"}
    assert in_group("rollback") == {u.username for u in users}  # the removal rolled back with it
    assert sweeper.expire_due(now=later) == (4, False)
    assert_all_ended_once(grants, "rollback")
