"""Ending grants in batches: a burst costs per batch what one grant costs, and keeps every guarantee
of the one-grant path (shared access, confirmed removal, retries, one audit event per grant)."""

from datetime import timedelta
from unittest import mock

import prometheus_client
import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from approvals import services as approvals
from broker import audit
from broker.models import AuditEvent, AuditHead, Channel
from grants import services, sweeper, tasks
from grants.connectors import REGISTRY, ConnectorError, TargetUnavailable
from grants.connectors.django_group import DjangoGroupConnector
from grants.models import Grant
from grants.push import TICK, tick_of
from notifications import tasks as notification_tasks
from tests.conftest import T0
from tests.factories import EligibilityFactory, RoleFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def burst(clock):
    """make(n): n people holding the auto-approved role `oncall` (group `oncall`), all ending in an hour."""

    def make(n, *, role=None, group="oncall"):
        role = role or RoleFactory(slug=f"oncall-{group}", auto_approve=True, connector_config={"group": group})
        grants = []
        for i in range(n):
            user = UserFactory(username=f"{group}-{i}")
            EligibilityFactory(role=role, user=user)
            req = approvals.request_create(
                requester=user, role=role, duration=timedelta(hours=1), justification="shift", via=Channel.API
            )
            grants.append(services.grant_activate(grant_id=req.grant.pk))
        return role, grants

    return make


def members(group="oncall") -> set[str]:
    return set(Group.objects.get(name=group).user_set.values_list("username", flat=True))


def statuses(grants) -> set[str]:
    return set(Grant.objects.filter(pk__in=[g.pk for g in grants]).values_list("status", flat=True))


def test_a_burst_of_due_grants_ends_in_one_batch_with_one_audit_event_each(burst, clock):
    _role, grants = burst(12)
    clock.shift(timedelta(hours=1))
    ended, full = sweeper.expire_due()
    assert (ended, full) == (12, False)
    assert statuses(grants) == {"expired"}
    assert members() == set()
    events = AuditEvent.objects.filter(action="grant.expired")
    assert sorted(int(e.target_id) for e in events) == sorted(g.pk for g in grants)
    assert {e.data["lag_seconds"] for e in events} == {0.0}
    assert audit.verify().ok


def calls(operation, *, errors=False) -> float:
    name = "broker_connector_call_errors_total" if errors else "broker_connector_call_duration_seconds_count"
    labels = {"connector": "django_group", "operation": operation} | ({"kind": "error"} if errors else {})
    return prometheus_client.REGISTRY.get_sample_value(name, labels) or 0


def test_a_batched_end_is_timed_in_the_connector_metrics_as_one_revoke_many(burst, clock):
    burst(3)
    before = calls("revoke_many")
    clock.shift(timedelta(hours=1))
    sweeper.expire_due()
    assert calls("revoke_many") == before + 1


def test_a_batch_the_target_refuses_is_counted_as_a_failed_revoke_many(burst, clock, monkeypatch):
    burst(2)

    def refuse(self, items):
        raise ConnectorError("target refused")

    monkeypatch.setattr(DjangoGroupConnector, "revoke_many", refuse)
    before = calls("revoke_many", errors=True)
    clock.shift(timedelta(hours=1))
    sweeper.expire_due()
    assert calls("revoke_many", errors=True) == before + 1


def test_ending_thirty_grants_costs_the_same_queries_as_ending_three(burst, clock):
    burst(3, group="few")
    _large, many = burst(30, group="many")
    Grant.objects.filter(pk__in=[g.pk for g in many]).update(expires_at=T0 + timedelta(hours=3))
    clock.shift(timedelta(hours=1))
    with CaptureQueriesContext(connection) as three:
        assert sweeper.expire_due() == (3, False)
    clock.shift(timedelta(hours=2))
    with CaptureQueriesContext(connection) as thirty:
        assert sweeper.expire_due() == (30, False)
    assert len(thirty) == len(three)


def test_a_full_batch_sends_a_helper_and_the_rest_is_ended_by_the_next(burst, clock, monkeypatch):
    _role, grants = burst(5)
    clock.shift(timedelta(hours=1))
    helpers = []
    monkeypatch.setattr(tasks.expire_due, "delay", lambda: helpers.append("expire_due"))
    assert sweeper.expire_due(limit=3, fan_out=True) == (3, True)
    assert helpers == ["expire_due"]
    assert sweeper.expire_due(limit=3, fan_out=True) == (2, False)
    assert helpers == ["expire_due"]
    assert statuses(grants) == {"expired"}


