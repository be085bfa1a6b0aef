"""eligibility/reviews/: the role owners' reviews through the API (parity with the portal's /reviews/)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from approvals import recertification
from approvals.models import Recertification
from broker.models import Eligibility

pytestmark = pytest.mark.django_db


@pytest.fixture
def review(world):
    """bob's eligibility for deploy (carol approves, so reviews it) is due for review."""
    Eligibility.objects.filter(role=world.deploy, user=world.bob).update(
        created_at=timezone.now() - timedelta(days=100),
        recertify_every=timedelta(days=90),
        recertify_grace=timedelta(days=14),
    )
    recertification.recertifications_open()
    return Recertification.objects.get()


def test_the_owner_lists_the_review_and_may_decide_it(world, review, bearer):
    response = bearer(world.carol).get("/api/v1/eligibility/reviews/")
    assert response.status_code == 200
    [row] = response.json()["results"]
    assert (row["id"], row["role"], row["who"], row["status"], row["may_decide"]) == (
        review.pk,
        "deploy",
        "bob",
        "pending",
        True,
    )


def test_the_owner_confirms_through_the_api(world, review, bearer):
    response = bearer(world.carol).post(f"/api/v1/eligibility/reviews/{review.pk}/confirm/", {}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "confirmed"


def test_removing_without_a_comment_is_a_400(world, review, bearer):
    response = bearer(world.carol).post(f"/api/v1/eligibility/reviews/{review.pk}/remove/", {}, format="json")
    assert response.status_code == 400


def test_the_owner_removes_and_the_patch_says_what_to_change(world, review, bearer):
    client = bearer(world.carol)
    response = client.post(f"/api/v1/eligibility/reviews/{review.pk}/remove/", {"comment": "left"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "removed"
    assert not Eligibility.objects.filter(role=world.deploy, user=world.bob).exists()
    patch = client.get("/api/v1/eligibility/reviews/patch/").json()["patch"]
    assert "- role: deploy\n  remove_users: [bob]\n" in patch


def test_a_requester_does_not_see_the_review(world, review, bearer):
    client = bearer(world.alice)
    assert client.get("/api/v1/eligibility/reviews/").json()["results"] == []
    assert client.post(f"/api/v1/eligibility/reviews/{review.pk}/confirm/", {}, format="json").status_code == 404


def test_an_auditor_reads_it_but_may_not_decide(world, review, bearer):
    client = bearer(world.erin)
    assert client.get(f"/api/v1/eligibility/reviews/{review.pk}/").json()["may_decide"] is False
    response = client.post(f"/api/v1/eligibility/reviews/{review.pk}/confirm/", {}, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "not_reviewer"
