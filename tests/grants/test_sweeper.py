"""The sweeper, the ETA push, and connector failures with retries and backoff."""

from datetime import timedelta

import pytest
from django.test import override_settings

from approvals import services as approvals
from broker.models import AuditEvent, Channel
from grants import services, tasks
from grants.connectors import REGISTRY, ConnectorError
from grants.connectors.django_group import DjangoGroupConnector
from grants.models import Grant
from tests.conftest import T0

pytestmark = pytest.mark.django_db


class FlakyConnector(DjangoGroupConnector):
    """A django_group connector whose target is down for the next `failures` calls."""

    name = "flaky"
    failures = 0

    def revoke(self, user, event=None):
        if FlakyConnector.failures:
            FlakyConnector.failures -= 1
            raise ConnectorError("target unreachable")
        super().revoke(user, event)

    def grant(self, user, event=None):
        if FlakyConnector.failures:
            FlakyConnector.failures -= 1
            raise ConnectorError("target unreachable")
        super().grant(user, event)


@pytest.fixture
def flaky(monkeypatch):
    monkeypatch.setitem(REGISTRY, "flaky", FlakyConnector)
    FlakyConnector.failures = 0
    return FlakyConnector


@pytest.fixture
def flaky_role(make_role, approver, flaky):
    return make_role(stages=[[approver]], connector="flaky", connector_config={"group": "flaky-holders"})


def test_sweeper_activates_due_scheduled_grants(role, request_role, approver, clock):
    req = request_role(role, starts_at=T0 + timedelta(hours=2))
    req = approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    assert services.sweep(now=T0 + timedelta(hours=1))["activated"] == 0
    clock.shift(timedelta(hours=2))
    assert services.sweep()["activated"] == 1
    assert Grant.objects.get().status == "active"


def test_sweeper_expires_overdue_active_grants(active_grant, clock, requester):
    grant = active_grant(duration=timedelta(minutes=10))
    clock.shift(timedelta(minutes=10, seconds=3))
    counts = services.sweep()
    assert counts["expired"] == 1
    grant.refresh_from_db()
    assert grant.status == "expired"
    assert grant.ended_at - grant.expires_at == timedelta(seconds=3)


def test_sweeper_twice_expires_once(active_grant, clock):
    active_grant(duration=timedelta(minutes=10))
    clock.shift(timedelta(minutes=11))
    services.sweep()
    services.sweep()
    assert AuditEvent.objects.filter(action="grant.expired").count() == 1


def test_sweeper_queues_an_eta_task_for_grants_coming_within_the_horizon(active_grant, clock, monkeypatch):
    queued = []
    monkeypatch.setattr(tasks.expire_grant, "apply_async", lambda args, eta: queued.append((args, eta)))
    grant = active_grant(duration=timedelta(hours=1))  # beyond the 10 min horizon: nothing queued at activation
    assert grant.eta_queued_for is None
    clock.shift(timedelta(minutes=51))
    services.sweep()
    services.sweep()
    assert queued == [((grant.pk,), grant.expires_at)]


def test_activation_queues_an_eta_task_when_expiry_is_within_the_horizon(
    role, request_role, approver, django_capture_on_commit_callbacks, monkeypatch
):
    queued = []
    monkeypatch.setattr(tasks.expire_grant, "apply_async", lambda args, eta: queued.append((args, eta)))
    monkeypatch.setattr(tasks.activate_grant, "delay", lambda pk: services.grant_activate(grant_id=pk))
    with django_capture_on_commit_callbacks(execute=True):
        req = request_role(role, duration=timedelta(minutes=5))
        req = approvals.request_approve(request_id=req.pk, approver=approver, via=Channel.PORTAL)
    grant = Grant.objects.get()
    assert grant.status == "active"
    assert queued == [((grant.pk,), grant.expires_at)]


def test_connector_failure_on_revoke_keeps_the_grant_revoking_with_the_error(
    flaky_role, active_grant, requester, clock
):
    grant = active_grant(target_role=flaky_role)
    FlakyConnector.failures = 1
    grant = services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
    assert grant.status == "revoking"
    assert grant.last_error == "target unreachable"
    assert not grant.is_effective()
    assert grant.next_attempt_at == T0 + timedelta(seconds=2)
    assert requester.groups.filter(name="flaky-holders").exists()
    assert [e.action for e in AuditEvent.objects.order_by("seq")][-2:] == ["grant.ending", "grant.connector_failed"]


