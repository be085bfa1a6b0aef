"""GET check/: the decision point for systems that pull; the hot path."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiToken
from approvals import services as approvals
from broker.models import Channel
from grants import services as grants

pytestmark = pytest.mark.django_db


def test_check_answers_allowed_with_the_grant_and_its_expiry(world, bearer):
    body = bearer(world.alice).get("/api/v1/check/?role=sandbox").json()
    assert body["allowed"] is True
    assert body["grant"] == world.grant.pk
    assert body["expires_at"] == world.grant.expires_at.isoformat().replace("+00:00", "Z")
    assert body["user"] == "alice"


def test_check_is_denied_without_a_grant_or_for_an_unknown_role(world, bearer):
    alice = bearer(world.alice)
    for path in ("/api/v1/check/?role=db-admin", "/api/v1/check/?role=no-such-role"):
        body = alice.get(path).json()
        assert body == {**body, "allowed": False, "grant": None, "expires_at": None}


def test_check_follows_the_clock_not_the_worker(clock, world, bearer):
    clock.shift(timedelta(hours=1))  # expires_at has come; the grant row still says active
    assert bearer(world.alice).get("/api/v1/check/?role=sandbox").json()["allowed"] is False


def test_check_denies_a_deactivated_account_at_once_whatever_its_grants_say(world, bearer):
    erin = bearer(world.erin)
    world.alice.is_active = False
    world.alice.save()  # no worker has ended the grant yet: the row still says active
    world.grant.refresh_from_db()
    assert world.grant.status == "active"
    assert erin.get("/api/v1/check/?user=alice&role=sandbox").json()["allowed"] is False
    assert erin.get(f"/api/v1/grants/{world.grant.pk}/").json()["effective"] is False


def test_auditor_and_admin_may_check_others_and_others_may_not(world, bearer):
    path = "/api/v1/check/?user=alice&role=sandbox"
    assert bearer(world.erin).get(path).json()["allowed"] is True
    assert bearer(world.root, scopes=("read", "admin")).get(path).json()["allowed"] is True
    assert bearer(world.root, scopes=("read",)).get(path).status_code == 403
    assert bearer(world.bob).get(path).status_code == 403


def test_check_needs_a_role(world, bearer):
    response = bearer(world.alice).get("/api/v1/check/")
    assert response.status_code == 400
    assert "role" in response.json()["fields"]


def test_check_with_a_token_takes_one_query(world, bearer):
    alice = bearer(world.alice)
    alice.get("/api/v1/check/?role=sandbox")  # the token's last_used_at is fresh now
    for path in ("/api/v1/check/?role=sandbox", "/api/v1/check/?user=alice&role=sandbox"):
        with CaptureQueriesContext(connection) as queries:
            assert alice.get(path).status_code == 200
        assert len(queries) == 1, [q["sql"] for q in queries]
    erin = bearer(world.erin)
    erin.get("/api/v1/check/?role=sandbox")
    with CaptureQueriesContext(connection) as queries:
        assert erin.get("/api/v1/check/?user=alice&role=sandbox").json()["allowed"] is True
    assert len(queries) == 1, [q["sql"] for q in queries]


def test_last_used_at_is_written_at_most_once_a_minute(clock, world, bearer):
    alice = bearer(world.alice)
    token = ApiToken.objects.get(pk=alice.token.pk)
    assert token.last_used_at is None
    alice.get("/api/v1/check/?role=sandbox")
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    clock.shift(timedelta(seconds=30))
    with CaptureQueriesContext(connection) as queries:
        alice.get("/api/v1/check/?role=sandbox")
    assert not any(q["sql"].startswith("UPDATE") for q in queries)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    clock.shift(timedelta(seconds=31))
    alice.get("/api/v1/check/?role=sandbox")
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


@pytest.fixture
def staging_grant(world, make_role):
    """alice holds envs on the staging resource (the Django group envs-staging)."""
    role = make_role(
        slug="envs",
        auto_approve=True,
        resources={"names": ["staging", "production"]},
        connector_config={"group": "envs-{resource}"},
        eligible=[world.alice],
    )
    req = approvals.request_create(
        requester=world.alice, role=role, resource="staging", justification="release", via=Channel.PORTAL
    )
    return grants.grant_activate(grant_id=req.grant.pk)


def test_check_answers_per_resource_with_a_token(world, bearer, staging_grant):
    alice = bearer(world.alice)
    staging = alice.get("/api/v1/check/?role=envs&resource=staging").json()
    production = alice.get("/api/v1/check/?role=envs&resource=production").json()
    assert (staging["allowed"], staging["grant"], staging["resource"]) == (True, staging_grant.pk, "staging")
    assert (production["allowed"], production["resource"]) == (False, "production")


def test_check_per_resource_answers_the_same_through_a_session(world, client, staging_grant):
    client.force_login(world.alice)
    body = client.get("/api/v1/check/?role=envs&resource=staging").json()
    assert (body["allowed"], body["grant"], body["resource"]) == (True, staging_grant.pk, "staging")


def test_check_without_a_resource_does_not_count_a_grant_on_one(world, bearer, staging_grant):
    body = bearer(world.alice).get("/api/v1/check/?role=envs").json()
    assert body["allowed"] is False
    assert "resource" not in body
