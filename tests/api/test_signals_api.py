"""POST signals/: a risk signal ends everything the person holds or asked for."""

import pytest

from accounts.models import ApiToken
from approvals.models import AccessRequest
from broker.models import AuditEvent
from grants.models import Grant

pytestmark = pytest.mark.django_db

ADMIN = ("read", "admin")


def signal(bearer, world, event, user="alice"):
    return bearer(world.root, scopes=ADMIN).post(
        "/api/v1/signals/", {"user": user, "event": event, "reason": "impossible travel"}, format="json"
    )


def test_risk_high_revokes_grants_tokens_and_cancels_pending_requests(world, bearer):
    alice = bearer(world.alice)
    response = signal(bearer, world, "risk_high")
    assert response.status_code == 200
    assert response.json()["grants_revoked"] == [world.grant.pk]
    assert response.json()["requests_cancelled"] == [world.pending.pk]
    assert response.json()["tokens_revoked"] == 1
    assert response.json()["sessions_ended"] is True
    assert response.json()["password_revoked"] is False
    grant = Grant.objects.get(pk=world.grant.pk)
    assert (grant.status, grant.end_reason) == ("revoked", "risk_signal")
    assert AccessRequest.objects.get(pk=world.pending.pk).status == "cancelled"
    assert alice.get("/api/v1/roles/").status_code == 401
    actions = list(AuditEvent.objects.order_by("seq").values_list("action", flat=True))
    start = actions.index("risk.signal")
    assert actions[start:] == [
        "risk.signal",
        "auth.sessions_ended",
        "token.revoked",
        "request.cancelled",
        "grant.revoked",
    ]


def test_credential_compromised_also_revokes_the_users_tokens(world, bearer):
    alice = bearer(world.alice)
    response = signal(bearer, world, "credential_compromised")
    assert response.json()["tokens_revoked"] == 1
    assert response.json()["password_revoked"] is True
    assert alice.get("/api/v1/roles/").status_code == 401
    assert not ApiToken.objects.filter(user=world.alice, revoked_at__isnull=True).exists()


def test_account_disabled_also_deactivates_the_account(world, bearer):
    response = signal(bearer, world, "account_disabled")
    assert response.json()["account_deactivated"] is True
    world.alice.refresh_from_db()
    assert world.alice.is_active is False


def test_signal_for_an_unknown_user_or_event_is_a_field_error(world, bearer):
    assert "user" in signal(bearer, world, "risk_high", user="nobody").json()["fields"]
    assert "event" in signal(bearer, world, "sunspots").json()["fields"]


def test_signal_twice_changes_nothing_more(world, bearer):
    signal(bearer, world, "risk_high")
    again = signal(bearer, world, "risk_high").json()
    assert again["grants_revoked"] == again["requests_cancelled"] == []
