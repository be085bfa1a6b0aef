"""Bearer tokens over HTTP: authentication, scopes, management endpoints, failure throttling."""

from datetime import timedelta

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiToken
from accounts.tokens import token_revoke
from broker.models import AuditEvent, Channel
from tests.otp import authenticator, code_of

pytestmark = pytest.mark.django_db


def with_token(text: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {text}")
    return client


@pytest.mark.parametrize(
    "header",
    ["Bearer pab_nothing_here", "Bearer", "Bearer a b", "bearer pab_00000000_" + "x" * 43, "Bearer " + "x" * 500],
)
def test_a_bad_bearer_token_is_401_with_a_bearer_challenge(world, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/roles/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"] in {"invalid_token", "authentication_failed"}


def test_expired_and_revoked_tokens_are_401(clock, world, bearer):
    expiring = bearer(world.alice, expires_in=timedelta(hours=1))
    revoked = bearer(world.alice)
    token_revoke(token_id=revoked.token.pk, owner=world.alice, via=Channel.CLI)
    clock.shift(timedelta(hours=1))
    assert expiring.get("/api/v1/roles/").status_code == 401
    assert revoked.get("/api/v1/roles/").status_code == 401


def test_a_token_of_a_deactivated_user_is_401(world, bearer):
    alice = bearer(world.alice)
    world.alice.is_active = False
    world.alice.save()
    assert alice.get("/api/v1/roles/").status_code == 401


def test_a_bearer_token_wins_over_a_session_cookie(world, client):
    client.force_login(world.alice)
    client.defaults["HTTP_AUTHORIZATION"] = "Bearer pab_wrong"
    assert client.get("/api/v1/roles/").status_code == 401


def test_failed_authentications_from_one_address_are_throttled(world, settings):
    settings.API_AUTH_FAILURE_LIMIT = 3
    bad = with_token("pab_deadbeef_nope")
    codes = [bad.get("/api/v1/roles/").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]
    response = bad.get("/api/v1/roles/")
    assert int(response["Retry-After"]) > 0
    assert response.json()["error"] == "throttled"


def test_a_valid_token_still_works_from_a_throttled_address(world, bearer, settings):
    settings.API_AUTH_FAILURE_LIMIT = 1
    bad = with_token("pab_deadbeef_nope")
    bad.get("/api/v1/roles/")
    assert bad.get("/api/v1/roles/").status_code == 429
    assert bearer(world.alice).get("/api/v1/roles/").status_code == 200


# --- Management ----------------------------------------------------------------------------------


def test_token_list_shows_prefix_scopes_and_use_but_never_the_secret(world, bearer):
    alice = bearer(world.alice, scopes=("read",))
    alice.get("/api/v1/roles/")
    [item] = alice.get("/api/v1/tokens/").json()["results"]
    assert item["prefix"] == alice.token.prefix
    assert item["scopes"] == ["read"]
    assert item["last_used_at"] is not None
    assert "token" not in item
    assert alice.token_text not in str(item)


def test_token_created_through_the_api_is_shown_once_and_works(world, bearer):
    authenticator(world.alice)
    response = bearer(world.alice).post(
        "/api/v1/tokens/", {"name": "ci", "scopes": ["read"], "otp": code_of(world.alice)}, format="json"
    )
    assert response.status_code == 201
    text = response.json()["token"]
    assert text.startswith(f"pab_{response.json()['prefix']}_")
    assert with_token(text).get("/api/v1/roles/").status_code == 200
    assert with_token(text).post("/api/v1/requests/", {"role": "deploy"}, format="json").status_code == 403
    event = AuditEvent.objects.get(action="token.created", channel="api")
    assert text not in str(event.data)


def test_token_creation_needs_a_one_time_code(world, bearer):
    authenticator(world.alice)
    response = bearer(world.alice).post("/api/v1/tokens/", {"scopes": ["read"]}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "mfa_required"


def test_token_creation_without_a_device_says_how_to_enrol(world, bearer):
    response = bearer(world.alice).post("/api/v1/tokens/", {"scopes": ["read"]}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "mfa_not_enrolled"


def test_a_session_that_just_stepped_up_creates_a_token_without_a_code(world, client):
    authenticator(world.alice)
    client.force_login(world.alice)
    verified = client.post("/account/mfa/verify/", {"code": code_of(world.alice)})
    assert verified.status_code == 302
    response = client.post("/api/v1/tokens/", {"scopes": ["read"]}, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["scopes"] == ["read"]
    assert with_token(response.json()["token"]).get("/api/v1/roles/").status_code == 200


def test_a_token_cannot_mint_a_stronger_or_longer_lived_token(world, bearer):
    authenticator(world.alice)
    parent = bearer(world.alice, scopes=("read", "request"), expires_in=timedelta(days=1))
    stronger = parent.post(
        "/api/v1/tokens/", {"scopes": ["read", "approve"], "otp": code_of(world.alice)}, format="json"
    )
    assert stronger.status_code == 403
    assert stronger.json()["error"] == "scope_escalation"


def test_a_token_made_by_an_expiring_token_must_expire_no_later(clock, world, bearer):
    authenticator(world.alice)
    parent = bearer(world.alice, expires_in=timedelta(days=1))
    forever = parent.post("/api/v1/tokens/", {"scopes": ["read"], "otp": code_of(world.alice)}, format="json")
    assert forever.status_code == 400
    assert "expires_in_seconds" in forever.json()["fields"]
    clock.shift(timedelta(seconds=30))
    ok = parent.post(
        "/api/v1/tokens/",
        {"scopes": ["read"], "expires_in_seconds": 3600, "otp": code_of(world.alice)},
        format="json",
    )
    assert ok.status_code == 201


def test_admin_scope_is_only_for_staff(world, bearer):
    authenticator(world.alice)
    response = bearer(world.alice, scopes=("read",)).post(
        "/api/v1/tokens/", {"scopes": ["admin"], "otp": code_of(world.alice)}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"] == "scope_escalation"
    assert not any("admin" in scopes for scopes in ApiToken.objects.values_list("scopes", flat=True))


def test_admin_scope_cannot_come_from_a_session_of_a_non_staff_user(world, client):
    authenticator(world.alice)
    client.force_login(world.alice)
    response = client.post(
        "/api/v1/tokens/", {"scopes": ["admin"], "otp": code_of(world.alice)}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "scopes" in response.json()["fields"]


def test_revoked_token_stops_working_at_once(world, bearer):
    alice = bearer(world.alice)
    spare = bearer(world.alice)
    assert alice.delete(f"/api/v1/tokens/{spare.token.pk}/").status_code == 204
    assert spare.get("/api/v1/roles/").status_code == 401
    assert alice.delete(f"/api/v1/tokens/{spare.token.pk}/").status_code == 404


def test_someone_elses_token_is_not_found(world, bearer):
    bobs = bearer(world.bob)
    assert bearer(world.alice).delete(f"/api/v1/tokens/{bobs.token.pk}/").status_code == 404
    assert bobs.get("/api/v1/roles/").status_code == 200


# --- Session ---------------------------------------------------------------------------------------


def test_session_callers_need_the_csrf_token_for_changes(world):
    from django.test import Client
    from django.utils.crypto import get_random_string

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.alice)
    assert browser.get("/api/v1/roles/").status_code == 200
    refused = browser.post(f"/api/v1/requests/{world.pending.pk}/cancel/", {}, content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    token = get_random_string(32)  # what the portal's pages set as the csrftoken cookie
    browser.cookies["csrftoken"] = token
    accepted = browser.post(
        f"/api/v1/requests/{world.pending.pk}/cancel/", {}, content_type="application/json", HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 200


def test_a_token_never_has_more_power_than_its_user(world, bearer):
    root = bearer(world.root, scopes=("read", "request", "approve", "admin"))
    assert root.get("/api/v1/audit/").status_code == 200
    world.root.is_staff = False
    world.root.save()
    assert root.get("/api/v1/audit/").status_code == 403
    signal = {"user": "alice", "event": "risk_high", "reason": "x"}
    assert root.post("/api/v1/signals/", signal, format="json").status_code == 403
    assert root.get(f"/api/v1/grants/{world.grant.pk}/").status_code == 404


def test_a_session_that_just_stepped_up_approves_an_mfa_role_without_a_code(world, client):
    world.db_admin.requires_mfa = True
    world.db_admin.save()
    authenticator(world.carol)
    client.force_login(world.carol)
    path = f"/api/v1/requests/{world.pending.pk}/approve/"
    assert client.post(path, {}, content_type="application/json").json()["error"] == "mfa_required"
    assert client.post("/account/mfa/verify/", {"code": code_of(world.carol)}).status_code == 302
    response = client.post(path, {}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "approved"