class FailsFor(DjangoGroupConnector):
    """django_group whose removal fails for one person (its revoke is overridden, so batches call it)."""

    name = "fails_for"
    who = "oncall-1"

    def revoke(self, user, event=None):
        if user.get_username() == FailsFor.who:
            raise ConnectorError("target refused")
        super().revoke(user, event)


def test_a_failure_of_one_grant_falls_back_to_its_own_retries_and_the_others_end(burst, clock, monkeypatch):
    monkeypatch.setitem(REGISTRY, FailsFor.name, FailsFor)
    role = RoleFactory(slug="oncall", auto_approve=True, connector=FailsFor.name, connector_config={"group": "oncall"})
    _role, grants = burst(4, role=role)
    clock.shift(timedelta(hours=1))
    sweeper.expire_due()
    failing = Grant.objects.get(user__username="oncall-1")
    assert failing.status == "revoking"
    assert (failing.attempts, failing.last_error) == (1, "target refused")
    assert failing.next_attempt_at is not None
    assert statuses([g for g in grants if g.pk != failing.pk]) == {"expired"}
    assert members() == {"oncall-1"}
    assert AuditEvent.objects.filter(action="grant.connector_failed", target_id=str(failing.pk)).count() == 1
    FailsFor.who = ""
    clock.shift(timedelta(minutes=1))
    sweeper.sweep()
    assert Grant.objects.get(pk=failing.pk).status == "expired"
    assert members() == set()
    FailsFor.who = "oncall-1"


class Hangs(DjangoGroupConnector):
    """A remote target that never answers within its timeout; counts the calls made to it."""

    name = "hangs"
    local = False
    calls: list[str] = []

    def revoke(self, user, event=None):
        Hangs.calls.append(user.get_username())
        raise TargetUnavailable("did not answer within 1 s")


class Remote(DjangoGroupConnector):
    """A remote target that answers; notes who was still in the `oncall` group when it was called."""

    name = "remote"
    local = False
    seen: list[set[str]] = []

    def revoke(self, user, event=None):
        Remote.seen.append(members("oncall"))
        super().revoke(user, event)


def test_a_target_that_does_not_answer_is_called_once_per_batch_not_once_per_grant(burst, clock, monkeypatch):
    monkeypatch.setitem(REGISTRY, Hangs.name, Hangs)
    monkeypatch.setattr(Hangs, "calls", [])
    role = RoleFactory(slug="hangs", auto_approve=True, connector=Hangs.name, connector_config={"group": "hangs"})
    _role, grants = burst(3, role=role, group="hangs")
    clock.shift(timedelta(hours=1))
    sweeper.expire_due()
    assert len(Hangs.calls) == 1
    assert statuses(grants) == {"revoking"}


def test_a_batch_removes_access_in_the_brokers_own_database_before_calling_remote_targets(burst, clock, monkeypatch):
    monkeypatch.setitem(REGISTRY, Remote.name, Remote)
    monkeypatch.setattr(Remote, "seen", [])
    role = RoleFactory(slug="remote", auto_approve=True, connector=Remote.name, connector_config={"group": "remote"})
    burst(1, role=role, group="remote")  # created first, so first in the batch's order of targets
    burst(2)
    clock.shift(timedelta(hours=1))
    assert sweeper.expire_due() == (3, False)
    assert Remote.seen == [set()]


def test_a_target_that_fails_for_the_whole_batch_sends_every_grant_to_its_retries(burst, clock):
    _role, grants = burst(3)
    clock.shift(timedelta(hours=1))
    with (
        mock.patch.object(DjangoGroupConnector, "revoke_many", side_effect=ConnectorError("down")),
        mock.patch.object(DjangoGroupConnector, "revoke", side_effect=ConnectorError("down")),
    ):
        sweeper.expire_due()
    assert statuses(grants) == {"revoking"}
    assert members() == {"oncall-0", "oncall-1", "oncall-2"}
    assert not Grant.objects.effective().filter(pk__in=[g.pk for g in grants]).exists()


