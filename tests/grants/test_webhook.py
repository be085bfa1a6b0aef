"""The webhook connector against a real HTTP server on 127.0.0.1 (tests/receiver.py)."""

import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core import mail
from django.test import override_settings

from broker.catalog import SECURITY_GROUP
from broker.models import AuditEvent, Channel
from grants import services
from grants.connectors import AccessEvent, ConnectorError, PermanentConnectorError, TargetUnavailable, set_access
from grants.connectors.webhook import WebhookConnector, sign, verify
from grants.models import Grant
from grants.reconcile import reconcile
from tests.factories import GroupFactory, UserFactory
from tests.receiver import Receiver

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-for-tests-only"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"


@pytest.fixture
def receiver(monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hook_role(make_role, receiver):
    return make_role(
        slug="firewall",
        auto_approve=True,
        connector="webhook",
        connector_config={"url": receiver.url, "secret_env": "HOOK_SECRET", "timeout": "1s"},
    )


def request_grant(request_role, role) -> Grant:
    """Ask for the role (auto-approved) and run the activation the worker would run."""
    grant = request_role(role, duration=timedelta(minutes=30), justification="INC-7: open port").grant
    return services.grant_activate(grant_id=grant.pk)


def test_the_event_says_what_happened_to_whom_and_why(request_role, hook_role, receiver, requester):
    grant = request_grant(request_role, hook_role)
    assert grant.status == "active"
    event = receiver.received[0].json
    assert event["type"] == "grant.activated"
    assert (event["grant"], event["user"], event["role"]) == (grant.pk, "alice", "firewall")
    assert event["justification"] == "INC-7: open port"
    assert event["expires_at"] == grant.expires_at.isoformat().replace("+00:00", "Z")
    assert receiver.received[0].headers["X-Broker-Event"] == "grant.activated"
    assert receiver.received[0].headers["Idempotency-Key"] == event["id"]


def test_the_signature_verifies_with_the_recipe_in_the_docs(request_role, hook_role, receiver, monkeypatch):
    monkeypatch.setenv("BROKER_WEBHOOK_SECRET", SECRET)
    text = DOCS.read_text()
    code = re.search(r"<!-- receiver example.*?-->\n```python\n(.*?)```", text, re.S).group(1)
    assert len(code.strip().splitlines()) <= 12
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102 - the documented recipe, run as written
    request_grant(request_role, hook_role)
    hit = receiver.received[0]
    assert namespace["verified_event"](hit.headers, hit.body)["type"] == "grant.activated"
    assert namespace["verified_event"](hit.headers, hit.body.replace(b"alice", b"mallo")) is None
    stale = {**hit.headers, "X-Broker-Timestamp": str(int(time.time()) - 600)}
    stale["X-Broker-Signature"] = sign(SECRET, stale["X-Broker-Timestamp"], hit.body)
    assert namespace["verified_event"](stale, hit.body) is None


def test_verify_refuses_another_key_and_an_old_timestamp():
    body = b'{"type":"grant.activated"}'
    stamp = str(int(time.time()))
    assert verify(SECRET, stamp, sign(SECRET, stamp, body), body)
    assert not verify("other", stamp, sign(SECRET, stamp, body), body)
    assert not verify(SECRET, stamp, sign(SECRET, stamp, body), body, now=time.time() + 301)
    assert not verify(SECRET, "not-a-number", "v1=00", body)


def test_server_errors_are_retried_and_then_succeed_with_the_same_idempotency_key(request_role, hook_role, receiver):
    receiver.statuses = [500, 503]
    grant = request_grant(request_role, hook_role)
    grant.refresh_from_db()
    assert (grant.status, grant.attempts) == ("scheduled", 1)
    assert "HTTP 500" in grant.last_error
    services.grant_activate(grant_id=grant.pk, now=grant.next_attempt_at)
    grant.refresh_from_db()
    assert grant.attempts == 2
    grant = services.grant_activate(grant_id=grant.pk, now=grant.next_attempt_at)
    assert grant.status == "active"
    keys = {hit.headers["Idempotency-Key"] for hit in receiver.received}
    assert len(receiver.received) == 3 and len(keys) == 1


@pytest.mark.parametrize("status", [408, 429])
def test_timeouts_and_rate_limits_from_the_receiver_are_retried(request_role, hook_role, receiver, status):
    receiver.statuses = [status]
    grant = request_grant(request_role, hook_role)
    grant.refresh_from_db()
    assert grant.status == "scheduled" and grant.next_attempt_at is not None


def test_a_client_error_fails_the_activation_at_once(request_role, hook_role, receiver):
    receiver.statuses = [400]
    grant = request_grant(request_role, hook_role)
    grant.refresh_from_db()
    assert grant.status == "failed"
    failure = AuditEvent.objects.get(action="grant.connector_failed", target_id=str(grant.pk))
    assert failure.data["final"] is True and "HTTP 400" in failure.data["error"]
    assert [hit.json["type"] for hit in receiver.received] == ["grant.activated", "grant.revoked"]


def test_a_client_error_on_removal_goes_straight_to_revoke_failed_and_alerts_security(
    request_role, hook_role, receiver, requester, django_capture_on_commit_callbacks
):
    security = UserFactory(username="frank", email="frank@example.com")
    security.groups.add(GroupFactory(name=SECURITY_GROUP))
    grant = request_grant(request_role, hook_role)
    receiver.statuses = [422]
    with django_capture_on_commit_callbacks(execute=True):
        grant = services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
    assert (grant.status, grant.attempts) == ("revoke_failed", 1)
    assert "HTTP 422" in grant.last_error
    assert not grant.is_effective()
    alert = [m for m in mail.outbox if "frank@example.com" in m.to]
    assert len(alert) == 1 and "Revocation failing" in alert[0].subject


def test_a_removal_that_keeps_failing_with_server_errors_ends_in_revoke_failed(
    request_role, hook_role, receiver, requester
):
    grant = request_grant(request_role, hook_role)
    receiver.statuses = [500] * 10
    with override_settings(REVOKE_MAX_ATTEMPTS=3):
        grant = services.grant_relinquish(grant_id=grant.pk, user=requester, via=Channel.API)
        for _ in range(2):
            grant = services.grant_remove(grant_id=grant.pk, now=grant.next_attempt_at)
    assert (grant.status, grant.attempts) == ("revoke_failed", 3)
    revokes = [hit for hit in receiver.received if hit.json["type"] == "grant.revoked"]
    assert len({hit.headers["Idempotency-Key"] for hit in revokes}) == 1


def test_a_receiver_that_hangs_is_cut_off_by_the_timeout_and_then_cooled_down(receiver, requester, monkeypatch):
    receiver.delay = 3
    connector = WebhookConnector({"url": receiver.url, "secret_env": "HOOK_SECRET", "timeout": "1s"}, role_slug="fw")
    event = AccessEvent(type="grant.activated", key="k1", username="alice", role="fw")
    started = time.monotonic()
    with pytest.raises(TargetUnavailable, match="did not answer within 1 s"):
        set_access(connector, requester, present=True, event=event)
    assert time.monotonic() - started < 2
    started = time.monotonic()
    with pytest.raises(TargetUnavailable, match=r"not tried: webhook .* is cooling down"):
        set_access(connector, requester, present=True, event=event)
    assert time.monotonic() - started < 0.1
    assert len(receiver.received) == 1


def test_a_receiver_that_is_down_is_a_retried_failure(requester, monkeypatch):
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    dead = Receiver()
    url = dead.url
    dead.close()
    connector = WebhookConnector({"url": url, "secret_env": "HOOK_SECRET"})
    with pytest.raises(TargetUnavailable):
        connector.grant(requester, AccessEvent(type="grant.activated", key="k", username="alice", role="x"))


def test_the_status_url_is_the_read_back(receiver, requester):
    connector = WebhookConnector(
        {"url": receiver.url, "status_url": receiver.status_url, "secret_env": "HOOK_SECRET"}, role_slug="fw"
    )
    event = AccessEvent(type="grant.activated", key="k", username="alice", role="fw")
    set_access(connector, requester, present=True, event=event)
    assert connector.is_granted(requester) is True
    receiver.acts = False  # from now on it answers 200 and does nothing
    with pytest.raises(ConnectorError, match="still shows the access after removing it"):
        set_access(connector, requester, present=False, event=event)


def test_holders_from_the_status_url_feed_reconciliation(make_role, receiver):
    role = make_role(
        slug="fw",
        auto_approve=True,
        connector="webhook",
        connector_config={"url": receiver.url, "status_url": receiver.status_url, "secret_env": "HOOK_SECRET"},
    )
    UserFactory(username="standing")
    receiver.granted["standing"] = True
    assert reconcile().detected == [f"{role.slug}/standing"]


def test_without_a_status_url_the_receivers_2xx_is_the_confirmation(receiver, requester):
    connector = WebhookConnector({"url": receiver.url, "secret_env": "HOOK_SECRET"})
    assert connector.is_granted(requester) is None
    assert connector.holders() is None


def test_a_missing_secret_is_a_permanent_error_naming_the_variable(receiver, requester, monkeypatch):
    monkeypatch.delenv("HOOK_SECRET")
    connector = WebhookConnector({"url": receiver.url, "secret_env": "HOOK_SECRET"})
    with pytest.raises(PermanentConnectorError, match="HOOK_SECRET"):
        connector.grant(requester, AccessEvent(type="grant.activated", key="k", username="alice", role="x"))
    assert receiver.received == []


def test_two_roles_on_one_receiver_are_two_pieces_of_access(receiver):
    config = {"url": receiver.url, "secret_env": "HOOK_SECRET"}
    assert WebhookConnector(config, role_slug="a").target_key() != WebhookConnector(config, role_slug="b").target_key()


def test_the_event_of_a_resource_scoped_role_names_the_resource(request_role, make_role, receiver):
    role = make_role(
        slug="firewall-env",
        auto_approve=True,
        resources={"names": ["staging"]},
        connector="webhook",
        connector_config={"url": receiver.url, "secret_env": "HOOK_SECRET", "timeout": "1s"},
    )
    grant = request_role(role, resource="staging", justification="INC-7").grant
    services.grant_activate(grant_id=grant.pk)
    assert receiver.received[0].json["resource"] == "staging"


def test_the_event_of_a_role_without_resources_has_no_resource_field(request_role, hook_role, receiver):
    request_grant(request_role, hook_role)
    assert "resource" not in receiver.received[0].json
