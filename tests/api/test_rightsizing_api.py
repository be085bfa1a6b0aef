"""GET eligibility/unused/: the right-sizing list, for auditors and administrators."""

from datetime import timedelta

import pytest
from django.utils import timezone

from broker.models import Eligibility

pytestmark = pytest.mark.django_db


@pytest.fixture
def stale(world):
    """bob's eligibility for deploy is 200 days old and he never asked for it."""
    Eligibility.objects.filter(role=world.deploy, user=world.bob).update(
        created_at=timezone.now() - timedelta(days=200)
    )
    return world


def test_auditors_read_the_unused_eligibilities(stale, bearer):
    response = bearer(stale.erin).get("/api/v1/eligibility/unused/")
    assert response.status_code == 200
    assert response.json()["results"] == [
        {
            "role": "deploy",
            "who": "bob",
            "kind": "user",
            "unused_after_days": 90,
            "last_asked": None,
            "remove_unused": False,
        }
    ]


def test_requesters_may_not_read_them(stale, bearer):
    response = bearer(stale.alice).get("/api/v1/eligibility/unused/")
    assert response.status_code == 403
