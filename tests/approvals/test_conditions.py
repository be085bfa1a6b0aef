"""Role conditions on the ask path (new requests, extensions) and at activation of scheduled grants."""

import ipaddress
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import RequestFactory, override_settings

from approvals import services
from broker import audit
from broker.audit.timeline import describe
from broker.errors import NotAllowed
from broker.http import device_posture
from broker.models import AuditEvent, Channel
from grants import services as grant_services
from grants.models import Grant
from tests.conftest import T0

pytestmark = pytest.mark.django_db

# T0 is Monday 2 March 2026, 09:00 UTC: 10:00 in Berlin.
OFFICE_HOURS = {
    "time_zone": "Europe/Berlin",
    "windows": [{"days": ["mon", "tue", "wed", "thu", "fri"], "hours": "08:00-18:00"}],
}


def with_conditions(role, **conditions):
    role.conditions = conditions
    role.save(update_fields=["conditions"])
    return role


def test_a_request_inside_the_roles_window_is_created(role, request_role, clock):
    with_conditions(role, **OFFICE_HOURS)
    assert request_role(role).status == "pending"


def test_a_request_outside_the_roles_window_is_refused_saying_which_condition_and_why(role, request_role, clock):
    with_conditions(role, **OFFICE_HOURS)
    clock.move_to(T0 + timedelta(days=5))  # Saturday
    with pytest.raises(NotAllowed) as info:
        request_role(role)
    assert info.value.code == "condition_failed"
    assert [c["condition"] for c in info.value.conditions] == ["window"]
    assert "Sat 10:00 in Europe/Berlin" in info.value.detail


def test_a_refused_request_is_audited_with_the_failed_condition(role, request_role, requester, clock):
    with_conditions(role, networks=["10.0.0.0/8"])
    with pytest.raises(NotAllowed):
        request_role(role, ip="192.0.2.5")
    event = AuditEvent.objects.get(action="request.refused")
    assert (event.actor, event.role, event.ip) == (requester, role.slug, "192.0.2.5")
    assert event.data["conditions"][0]["condition"] == "network"


def test_a_refused_request_leaves_no_request_behind(role, request_role, clock):
    with_conditions(role, networks=["10.0.0.0/8"])
    with pytest.raises(NotAllowed):
        request_role(role, ip="192.0.2.5")
    assert not role.requests.exists()


def test_a_request_from_an_allowed_network_is_created(role, request_role, clock):
    with_conditions(role, networks=["10.0.0.0/8", "2001:db8::/32"])
    assert request_role(role, ip="2001:db8::1").status == "pending"


def risk_signal(user, event="risk_high"):
    """A risk signal on record, as broker.risk writes it (without ending anything)."""
    with transaction.atomic():
        audit.record(
            "risk.signal",
            actor=None,
            target=("user", user.pk),
            via=Channel.API,
            subject=user.username,
            data={"event": event, "reason": "impossible travel"},
        )


def test_a_recent_high_risk_signal_refuses_a_role_that_allows_only_low_risk(role, request_role, requester, clock):
    with_conditions(role, max_risk="low")
    risk_signal(requester)
    with pytest.raises(NotAllowed, match="risk level is high"):
        request_role(role)


def test_a_risk_signal_older_than_the_memory_no_longer_counts(role, request_role, requester, clock, settings):
    with_conditions(role, max_risk="low")
    risk_signal(requester)
    clock.shift(settings.RISK_LEVEL_MEMORY + timedelta(seconds=1))
    assert request_role(role).status == "pending"


def test_an_extension_outside_the_window_is_refused(make_role, requester, clock):
    role = make_role(auto_approve=True, slug="ops", max_total_duration=timedelta(hours=8))
    req = services.request_create(requester=requester, role=role, justification="x", via=Channel.PORTAL)
    grant = grant_services.grant_activate(grant_id=req.grant.pk)
    with_conditions(role, time_zone="UTC", windows=[{"hours": "09:00-09:30"}])
    clock.shift(timedelta(minutes=31))
    with pytest.raises(NotAllowed) as info:
        services.request_create(
            requester=requester, extends_grant_id=grant.pk, duration=timedelta(hours=1), via=Channel.PORTAL
        )
    assert info.value.code == "condition_failed"
    assert AuditEvent.objects.get(action="request.refused").target_id == str(grant.pk)


