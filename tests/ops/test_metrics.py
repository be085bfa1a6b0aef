"""/metrics: who may read it, and what it says after a story."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from broker.models import Eligibility, Heartbeat
from grants import services
from grants.models import Grant

pytestmark = pytest.mark.django_db

TOKEN = "metrics-token-for-tests-0123456789"


def samples(response) -> dict:
    """{(name, frozenset(labels)): value} of a Prometheus text answer."""
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def scrape(client):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    return samples(response)


@pytest.fixture(autouse=True)
def _token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []


def test_metrics_without_the_token_are_refused(client):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_metrics_with_a_wrong_token_are_refused(client):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_metrics_with_nothing_configured_are_off_in_production(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 403


@override_settings(DEBUG=True)
def test_metrics_with_nothing_configured_answer_loopback_in_development(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403


def test_an_allow_list_admits_its_networks_only(client, settings):
    import ipaddress

    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="10.9.8.7").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 403


def test_the_allow_list_reads_the_client_behind_trusted_proxies_only(client, settings):
    import ipaddress

    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.0.0.0/8")]
    settings.TRUSTED_PROXY_COUNT = 1
    # The proxy (127.0.0.1) saw 192.168.1.1; a forged left-most entry changes nothing.
    assert (
        client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.0.1, 192.168.1.1").status_code == 403
    )
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.0.0.1").status_code == 200


def test_both_token_and_allow_list_are_required_when_both_are_set(client, settings):
    import ipaddress

    settings.METRICS_ALLOWED_IPS = [ipaddress.ip_network("10.0.0.0/8")]
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.1").status_code == 401
    assert client.get("/metrics", REMOTE_ADDR="8.8.8.8", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.1", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_an_expired_grant_appears_in_the_lag_histogram(client, active_grant, clock):
    grant = active_grant(duration=timedelta(minutes=5))
    clock.shift(timedelta(minutes=5, seconds=3))  # the removal is confirmed 3 s after expires_at
    services.grant_expire(grant_id=grant.pk)

    found = scrape(client)

    assert found[("broker_revocation_lag_seconds_count", frozenset())] == 1
    assert found[("broker_revocation_lag_seconds_sum", frozenset())] == pytest.approx(3, abs=0.01)
    assert found[("broker_revocation_lag_seconds_bucket", frozenset({("le", "2.0")}))] == 0
    assert found[("broker_revocation_lag_seconds_bucket", frozenset({("le", "5.0")}))] == 1
    assert found[("broker_grants", frozenset({("status", "expired")}))] == 1
    assert found[("broker_grants_overdue", frozenset())] == 0


def test_a_grant_past_its_expiry_and_not_removed_is_overdue(client, active_grant, clock):
    active_grant(duration=timedelta(minutes=5))
    clock.shift(timedelta(minutes=6))  # no worker ended it

    found = scrape(client)

    assert found[("broker_grants_overdue", frozenset())] == 1
    assert found[("broker_grants_active", frozenset())] == 1


def test_revoke_failed_grants_are_counted(client, active_grant):
    grant = active_grant()
    Grant.objects.filter(pk=grant.pk).update(status=Grant.Status.REVOKE_FAILED)

    assert scrape(client)[("broker_grants_revoke_failed", frozenset())] == 1


def test_requests_are_counted_by_role_and_outcome(client, role, request_role, approver):
    from django.utils import timezone

    from approvals import services as approvals
    from broker.models import Channel

    request_role(role)
    assert scrape(client)[("broker_requests_pending", frozenset({("role", "db-admin")}))] == 1
    req = role.requests.get()
    approvals.request_deny(
        request_id=req.pk, approver=approver, comment="no", via=Channel.PORTAL, mfa_at=timezone.now()
    )

    found = scrape(client)

    assert found[("broker_requests_pending", frozenset({("role", "db-admin")}))] == 0
    assert found[("broker_requests_created_total", frozenset({("role", "db-admin")}))] == 1
    assert found[("broker_requests_decided_total", frozenset({("role", "db-admin"), ("outcome", "denied")}))] == 1


def test_the_audit_chain_and_the_heartbeat_are_reported(client, clock):
    from django.utils import timezone

    from broker import audit
    from broker.audit.status import store_verification

    store_verification(audit.verify())
    Heartbeat.objects.create(name="worker", at=timezone.now() - timedelta(seconds=4), worker="w1")

    found = scrape(client)

    assert found[("broker_audit_chain_ok", frozenset())] == 1
    assert found[("broker_audit_last_verification_age_seconds", frozenset())] == 0
    assert found[("broker_worker_heartbeat_age_seconds", frozenset())] == 4


def test_a_broken_chain_is_reported(client):
    from django.db import transaction

    from broker import audit
    from broker.audit.status import store_verification
    from broker.models import AuditEvent, Channel

    with transaction.atomic():
        audit.record("test.event", actor=None, target=None, via=Channel.CLI)
    AuditEvent.objects.update(data={"changed": True})
    store_verification(audit.verify())

    assert scrape(client)[("broker_audit_chain_ok", frozenset())] == 0


def test_api_responses_are_counted_by_status(client):
    before = scrape(client).get(
        ("broker_http_responses_total", frozenset({("surface", "api"), ("method", "GET"), ("status", "401")})), 0
    )
    client.get("/api/v1/roles/")

    after = scrape(client)

    key = ("broker_http_responses_total", frozenset({("surface", "api"), ("method", "GET"), ("status", "401")}))
    assert after[key] == before + 1


def test_connector_calls_are_timed_and_failures_counted(client, active_grant, monkeypatch):
    from grants.connectors.django_group import DjangoGroupConnector

    active_grant()
    found = scrape(client)
    key = (
        "broker_connector_call_duration_seconds_count",
        frozenset({("connector", "django_group"), ("operation", "grant")}),
    )
    assert found[key] >= 1

    def refuse(self, user, event):
        raise RuntimeError("target says no")

    monkeypatch.setattr(DjangoGroupConnector, "revoke", refuse)
    grant = Grant.objects.get()
    errors = (
        "broker_connector_call_errors_total",
        frozenset({("connector", "django_group"), ("operation", "revoke"), ("kind", "error")}),
    )
    before = found.get(errors, 0)
    services.grant_relinquish(grant_id=grant.pk, user=grant.user, via="portal")

    assert scrape(client)[errors] == before + 1


def test_unused_eligibilities_are_counted_per_role(client, role, requester):
    Eligibility.objects.filter(role=role, user=requester).update(created_at=timezone.now() - timedelta(days=200))
    assert scrape(client)[("broker_unused_eligibilities", frozenset({("role", "db-admin")}))] == 1
