"""GET/POST grants/: the effective rule in answers, relinquish, admin revoke, extension."""

from datetime import timedelta

import pytest

from broker.models import AuditEvent
from tests.factories import GrantFactory
from tests.otp import authenticator, code_of

pytestmark = pytest.mark.django_db

ADMIN = ("read", "admin")


def test_grant_answer_has_the_contract_fields(world, bearer):
    body = bearer(world.alice).get(f"/api/v1/grants/{world.grant.pk}/").json()
    assert {
        "id",
        "request",
        "user",
        "role",
        "status",
        "starts_at",
        "expires_at",
        "ended_at",
        "end_reason",
        "effective",
    } <= set(body)
    assert body["user"] == "alice"
    assert body["role"] == "sandbox"
    assert body["status"] == "active"
    assert body["effective"] is True


def test_a_grant_past_its_expiry_is_not_effective_even_if_no_worker_ended_it(clock, world, bearer):
    clock.shift(timedelta(hours=2))
    body = bearer(world.alice).get(f"/api/v1/grants/{world.grant.pk}/").json()
    assert body["status"] == "active"  # the worker is late
    assert body["effective"] is False


def test_active_filter_uses_the_effective_rule(clock, world, bearer):
    alice = bearer(world.alice)
    assert [g["id"] for g in alice.get("/api/v1/grants/?active=true").json()["results"]] == [world.grant.pk]
    clock.shift(timedelta(hours=2))
    assert alice.get("/api/v1/grants/?active=true").json()["results"] == []
    assert [g["id"] for g in alice.get("/api/v1/grants/?active=false").json()["results"]] == [world.grant.pk]


def test_grants_filter_by_user_and_role(world, bearer):
    erin = bearer(world.erin)
    assert erin.get("/api/v1/grants/?user=alice&role=sandbox").json()["count"] == 1
    assert erin.get("/api/v1/grants/?user=bob").json()["count"] == 0
    assert erin.get("/api/v1/grants/?status=melted").status_code == 400


def test_holder_relinquishes_with_the_request_scope(world, bearer):
    response = bearer(world.alice).post(f"/api/v1/grants/{world.grant.pk}/revoke/", {}, format="json")
    assert response.status_code == 200
    assert response.json()["end_reason"] == "relinquished"
    assert response.json()["status"] == "revoked"


def test_admin_revokes_anyones_grant_with_a_reason(world, bearer):
    root = bearer(world.root, scopes=ADMIN)
    missing = root.post(f"/api/v1/grants/{world.grant.pk}/revoke/", {}, format="json")
    assert missing.status_code == 400
    assert "reason" in missing.json()["fields"]
    response = root.post(f"/api/v1/grants/{world.grant.pk}/revoke/", {"reason": "left the team"}, format="json")
    assert response.status_code == 200
    assert response.json()["end_reason"] == "revoked"
    assert response.json()["ended_by"] == "root"
    event = AuditEvent.objects.get(action="grant.revoked")
    assert event.actor_name == "root"
    assert event.channel == "api"


def test_ending_an_ended_grant_is_a_conflict(world, bearer):
    alice = bearer(world.alice)
    alice.post(f"/api/v1/grants/{world.grant.pk}/revoke/", {}, format="json")
    response = alice.post(f"/api/v1/grants/{world.grant.pk}/revoke/", {}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "grant_ended"


def test_extension_of_an_auto_approved_role_moves_the_expiry_at_once(world, bearer):
    before = world.grant.expires_at
    response = bearer(world.alice).post(
        f"/api/v1/grants/{world.grant.pk}/extend/", {"duration_seconds": 600}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["kind"] == "extension"
    assert response.json()["extends_grant"] == world.grant.pk
    assert response.json()["status"] == "approved"
    world.grant.refresh_from_db()
    assert world.grant.expires_at == before + timedelta(seconds=600)


def test_extension_beyond_the_lifetime_cap_is_a_field_error(world, bearer):
    response = bearer(world.alice).post(
        f"/api/v1/grants/{world.grant.pk}/extend/", {"duration_seconds": 10 * 3600}, format="json"
    )
    assert response.status_code == 400
    assert "duration_seconds" in response.json()["fields"]


def test_extension_of_a_role_that_requires_mfa_takes_an_otp(world, bearer):
    world.sandbox.requires_mfa = True
    world.sandbox.save()
    authenticator(world.alice)
    alice = bearer(world.alice)
    path = f"/api/v1/grants/{world.grant.pk}/extend/"
    assert alice.post(path, {"duration_seconds": 60}, format="json").json()["error"] == "mfa_required"
    response = alice.post(path, {"duration_seconds": 60, "otp": code_of(world.alice)}, format="json")
    assert response.status_code == 201


def test_approvers_see_the_grants_of_requests_they_may_approve_and_no_others(world, bearer):
    grant = GrantFactory(user=world.alice, role=world.db_admin)  # carol approves db-admin
    carol = bearer(world.carol)
    response = carol.get(f"/api/v1/grants/{grant.pk}/")
    assert response.status_code == 200
    assert (response.json()["id"], response.json()["role"]) == (grant.pk, "db-admin")
    assert carol.get(f"/api/v1/grants/{world.grant.pk}/").status_code == 404  # sandbox: auto-approved
    assert [g["id"] for g in carol.get("/api/v1/grants/").json()["results"]] == [grant.pk]


def test_an_extension_empties_the_review_fields_of_a_break_glass_grant(world, bearer, make_role):
    from django.utils import timezone

    from approvals.services import request_create
    from broker.models import Channel
    from grants.services import grant_review

    role = make_role(slug="glass", break_glass=True, max_total_duration=timedelta(hours=8), eligible=[world.alice])
    grant = request_create(
        requester=world.alice, role=role, justification="fire", via=Channel.API, mfa_at=timezone.now()
    ).grant
    grant_review(grant_id=grant.pk, reviewer=world.root, note="fine", via=Channel.PORTAL)
    erin = bearer(world.erin)
    reviewed = erin.get(f"/api/v1/grants/{grant.pk}/").json()
    assert (reviewed["reviewed_by"], reviewed["review_note"]) == ("root", "fine")
    assert reviewed["reviewed_at"] is not None
    request_create(
        requester=world.alice,
        extends_grant_id=grant.pk,
        duration=timedelta(hours=1),
        justification="more fire",
        via=Channel.API,
        mfa_at=timezone.now(),
    )
    reopened = erin.get(f"/api/v1/grants/{grant.pk}/").json()
    assert (reopened["reviewed_at"], reopened["reviewed_by"], reopened["review_note"]) == (None, None, None)