def test_a_scheduled_grant_whose_window_has_closed_at_its_start_does_not_activate(make_role, requester, clock):
    role = make_role(auto_approve=True, slug="ops")
    with_conditions(role, time_zone="Europe/Berlin", windows=[{"hours": "08:00-18:00"}])
    req = services.request_create(
        requester=requester, role=role, justification="x", starts_at=T0 + timedelta(hours=12), via=Channel.PORTAL
    )
    clock.shift(timedelta(hours=12))  # 22:00 in Berlin
    grant = grant_services.grant_activate(grant_id=req.grant.pk)
    assert (grant.status, grant.end_reason) == (Grant.Status.FAILED, Grant.EndReason.CONDITIONS_FAILED)
    assert not requester.groups.filter(name=role.connector_config["group"]).exists()


def test_a_grant_not_activated_for_its_conditions_says_which_in_the_audit_trail(make_role, requester, clock):
    role = make_role(auto_approve=True, slug="ops")
    with_conditions(role, time_zone="Europe/Berlin", windows=[{"hours": "08:00-18:00"}])
    req = services.request_create(
        requester=requester, role=role, justification="x", starts_at=T0 + timedelta(hours=12), via=Channel.PORTAL
    )
    clock.shift(timedelta(hours=12))
    grant_services.grant_activate(grant_id=req.grant.pk)
    event = AuditEvent.objects.get(action="grant.failed")
    assert event.data["end_reason"] == "conditions_failed"
    assert [c["condition"] for c in event.data["conditions"]] == ["window"]


def test_network_conditions_are_not_checked_at_activation(make_role, requester, clock):
    role = make_role(auto_approve=True, slug="ops")
    req = services.request_create(
        requester=requester,
        role=role,
        justification="x",
        starts_at=T0 + timedelta(hours=1),
        via=Channel.PORTAL,
    )
    with_conditions(role, networks=["10.0.0.0/8"])
    clock.shift(timedelta(hours=1))
    assert grant_services.grant_activate(grant_id=req.grant.pk).status == Grant.Status.ACTIVE


@override_settings(DEVICE_POSTURE_HEADER="X-Device-Posture", DEVICE_POSTURE_TRUSTED_PROXIES=[])
def test_a_posture_header_from_an_untrusted_hop_is_ignored():
    request = RequestFactory().get("/", HTTP_X_DEVICE_POSTURE="compliant", REMOTE_ADDR="198.51.100.9")
    assert device_posture(request) is None


def test_a_posture_header_from_a_trusted_proxy_is_read(settings):
    settings.DEVICE_POSTURE_HEADER = "X-Device-Posture"
    settings.DEVICE_POSTURE_TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/24")]
    request = RequestFactory().get("/", HTTP_X_DEVICE_POSTURE="compliant", REMOTE_ADDR="10.0.0.2")
    assert device_posture(request) == "compliant"


def test_a_posture_header_is_ignored_when_no_header_is_named(settings):
    settings.DEVICE_POSTURE_HEADER = ""
    request = RequestFactory().get("/", HTTP_X_DEVICE_POSTURE="compliant", REMOTE_ADDR="127.0.0.1")
    assert device_posture(request) is None


def test_a_refusal_reads_as_a_sentence_in_the_audit_log(role, request_role, clock):
    with_conditions(role, networks=["10.0.0.0/8"])
    with pytest.raises(NotAllowed):
        request_role(role, ip="192.0.2.5")
    entry = describe(AuditEvent.objects.get(action="request.refused"))
    assert entry.title == "alice was refused db-admin: the role's conditions did not hold"
    assert entry.detail == "network: your address 192.0.2.5 is outside the allowed networks (10.0.0.0/8)"