def test_removal_is_retried_with_exponential_backoff_until_confirmed(flaky_role, active_grant, requester, clock):
    grant = active_grant(target_role=flaky_role)
    FlakyConnector.failures = 3
    grant = services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
    delays = [grant.next_attempt_at - T0]
    for _ in range(2):
        clock.move_to(grant.next_attempt_at)
        grant = services.grant_remove(grant_id=grant.pk)
        delays.append(grant.next_attempt_at - grant.end_requested_at)
    assert [d.total_seconds() for d in delays] == [2, 2 + 4, 2 + 4 + 8]
    clock.move_to(grant.next_attempt_at)
    grant = services.grant_remove(grant_id=grant.pk)
    assert (grant.status, grant.end_reason) == ("revoked", "relinquished")
    assert not requester.groups.filter(name="flaky-holders").exists()


def test_retry_before_the_backoff_has_passed_does_nothing(flaky_role, active_grant, requester, clock):
    grant = active_grant(target_role=flaky_role)
    FlakyConnector.failures = 1
    services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
    assert services.grant_remove(grant_id=grant.pk).attempts == 1


@override_settings(REVOKE_MAX_ATTEMPTS=3)
def test_removal_becomes_revoke_failed_when_retries_run_out(flaky_role, active_grant, requester, clock):
    grant = active_grant(target_role=flaky_role)
    FlakyConnector.failures = 10
    grant = services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
    while grant.status == "revoking":
        clock.move_to(grant.next_attempt_at)
        grant = services.grant_remove(grant_id=grant.pk)
    assert grant.status == "revoke_failed"
    assert grant.attempts == 3
    assert not grant.is_effective()
    assert AuditEvent.objects.filter(action="grant.revoke_failed").count() == 1


@override_settings(REVOKE_MAX_ATTEMPTS=1)
def test_revoke_failed_is_retried_daily_by_the_sweeper_and_then_ends(flaky_role, active_grant, requester, clock):
    grant = active_grant(target_role=flaky_role)
    FlakyConnector.failures = 1
    grant = services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
    assert grant.status == "revoke_failed"
    clock.shift(timedelta(hours=23))
    services.sweep()
    grant.refresh_from_db()
    assert grant.status == "revoke_failed"
    clock.shift(timedelta(hours=1))
    services.sweep()
    grant.refresh_from_db()
    assert grant.status == "revoked"


@override_settings(REVOKE_MAX_ATTEMPTS=1)
def test_revoke_failed_can_be_retried_by_hand_at_once(flaky_role, active_grant, requester):
    grant = active_grant(target_role=flaky_role)
    FlakyConnector.failures = 1
    services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
    assert services.grant_remove(grant_id=grant.pk, force=True).status == "revoked"


def test_expiry_with_the_target_down_is_never_marked_expired(flaky_role, active_grant, clock):
    grant = active_grant(target_role=flaky_role, duration=timedelta(minutes=5))
    FlakyConnector.failures = 1
    clock.shift(timedelta(minutes=5))
    grant = services.grant_expire(grant_id=grant.pk)
    assert (grant.status, grant.ended_at) == ("revoking", None)
    clock.move_to(grant.next_attempt_at)
    services.sweep()
    grant.refresh_from_db()
    assert grant.status == "expired"


def test_connector_that_claims_success_but_leaves_access_is_not_believed(active_grant, requester, monkeypatch, role):
    grant = active_grant()
    monkeypatch.setattr(DjangoGroupConnector, "revoke", lambda self, user, event=None: None)
    grant = services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
    assert grant.status == "revoking"
    assert "still shows the access" in grant.last_error


def test_activation_failure_is_retried_then_succeeds(flaky_role, request_role, approver, requester, clock):
    req = approvals.request_approve(request_id=request_role(flaky_role).pk, approver=approver, via=Channel.PORTAL)
    FlakyConnector.failures = 1
    grant = services.grant_activate(grant_id=req.grant.pk)
    assert (grant.status, grant.attempts) == ("scheduled", 1)
    clock.move_to(grant.next_attempt_at)
    services.sweep()
    grant.refresh_from_db()
    assert grant.status == "active"


@override_settings(ACTIVATE_MAX_ATTEMPTS=2)
def test_activation_that_keeps_failing_ends_as_failed(flaky_role, request_role, approver, requester, clock):
    req = approvals.request_approve(request_id=request_role(flaky_role).pk, approver=approver, via=Channel.PORTAL)
    FlakyConnector.failures = 2
    grant = services.grant_activate(grant_id=req.grant.pk)
    clock.move_to(grant.next_attempt_at)
    grant = services.grant_activate(grant_id=grant.pk)
    assert (grant.status, grant.end_reason) == ("failed", "activation_failed")


def test_scheduled_grant_whose_window_passed_is_never_activated(role, request_role, approver, clock, requester):
    req = approvals.request_approve(
        request_id=request_role(role, duration=timedelta(minutes=5)).pk, approver=approver, via=Channel.PORTAL
    )
    clock.shift(timedelta(minutes=6))
    grant = services.grant_activate(grant_id=req.grant.pk)
    assert (grant.status, grant.end_reason) == ("expired", "not_activated")
    assert not requester.groups.filter(name=role.connector_config["group"]).exists()
