"""The post-hoc review of break-glass grants through the API: the queue, and recording a review."""

import pytest
from django.utils import timezone

from broker.catalog import SECURITY_GROUP
from broker.models import AuditEvent
from grants.models import Grant
from tests.api.conftest import ALL
from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db

ADMIN = (*ALL, "admin")


@pytest.fixture
def security(db):
    frank = UserFactory(username="frank")
    frank.groups.add(GroupFactory(name=SECURITY_GROUP))
    return frank


@pytest.fixture
def glass(world, make_role, request_role, django_capture_on_commit_callbacks):
    """alice's break-glass grant, active and awaiting review."""
    role = make_role(break_glass=True, slug="glass", eligible=[world.alice])
    with django_capture_on_commit_callbacks(execute=True):
        req = request_role(role, mfa_at=timezone.now())
    return Grant.objects.get(request=req)


def review(client, grant, note="INC-9: failover, checked the session log"):
    return client.post(f"/api/v1/grants/{grant.pk}/review/", {"note": note}, format="json")


def test_security_lists_the_break_glass_grants_awaiting_review(world, glass, security, bearer):
    body = bearer(security).get("/api/v1/grants/awaiting-review/").json()
    assert [g["id"] for g in body["results"]] == [glass.pk]
    assert body["results"][0]["reviewed_at"] is None and body["count"] == 1


def test_security_records_a_review_and_it_leaves_the_queue(world, glass, security, bearer):
    frank = bearer(security)
    response = review(frank, glass)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["reviewed_by"], body["review_note"]) == ("frank", "INC-9: failover, checked the session log")
    event = AuditEvent.objects.get(action="grant.reviewed")
    assert (event.actor_name, event.channel, event.target_id) == ("frank", "api", str(glass.pk))
    assert frank.get("/api/v1/grants/awaiting-review/").json()["results"] == []


def test_an_administrator_with_the_admin_scope_reviews(world, glass, bearer):
    assert review(bearer(world.root, scopes=ADMIN), glass).status_code == 200


def test_an_administrator_without_the_admin_scope_does_not_see_the_grant(world, glass, bearer):
    assert review(bearer(world.root, scopes=ALL), glass).status_code == 404
    assert bearer(world.root, scopes=ALL).get("/api/v1/grants/awaiting-review/").status_code == 403


def test_auditors_read_the_queue_but_do_not_review(world, glass, bearer):
    erin = bearer(world.erin)
    assert [g["id"] for g in erin.get("/api/v1/grants/awaiting-review/").json()["results"]] == [glass.pk]
    response = review(erin, glass)
    assert (response.status_code, response.json()["error"]) == (403, "not_reviewer")
    glass.refresh_from_db()
    assert glass.reviewed_at is None


def test_security_needs_the_approve_scope_to_review(world, glass, security, bearer):
    response = review(bearer(security, scopes=("read",)), glass)
    assert (response.status_code, response.json()["error"]) == (403, "not_reviewer")


def test_nobody_reviews_their_own_break_glass_activation(world, glass, bearer):
    world.alice.groups.add(GroupFactory(name=SECURITY_GROUP))
    response = review(bearer(world.alice), glass)
    assert (response.status_code, response.json()["error"]) == (403, "self_review")


def test_a_second_review_is_a_conflict(world, glass, security, bearer):
    frank = bearer(security)
    review(frank, glass)
    response = review(bearer(world.root, scopes=ADMIN), glass)
    assert (response.status_code, response.json()["error"]) == (409, "already_reviewed")


def test_only_break_glass_grants_are_reviewed(world, bearer):
    response = review(bearer(world.root, scopes=ADMIN), world.grant)
    assert (response.status_code, response.json()["error"]) == (409, "not_break_glass")


def test_a_review_needs_a_note(world, glass, security, bearer):
    response = review(bearer(security), glass, note="   ")
    assert response.status_code == 400
    assert "note" in response.json()["fields"]


def test_requesters_and_approvers_have_no_review_queue(world, glass, bearer):
    for person in (world.alice, world.carol, world.bob):
        assert bearer(person).get("/api/v1/grants/awaiting-review/").status_code == 403