def test_access_another_active_grant_still_gives_is_kept_and_removed_with_the_last(clock):
    alice = UserFactory(username="alice")
    first = RoleFactory(slug="a", auto_approve=True, connector_config={"group": "shared"})
    second = RoleFactory(slug="b", auto_approve=True, connector_config={"group": "shared"})
    for role in (first, second):
        EligibilityFactory(role=role, user=alice)
    short = approvals.request_create(
        requester=alice, role=first, duration=timedelta(hours=1), justification="x", via=Channel.API
    )
    long = approvals.request_create(
        requester=alice, role=second, duration=timedelta(hours=2), justification="x", via=Channel.API
    )
    for req in (short, long):
        services.grant_activate(grant_id=req.grant.pk)
    clock.shift(timedelta(hours=1))
    sweeper.expire_due()
    assert statuses([short.grant]) == {"expired"}
    assert members("shared") == {"alice"}
    clock.shift(timedelta(hours=1))
    sweeper.expire_due()
    assert statuses([long.grant]) == {"expired"}
    assert members("shared") == set()


def test_two_grants_of_one_person_on_one_group_ending_in_one_batch_remove_the_membership(clock):
    alice = UserFactory(username="alice")
    roles = [RoleFactory(slug=s, auto_approve=True, connector_config={"group": "shared"}) for s in ("a", "b")]
    grants = []
    for role in roles:
        EligibilityFactory(role=role, user=alice)
        req = approvals.request_create(
            requester=alice, role=role, duration=timedelta(hours=1), justification="x", via=Channel.API
        )
        grants.append(services.grant_activate(grant_id=req.grant.pk))
    clock.shift(timedelta(hours=1))
    assert sweeper.expire_due() == (2, False)
    assert statuses(grants) == {"expired"}
    assert members("shared") == set()


def test_an_audit_append_that_fails_rolls_back_the_whole_batch_and_the_next_attempt_succeeds(burst, clock):
    _role, grants = burst(3)
    clock.shift(timedelta(hours=1))
    head = AuditHead.objects.get().seq
    with mock.patch.object(audit, "record_many", side_effect=RuntimeError("disk full")), pytest.raises(RuntimeError):
        sweeper.expire_due()
    assert statuses(grants) == {"active"}
    assert members() == {"oncall-0", "oncall-1", "oncall-2"}
    assert AuditHead.objects.get().seq == head
    assert sweeper.expire_due() == (3, False)
    assert statuses(grants) == {"expired"}
    assert members() == set()
    assert AuditEvent.objects.filter(action="grant.expired").count() == 3
    assert audit.verify().ok


def test_a_burst_queues_one_message_task_and_every_holder_hears_of_the_end(
    burst, clock, mailoutbox, django_capture_on_commit_callbacks
):
    _role, grants = burst(3)
    clock.shift(timedelta(hours=1))
    mailoutbox.clear()
    with (
        mock.patch.object(
            notification_tasks.notify_many, "delay", wraps=notification_tasks.notify_many.delay
        ) as queued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        sweeper.expire_due()
    assert queued.call_count == 1
    assert sorted(m.to[0] for m in mailoutbox) == sorted(g.user.email for g in grants)


def test_a_subclass_that_overrides_revoke_is_called_one_by_one_in_a_batch():
    calls = []

    class Custom(DjangoGroupConnector):
        name = "custom_group"

        def revoke(self, user, event=None):
            calls.append(user.get_username())

    users = [UserFactory(username=f"u{i}") for i in range(2)]
    assert Custom({"group": "g"}).revoke_many([(u, None) for u in users]) == [None, None]
    assert calls == ["u0", "u1"]


def test_expiry_ticks_round_up_to_the_tick():
    assert tick_of(T0) == T0
    assert tick_of(T0 + timedelta(microseconds=1)) == T0 + TICK
    assert tick_of(T0 + timedelta(milliseconds=250)) == T0 + timedelta(milliseconds=300)


def test_grants_expiring_within_one_tick_queue_one_task(burst, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr(tasks.expire_due, "apply_async", lambda args, eta: queued.append(eta))
    role = RoleFactory(slug="short", auto_approve=True, connector_config={"group": "short"})
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(3):
            user = UserFactory(username=f"s{i}")
            EligibilityFactory(role=role, user=user)
            req = approvals.request_create(
                requester=user, role=role, duration=timedelta(minutes=5), justification="x", via=Channel.API
            )
            services.grant_activate(grant_id=req.grant.pk)
    assert queued == [T0 + timedelta(minutes=5)]
