"""Reconciliation: standing access that no grant explains is reported, or removed on authoritative targets."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group

from broker.models import AuditEvent, Channel
from grants import services, sweeper
from grants.reconcile import reconcile
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def holders_group(role) -> Group:
    return Group.objects.get_or_create(name=role.connector_config["group"])[0]


def test_member_without_a_grant_is_reported_once_on_a_non_authoritative_target(role, outsider):
    outsider.groups.add(holders_group(role))
    assert reconcile().detected == [f"{role.slug}/mallory"]
    assert reconcile().detected == []
    assert outsider.groups.filter(pk=holders_group(role).pk).exists()
    assert AuditEvent.objects.filter(action="drift.detected", subject="mallory").count() == 1


def test_member_without_a_grant_is_removed_from_an_authoritative_target(make_role, approver, outsider):
    role = make_role(stages=[[approver]], authoritative=True)
    outsider.groups.add(holders_group(role))
    assert reconcile().removed == [f"{role.slug}/mallory"]
    assert not outsider.groups.filter(pk=holders_group(role).pk).exists()
    assert AuditEvent.objects.get(action="drift.removed").subject == "mallory"


def test_holder_of_an_effective_grant_is_left_alone(make_role, approver, active_grant, requester):
    role = make_role(stages=[[approver]], authoritative=True)
    active_grant(target_role=role)
    report = reconcile()
    assert (report.removed, report.detected) == ([], [])
    assert requester.groups.filter(name=role.connector_config["group"]).exists()


def test_effective_grant_whose_access_went_missing_is_restored(active_grant, requester, role):
    active_grant()
    requester.groups.remove(holders_group(role))
    assert reconcile().restored == [f"{role.slug}/alice"]
    assert requester.groups.filter(name=role.connector_config["group"]).exists()


def test_holder_whose_grant_is_being_removed_is_left_to_the_removal(
    make_role, approver, active_grant, requester, monkeypatch
):
    from grants.connectors.django_group import DjangoGroupConnector

    role = make_role(stages=[[approver]], authoritative=True)
    grant = active_grant(target_role=role)
    monkeypatch.setattr(DjangoGroupConnector, "revoke", lambda self, user, event=None: None)  # target ignores removals
    grant = services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
    assert grant.status == "revoking"
    assert reconcile().removed == []


def test_overdue_grant_is_left_to_the_sweeper_so_its_end_is_audited_as_an_expiry(
    make_role, approver, active_grant, requester, clock
):
    role = make_role(stages=[[approver]], authoritative=True)
    active_grant(target_role=role, duration=timedelta(minutes=5))
    clock.shift(timedelta(minutes=6))
    assert reconcile().removed == []
    sweeper.sweep()
    assert AuditEvent.objects.filter(action="grant.expired").count() == 1


def test_reconcile_command_prints_the_drift(role, capsys):
    from django.core.management import call_command

    UserFactory(username="standing").groups.add(holders_group(role))
    call_command("reconcile")
    assert f"drift    {role.slug}/standing" in capsys.readouterr().out


# --- The latest report per target --------------------------------------------------------------------


def test_each_run_keeps_the_latest_report_of_each_target(role, outsider, clock):
    from grants.models import TargetReport

    outsider.groups.add(holders_group(role))
    reconcile()
    report = TargetReport.objects.get()
    assert (report.target, report.connector, report.roles) == (
        "Django group 'db-admin-holders'",
        "django_group",
        ["db-admin"],
    )
    assert (report.outcome, report.detected, report.holders) == ("drift", ["mallory"], 1)
    first_check = report.checked_at
    outsider.groups.remove(holders_group(role))
    clock.shift(timedelta(minutes=5))
    reconcile()
    report = TargetReport.objects.get()
    assert (report.outcome, report.detected, report.holders) == ("in_sync", [], 0)
    assert report.checked_at == first_check + timedelta(minutes=5)


def test_a_target_that_cannot_be_read_is_reported_as_an_error(role, monkeypatch):
    from grants.connectors.django_group import DjangoGroupConnector
    from grants.models import TargetReport

    def unreadable(self):
        raise RuntimeError("connection refused")

    monkeypatch.setattr(DjangoGroupConnector, "holders", unreadable)
    reconcile()
    report = TargetReport.objects.get()
    assert (report.outcome, report.holders, report.errors) == ("error", None, ["db-admin: connection refused"])


def test_the_report_of_a_target_no_role_uses_any_more_goes_away(role):
    from grants.models import TargetReport

    reconcile()
    assert TargetReport.objects.count() == 1
    role.connector_config = {"group": "elsewhere"}
    role.save()
    reconcile()
    assert list(TargetReport.objects.values_list("target", flat=True)) == ["Django group 'elsewhere'"]
